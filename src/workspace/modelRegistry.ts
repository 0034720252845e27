import * as path from 'node:path';
import * as vscode from 'vscode';
import { inspectModel } from '../model/inspect';
import type { LayerStack } from '../shared/model/stack';

const STATE_KEY = 'l3prune.openedModels';

export type OpenedModel =
  | { path: string; state: 'loading' }
  | { path: string; state: 'ready'; stack: LayerStack }
  | { path: string; state: 'failed'; error: string };

/**
 * The models the user opened in this workspace. Only their paths persist (workspace state); stacks are
 * re-read from headers on activation, so a model that moved or broke shows its error instead of vanishing.
 */
export class ModelRegistry implements vscode.Disposable {
  private readonly models = new Map<string, OpenedModel>();
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;

  constructor(
    private readonly memento: vscode.Memento,
    private readonly configured: () => string[] = () => [],
    private readonly inspect: (target: string) => Promise<LayerStack> = inspectModel,
  ) {}

  /** Re-reads every persisted or configured model; failures are kept as failed entries, never dropped. */
  async restore(): Promise<void> {
    const saved = this.memento.get<unknown>(STATE_KEY, []);
    const paths = Array.isArray(saved) ? saved.filter((p): p is string => typeof p === 'string') : [];
    const all = [...new Set([...this.configured(), ...paths].map((p) => path.resolve(p)))];
    await Promise.all(all.map((p) => this.load(p)));
  }

  list(): OpenedModel[] {
    return [...this.models.values()];
  }

  get(modelPath: string): OpenedModel | undefined {
    return this.models.get(path.resolve(modelPath));
  }

  /** Opens (or re-reads) a model; resolves to its stack or rejects with the reader's one-sentence error. */
  async open(modelPath: string): Promise<LayerStack> {
    const entry = await this.load(modelPath);
    await this.persist();
    if (entry.state === 'failed') throw new Error(entry.error);
    return (entry as Extract<OpenedModel, { state: 'ready' }>).stack;
  }

  async remove(modelPath: string): Promise<void> {
    this.models.delete(path.resolve(modelPath));
    await this.persist();
    this.changed.fire();
  }

  private async load(modelPath: string): Promise<OpenedModel> {
    const key = path.resolve(modelPath);
    this.models.set(key, { path: key, state: 'loading' });
    this.changed.fire();
    let entry: OpenedModel;
    try {
      entry = { path: key, state: 'ready', stack: await this.inspect(key) };
    } catch (e) {
      entry = { path: key, state: 'failed', error: (e as Error).message };
    }
    // A remove while the read was in flight wins.
    if (this.models.has(key)) {
      this.models.set(key, entry);
      this.changed.fire();
    }
    return entry;
  }

  private persist(): Thenable<void> {
    return this.memento.update(STATE_KEY, [...this.models.keys()]);
  }

  dispose(): void {
    this.changed.dispose();
  }
}
