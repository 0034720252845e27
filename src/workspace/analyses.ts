import * as path from 'node:path';
import * as vscode from 'vscode';
import type { InitialLossView } from '../protocol/layerStackMessages';
import { isLayerLosses } from '../protocol/workerEvents';
import { readAllEvents } from '../runs/runFolder';

const STATE_KEY = 'l3prune.initialLossRuns';

/**
 * The latest initial-loss analysis of each model. Workspace state keeps only model → run folder; the curve
 * itself is read back from that folder's events.jsonl, the record the worker wrote.
 */
export class AnalysisStore implements vscode.Disposable {
  private readonly views = new Map<string, InitialLossView>();
  private readonly changed = new vscode.EventEmitter<string>();
  readonly onDidChange = this.changed.event;

  constructor(private readonly memento: vscode.Memento) {}

  async restore(): Promise<void> {
    const saved = this.memento.get<Record<string, unknown>>(STATE_KEY, {});
    await Promise.all(
      Object.entries(saved ?? {}).map(async ([model, runDir]) => {
        if (typeof runDir !== 'string') return;
        const view = await readInitialLoss(runDir);
        if (view) {
          this.views.set(model, view);
          this.changed.fire(model);
        }
      }),
    );
  }

  get(modelPath: string): InitialLossView | undefined {
    return this.views.get(path.resolve(modelPath));
  }

  async set(modelPath: string, view: InitialLossView): Promise<void> {
    const key = path.resolve(modelPath);
    this.views.set(key, view);
    const saved = { ...this.memento.get<Record<string, unknown>>(STATE_KEY, {}) };
    if (view.runDir) saved[key] = view.runDir;
    await this.memento.update(STATE_KEY, saved);
    this.changed.fire(key);
  }

  dispose(): void {
    this.changed.dispose();
  }
}

export async function readInitialLoss(runDir: string): Promise<InitialLossView | undefined> {
  const events = await readAllEvents(runDir);
  const last = events.filter(isLayerLosses).pop();
  if (!last) return undefined;
  return {
    losses: last.losses,
    small: last.small,
    large: last.large,
    blockInfluence: last.blockInfluence,
    angularDistance: last.angularDistance,
    runDir,
  };
}
