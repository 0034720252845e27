import * as path from 'node:path';
import * as vscode from 'vscode';
import { formatBytes, formatDuration, formatEta } from '../shared/format/units';
import { parseRunPlotMessage, prefsFrom, type PlotRun, type RunPagePrefs, type RunPlotToWebview, type SummaryRow } from '../shared/protocol/runPlotMessages';
import { etaSeconds, type RunStore, type RunSummary } from '../runs/runStore';
import { runName } from './runsTree';
import { onValidatedMessage } from './webviewHost';

/** Where a page's choices live: the run page's are kept across reopen and window reload (global state). */
export interface PrefsStore {
  get(): RunPagePrefs;
  set(prefs: RunPagePrefs): Thenable<void> | void;
}

const PREFS_KEY = 'l3prune.runPage.prefs';

export function mementoPrefs(memento: vscode.Memento): PrefsStore {
  return { get: () => prefsFrom(memento.get(PREFS_KEY)), set: (prefs) => memento.update(PREFS_KEY, prefs) };
}

/**
 * Feeds one plot page (sidebar view or run page) from the run store: the whole series once per page load
 * or selection change, then only the points added since, so a 100k-step run costs a few bytes per step.
 */
export class RunPlotFeed implements vscode.Disposable {
  /** Per run: how many points the page has, and of which version of the series (RunSummary.lossesEpoch). */
  private readonly sent = new Map<string, { count: number; epoch: number; label: string }>();
  private readonly disposables: vscode.Disposable[] = [];
  private ready = false;
  private lastSummary = '';

  constructor(
    private readonly webview: vscode.Webview,
    private readonly store: RunStore,
    private runIds: () => string[],
    private readonly mode: 'compact' | 'full',
    log: (line: string) => void,
    private readonly prefs?: PrefsStore,
  ) {
    this.disposables.push(
      store.onDidChange(() => this.push()),
      onValidatedMessage(
        webview,
        (raw) => parseRunPlotMessage(raw, new Set(this.runIds())),
        (message) => {
          if (message.type === 'ready') {
            this.ready = true;
            return this.sendAll();
          }
          if (message.type === 'prefs') {
            const { type: _type, ...prefs } = message;
            return this.prefs?.set(prefs);
          }
          const run = this.store.get(message.id);
          if (run) return vscode.commands.executeCommand('l3prune.openRun', run);
          return undefined;
        },
        log,
      ),
    );
  }

  setRuns(runIds: () => string[]): void {
    this.runIds = runIds;
    void this.sendAll();
  }

  private runs(): RunSummary[] {
    return this.runIds().map((id) => this.store.get(id)).filter((r): r is RunSummary => !!r);
  }

  private sendAll(): Thenable<boolean> | undefined {
    if (!this.ready) return undefined;
    this.sent.clear();
    const runs = this.runs().map((run) => {
      const plot = toPlotRun(this.store, run, 0);
      this.sent.set(run.runDir, { count: run.losses.length, epoch: run.lossesEpoch ?? 0, label: plot.label });
      return plot;
    });
    const summary = this.summary();
    this.lastSummary = JSON.stringify(summary);
    return this.post({ type: 'series', mode: this.mode, runs, prefs: this.prefs?.get() ?? prefsFrom(undefined), summary });
  }

  private push(): void {
    if (!this.ready) return;
    const runs = this.runs();
    // A run deleted or renamed, or another one now shown (the sidebar follows the newest run): the page gets the new set.
    if (runs.length !== this.sent.size || runs.some((run) => this.sent.get(run.runDir)?.label !== runName(this.store, run))) {
      void this.sendAll();
      return;
    }
    for (const run of runs) {
      const sent = this.sent.get(run.runDir)!;
      // A resumed run rewrites its tail and a long one thins its older points: anything but growth of the
      // same series gets the whole series again.
      if (sent.epoch !== (run.lossesEpoch ?? 0) || sent.count > run.losses.length) {
        void this.sendAll();
        return;
      }
      if (sent.count === run.losses.length) continue;
      const delta = toPlotRun(this.store, run, sent.count);
      this.sent.set(run.runDir, { ...sent, count: run.losses.length });
      const { id, step, loss, elapsedMs, learningRate, tokensPerSecond, memoryBytes } = delta;
      void this.post({ type: 'append', id, step, loss, elapsedMs, learningRate, tokensPerSecond, memoryBytes, status: run.status });
    }
    const summary = this.summary();
    const text = JSON.stringify(summary);
    if (text !== this.lastSummary) {
      this.lastSummary = text;
      void this.post({ type: 'summary', summary });
    }
  }

