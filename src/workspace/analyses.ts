import * as path from 'node:path';
import * as vscode from 'vscode';
import type { InitialLossView } from '../shared/protocol/layerStackMessages';
import { isLayerLosses } from '../shared/protocol/workerEvents';
import { readdir } from 'node:fs/promises';
import { readAllEvents, readRunRecord } from '../runs/runFolder';

const STATE_KEY = 'l3prune.initialLossRuns';

/**
 * The latest initial-loss analysis of each model. Workspace state keeps only model → run folder; the curve
 * itself is read back from that folder's events.jsonl, the record the worker wrote.
 */
export class AnalysisStore implements vscode.Disposable {
  private readonly views = new Map<string, InitialLossView>();
  private readonly changed = new vscode.EventEmitter<string>();
  readonly onDidChange = this.changed.event;

  constructor(
    private readonly memento: vscode.Memento,
    private readonly runsRoot: () => string,
  ) {}

  /**
   * The analyses this workspace remembers, then any other succeeded analyze run in the runs folder (from
   * the command line, a task or another window), newest first per model.
   */
  async restore(): Promise<void> {
    const saved = Object.entries(this.memento.get<Record<string, unknown>>(STATE_KEY, {}) ?? {});
    const remembered = saved.filter((entry): entry is [string, string] => typeof entry[1] === 'string');
    const found = await findAnalyzeRuns(this.runsRoot());
    const byModel = new Map<string, string>(found);
    for (const [model, runDir] of remembered) byModel.set(model, runDir);
    await Promise.all(
      [...byModel].map(async ([model, runDir]) => {
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

/** [model, runDir] of the newest succeeded analyze run per model under `root`. */
export async function findAnalyzeRuns(root: string): Promise<Array<[string, string]>> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return [];
  }
  const newest = new Map<string, { runDir: string; startedAt: string }>();
  for (const name of names) {
    const runDir = path.join(root, name);
    const record = await readRunRecord(runDir);
    const model = record?.spec.model;
    if (record?.verb !== 'analyze' || record.status !== 'succeeded' || typeof model !== 'string') continue;
    const key = path.resolve(model);
    const current = newest.get(key);
    if (!current || record.startedAt > current.startedAt) newest.set(key, { runDir, startedAt: record.startedAt });
  }
  return [...newest].map(([model, { runDir }]) => [model, runDir]);
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
    cutStability: last.cutStability,
    runDir,
  };
}
