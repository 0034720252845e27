import * as path from 'node:path';
import * as vscode from 'vscode';
import { isResumable, type RunStore, type RunSummary } from '../runs/runStore';

const STATUS_ICONS: Record<RunSummary['status'], [string, string | undefined]> = {
  running: ['sync~spin', 'charts.blue'],
  succeeded: ['pass', 'testing.iconPassed'],
  failed: ['error', 'testing.iconFailed'],
  cancelled: ['circle-slash', 'disabledForeground'],
};

/** Runs tree: every run folder, newest first, with its status, model, cut, progress and last loss. */
export class RunsTreeProvider implements vscode.TreeDataProvider<RunSummary>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<RunSummary | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly listener = () => this.changed.fire(undefined);

  constructor(private readonly store: RunStore) {
    store.on('change', this.listener);
  }

  getChildren(node?: RunSummary): RunSummary[] {
    return node ? [] : this.store.list();
  }

  getTreeItem(run: RunSummary): vscode.TreeItem {
    const model = run.model ? path.basename(run.model) : '?';
    const item = new vscode.TreeItem(run.verb === 'train' ? `${model} · keep ${run.keep ?? '?'}` : `${run.verb} ${model}`);
    item.id = `run:${run.runDir}`;
    const parts: string[] = [];
    if (run.totalSteps) parts.push(`step ${run.step ?? 0}/${run.totalSteps}`);
    if (run.lastLoss !== undefined) parts.push(`loss ${run.lastLoss.toFixed(3)}`);
    parts.push(run.status);
    item.description = parts.join(' · ');
    const [icon, color] = STATUS_ICONS[run.status];
    item.iconPath = new vscode.ThemeIcon(icon, color ? new vscode.ThemeColor(color) : undefined);
    item.tooltip = new vscode.MarkdownString(
      [
        `**${run.id}** (${run.verb}, ${run.status})`,
        '',
        `model: ${run.model ?? '?'}`,
        run.keep !== undefined ? `layers kept: ${run.keep}` : '',
        `started: ${run.record.startedAt}`,
        run.error ? `\n⚠ ${run.error}` : '',
        '',
        `folder: ${run.runDir}`,
      ]
        .filter((l) => l !== '')
        .join('\n\n'),
    );
    const flags = [run.verb, run.status, isResumable(run) ? 'resumable' : ''].filter(Boolean).join('.');
    item.contextValue = `l3prune.run.${flags}`;
    item.command = { command: 'l3prune.openRun', title: 'Open Run', arguments: [run] };
    return item;
  }

  dispose(): void {
    this.store.off('change', this.listener);
    this.changed.dispose();
  }
}