  /** The run page's summary block, for one training run; the sidebar and overlays have none. */
  private summary(): SummaryRow[] {
    const runs = this.runs();
    return this.mode === 'full' && runs.length === 1 ? runSummaryRows(this.store, runs[0], Date.now()) : [];
  }

  private post(message: RunPlotToWebview): Thenable<boolean> {
    return this.webview.postMessage(message);
  }

  dispose(): void {
    this.disposables.forEach((d) => d.dispose());
  }
}

export function toPlotRun(store: RunStore, run: RunSummary, from: number): PlotRun {
  const points = run.losses.slice(from);
  return {
    id: run.runDir,
    label: runName(store, run),
    status: run.status,
    step: points.map((p) => p.step),
    loss: points.map((p) => p.loss),
    elapsedMs: points.map((p) => p.elapsedMs),
    learningRate: points.map((p) => p.learningRate ?? null),
    tokensPerSecond: points.map((p) => p.tokensPerSecond ?? null),
    memoryBytes: points.map((p) => p.memoryBytes ?? null),
    memoryKind: run.memoryKind,
  };
}

const RECIPE_FIELDS = ['steps', 'batchSize', 'miniBatchSize', 'learningRate', 'warmupSteps', 'maxLength', 'loraR', 'loraAlpha', 'pooling', 'precision', 'seed'] as const;

/**
 * What a run page states in words: status, model, cut, recipe, started, duration, ETA, final loss. Every value
 * may come from a shipped run folder; the page shows them as text (textContent), never as markup.
 */
export function runSummaryRows(store: RunStore, run: RunSummary, now: number): SummaryRow[] {
  const spec = run.record.spec as Record<string, unknown>;
  const rows: SummaryRow[] = [];
  const started = Date.parse(run.record.startedAt);
  const ended = run.record.endedAt ? Date.parse(run.record.endedAt) : NaN;
  const progress = run.totalSteps ? ` · step ${run.step ?? 0} of ${run.totalSteps}` : '';
  rows.push(['status', `${run.status}${progress}${run.error ? ` · ${run.error}` : ''}`]);
  rows.push(['model', run.model ? `${path.basename(run.model)} (${run.model})` : '?']);
  if (run.keep !== undefined) rows.push(['cut', `keep ${run.keep}${run.originalNumLayers ? ` of ${run.originalNumLayers}` : ''} layers`]);
  const recipe = RECIPE_FIELDS.filter((k) => typeof spec[k] === 'number' || typeof spec[k] === 'string').map((k) => `${k} ${String(spec[k]).slice(0, 40)}`);
  if (recipe.length) rows.push(['recipe', recipe.join(' · ')]);
  if (run.device) rows.push(['device', `${run.device}${run.precision ? `, ${run.precision}` : ''}`]);
  if (Number.isFinite(started)) rows.push(['started', new Date(started).toLocaleString()]);
  const end = Number.isFinite(ended) ? ended : run.status === 'running' ? now : (run.lastStepAt ?? NaN);
  if (Number.isFinite(started) && Number.isFinite(end) && end >= started) rows.push(['duration', formatDuration((end - started) / 1000)]);
  if (run.status === 'running') {
    const eta = etaSeconds(run);
    rows.push(['ETA', eta === undefined ? 'after a few steps' : formatEta(eta)]);
  }
  if (run.lastLoss !== undefined) rows.push([run.status === 'running' ? 'last loss' : 'final loss', run.lastLoss.toFixed(4)]);
  const last = run.losses[run.losses.length - 1];
  if (last?.tokensPerSecond !== undefined) rows.push(['tokens/s', last.tokensPerSecond.toFixed(1)]);
  const peak = Math.max(...run.losses.map((p) => p.memoryBytes ?? 0));
  if (peak > 0) rows.push([run.memoryKind === 'accelerator' ? 'accelerator memory (peak)' : 'process RSS (peak)', formatBytes(peak)]);
  rows.push(['folder', run.runDir]);
  return rows;
}
