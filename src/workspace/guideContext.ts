import * as vscode from 'vscode';
import { GUIDE_CONTEXT, guideProgress, type GuideStep } from '../shared/guide/firstUse';
import type { RunStore } from '../runs/runStore';
import type { AnalysisStore } from './analyses';
import type { ModelRegistry } from './modelRegistry';

const COMPARED_KEY = 'l3prune.guide.compared';

/**
 * Keeps the walkthrough's context keys (src/shared/guide/firstUse.ts) equal to what the stores hold: a model
 * opened, an analysis, a succeeded run. The cut and the comparison leave no record in a store, so the
 * commands that make them say so through `note`.
 */
export class GuideContext implements vscode.Disposable {
  private readonly shown = new Map<GuideStep, boolean>();
  private readonly subscriptions: vscode.Disposable[];

  constructor(
    private readonly registry: ModelRegistry,
    private readonly analyses: AnalysisStore,
    private readonly store: RunStore,
    private readonly memento: vscode.Memento,
    private readonly cutChosen: () => boolean,
  ) {
    this.subscriptions = [registry.onDidChange(() => this.update()), analyses.onDidChange(() => this.update()), store.onDidChange(() => this.update())];
    this.update();
  }

  /** The user chose a cut, or saw evaluated variants compared. */
  async note(step: 'cutChosen' | 'compared'): Promise<void> {
    // The chosen cut is the workspace's pending prune, already saved by then; only the comparison needs a record.
    if (step === 'compared') await this.memento.update(COMPARED_KEY, true);
    this.update();
  }

  private update(): void {
    const ready = this.registry.list().filter((m) => m.state === 'ready');
    const progress = guideProgress({
      readyModels: ready.length,
      // Only this workspace's models: an analysis another workspace left in the shared runs folder is not this user's step.
      analysedModels: ready.filter((m) => this.analyses.get(m.path)).length,
      cutChosen: this.cutChosen(),
      compared: this.memento.get<boolean>(COMPARED_KEY, false),
      runs: this.store.list(),
    });
    for (const step of Object.keys(GUIDE_CONTEXT) as GuideStep[]) {
      const value = progress[step];
      if (this.shown.get(step) === value) continue;
      this.shown.set(step, value);
      void vscode.commands.executeCommand('setContext', GUIDE_CONTEXT[step], value);
    }
  }

  dispose(): void {
    for (const s of this.subscriptions) s.dispose();
  }
}
