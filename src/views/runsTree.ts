import * as path from 'node:path';
import * as vscode from 'vscode';
import { formatBytes } from '../shared/format/units';
import { UNKNOWN_STATE_TEXT } from '../runs/runFolder';
import { exportPrecision, isResumable, runDisplayName, type RunStore, type RunSummary } from '../runs/runStore';
import { escapeMarkdown, untrustedMarkdown } from './untrustedMarkdown';

const STATUS_ICONS: Record<RunSummary['status'], [string, string | undefined]> = {
  running: ['sync~spin', 'charts.blue'],
  succeeded: ['pass', 'testing.iconPassed'],
  failed: ['error', 'testing.iconFailed'],
  cancelled: ['circle-slash', 'disabledForeground'],
  unknown: ['question', 'disabledForeground'],
};

const statusText = (run: RunSummary): string => (run.status === 'unknown' ? UNKNOWN_STATE_TEXT : run.status);

/**
 * contextValue drives which menu items a run gets (Cancel for /\.running/): a verb from a shipped run.json
 * such as "x.running" must not add one, so only the verbs the worker has pass through.
 */
const KNOWN_VERBS = new Set(['analyze', 'train', 'evaluate', 'export-onnx', 'export-st', 'encode']);

/** Runs tree: every run folder, newest first, with its status, model, cut, progress and last loss. */
export class RunsTreeProvider implements vscode.TreeDataProvider<RunSummary>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<RunSummary | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly subscription: vscode.Disposable;

  constructor(private readonly store: RunStore) {
    this.subscription = store.onDidChange(() => this.changed.fire(undefined));
  }

  getChildren(node?: RunSummary): RunSummary[] {
    return node ? [] : this.store.list();
  }

  /** Runs are all top-level; having a parent lookup at all is what lets the Compare panel reveal one. */
  getParent(): undefined {
    return undefined;
  }

  getTreeItem(run: RunSummary): vscode.TreeItem {
    const model = this.modelName(run);
    const variant = run.verb === 'evaluate' || run.verb === 'export-onnx';
    const layers = run.evaluation?.result?.numLayers ?? run.exported?.numLayers ?? run.keep;
    const depth = layers === undefined ? '' : layers === run.evaluation?.originalNumLayers ? ' · full' : ` · keep ${layers}`;
    const label =
      run.verb === 'train' || run.name
        ? runDisplayName(run, model)
        : variant
          ? `${run.verb} ${model}${depth}${run.fromRun ? ' (trained)' : ''}${exportPrecision(run) !== undefined && exportPrecision(run) !== 'fp32' ? ` · ${exportPrecision(run)}` : ''}`
          : `${run.verb} ${model}`;
    const item = new vscode.TreeItem(label);
    item.id = `run:${run.runDir}`;
    const parts: string[] = [];
    if (run.totalSteps) parts.push(`step ${run.step ?? 0}/${run.totalSteps}`);
    if (run.lastLoss !== undefined) parts.push(`loss ${run.lastLoss.toFixed(3)}`);
    if (run.evaluation?.result) parts.push(`average ${run.evaluation.result.averageScore?.toFixed(4) ?? '—'}`);
    else if (run.evaluation?.tasks.length) parts.push(`${run.evaluation.tasks.length} task${run.evaluation.tasks.length === 1 ? '' : 's'} scored`);
    if (run.exported) parts.push(formatBytes(run.exported.bytes));
    parts.push(statusText(run));
    item.description = parts.join(' · ');
    const [icon, color] = STATUS_ICONS[run.status];
    item.iconPath = new vscode.ThemeIcon(icon, color ? new vscode.ThemeColor(color) : undefined);
    item.tooltip = runTooltip(run);
    const verb = KNOWN_VERBS.has(run.verb) ? run.verb : 'other';
    const flags = [verb, run.status, isResumable(run) ? 'resumable' : ''].filter(Boolean).join('.');
    item.contextValue = `l3prune.run.${flags}`;
    // An evaluation has no curve to plot; its place is its row among the other variants.
    item.command =
      run.verb === 'evaluate' && run.evaluation?.result
        ? { command: 'l3prune.compareVariants', title: 'Compare Variants', arguments: [run] }
        : { command: 'l3prune.openRun', title: 'Open Run', arguments: [run] };
    return item;
  }

  private modelName(run: RunSummary): string {
    return runModelName(this.store, run);
  }

  dispose(): void {
    this.subscription.dispose();
    this.changed.dispose();
  }
}

/** A trained variant is loaded from its run's merged model/ folder: name it after the base model. */
export function runModelName(store: RunStore, run: RunSummary): string {
  const model = (run.fromRun ? store.get(run.fromRun)?.model : undefined) ?? run.model;
  return model ? path.basename(model) : '?';
}

/** The name a run is shown by everywhere (tree, page title, legends). */
export function runName(store: RunStore, run: RunSummary): string {
  return runDisplayName(run, runModelName(store, run));
}

/**
 * Every string here may come from a shipped run folder, so each is escaped (escapeMarkdown) and the
 * MarkdownString is untrusted and without HTML: a run named `[x](command:…)` or holding `![](https://…)`
 * shows as that text, never as a link, a command or a remote image.
 */
export function runTooltip(run: RunSummary): vscode.MarkdownString {
  const e = escapeMarkdown;
  const result = run.evaluation?.result;
  const lines = [
    `**${e(run.name ?? run.id)}** (${e(run.verb)}, ${e(statusText(run))})`,
    run.name ? `id: ${e(run.id)}` : '',
    `model: ${e(run.model ?? '?')}`,
    run.keep !== undefined ? `layers kept: ${e(String(run.keep))}` : '',
    run.fromRun ? `trained by: ${e(path.basename(run.fromRun))}` : '',
    ...(run.evaluation?.tasks ?? []).map((t) => `${e(String(t.task))} (${e(String(t.metric))}): ${t.mainScore?.toFixed(4) ?? '—'}`),
    result
      ? `average ${result.averageScore?.toFixed(4) ?? '—'} · ${result.latencyMsPerBatch.toFixed(1)} ms per batch of ${result.batchSize} · ${result.textsPerSecond.toFixed(1)} texts/s (${e(String(result.device))})`
      : '',
    run.exported ? `ONNX: ${e(run.exported.path)} (${exportPrecision(run)}, opset ${run.exported.opset}, parity cosine ≥ ${run.exported.parityMinCosine.toFixed(5)})` : '',
    `started: ${e(run.record.startedAt)}`,
    run.error ? `⚠ ${e(run.error)}` : '',
    `folder: ${e(run.runDir)}`,
  ];
  return untrustedMarkdown(lines.filter((l) => l !== '').join('\n\n'));
}
