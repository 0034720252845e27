import * as vscode from 'vscode';
import { etaSeconds, type RunStore } from '../runs/runStore';
import { formatEta } from '../shared/format/units';

/** A status-bar item for the newest live training run: step, loss, ETA; click opens its panel. */
export class RunStatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('l3prune.run', vscode.StatusBarAlignment.Left, 50);
  private readonly subscription: vscode.Disposable;

  constructor(private readonly store: RunStore) {
    this.item.name = 'L³Prune training';
    this.subscription = store.onDidChange(() => this.update());
    this.update();
  }

  private update(): void {
    const live = this.store.list().find((r) => r.verb === 'train' && r.status === 'running');
    if (!live) {
      this.item.hide();
      return;
    }
    const eta = etaSeconds(live);
    const parts = [`step ${live.step ?? 0}/${live.totalSteps ?? '?'}`];
    if (live.lastLoss !== undefined) parts.push(`loss ${live.lastLoss.toFixed(3)}`);
    if (live.tokensPerSecond !== undefined) parts.push(`${Math.round(live.tokensPerSecond).toLocaleString('en')} tok/s`);
    if (live.mfu !== undefined) parts.push(`MFU ${(100 * live.mfu).toFixed(0)}%`);
    if (eta !== undefined) parts.push(`ETA ${formatEta(eta)}`);
    this.item.text = `$(pulse) L³Prune ${parts.join(' · ')}`;
    this.item.tooltip = `Training ${live.id}: click to open its loss plot`;
    this.item.command = { command: 'l3prune.openRun', title: 'Open Run', arguments: [live] };
    this.item.show();
  }

  dispose(): void {
    this.subscription.dispose();
    this.item.dispose();
  }
}

