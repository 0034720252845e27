import * as vscode from 'vscode';
import { parseRunPlotMessage, type PlotRun, type RunPlotToWebview } from '../shared/protocol/runPlotMessages';
import type { RunStore, RunSummary } from '../runs/runStore';
import { onValidatedMessage } from './webviewHost';

/**
 * Feeds one plot page (sidebar view or run panel) from the run store: the whole series once per page load
 * or selection change, then only the points added since, so a 100k-step run costs a few bytes per step.
 */
export class RunPlotFeed implements vscode.Disposable {
  /** Per run: how many points the page has, and of which version of the series (RunSummary.lossesEpoch). */
  private readonly sent = new Map<string, { count: number; epoch: number }>();
  private readonly disposables: vscode.Disposable[] = [];
  private ready = false;

  constructor(
    private readonly webview: vscode.Webview,
    private readonly store: RunStore,
    private runIds: () => string[],
    private readonly mode: 'compact' | 'full',
    log: (line: string) => void,
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
      this.sent.set(run.runDir, { count: run.losses.length, epoch: run.lossesEpoch ?? 0 });
      return toPlotRun(run, 0);
    });
    return this.post({ type: 'series', mode: this.mode, runs });
  }

  private push(): void {
    if (!this.ready) return;
    const runs = this.runs();
    // A run deleted, or another one now shown (the sidebar follows the newest run): the page gets the new set.
    if (runs.length !== this.sent.size || runs.some((run) => !this.sent.has(run.runDir))) {
      void this.sendAll();
      return;
    }
    for (const run of runs) {
      const sent = this.sent.get(run.runDir);
      // A resumed run rewrites its tail and a long one thins its older points: anything but growth of the
      // same series gets the whole series again.
      if (sent === undefined || sent.epoch !== (run.lossesEpoch ?? 0) || sent.count > run.losses.length) {
        void this.sendAll();
        return;
      }
      const already = sent.count;
      if (already === run.losses.length) continue;
      const delta = toPlotRun(run, already);
      this.sent.set(run.runDir, { count: run.losses.length, epoch: sent.epoch });
      void this.post({ type: 'append', id: delta.id, step: delta.step, loss: delta.loss, elapsedMs: delta.elapsedMs, status: run.status });
    }
  }

  private post(message: RunPlotToWebview): Thenable<boolean> {
    return this.webview.postMessage(message);
  }

  dispose(): void {
    this.disposables.forEach((d) => d.dispose());
  }
}

export function toPlotRun(run: RunSummary, from: number): PlotRun {
  const points = run.losses.slice(from);
  return {
    id: run.runDir,
    label: run.verb === 'train' ? `${run.id} (keep ${run.keep ?? '?'})` : run.id,
    status: run.status,
    step: points.map((p) => p.step),
    loss: points.map((p) => p.loss),
    elapsedMs: points.map((p) => p.elapsedMs),
  };
}
