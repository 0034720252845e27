import * as path from 'node:path';
import * as vscode from 'vscode';
import type { RunStore, RunSummary } from '../runs/runStore';
import { runNameProblem } from '../runs/runName';
import type { Services } from '../services';
import { readInitialLoss } from '../workspace/analyses';
import { LayerStackPanel } from './layerStackPanel';
import { mementoPrefs, RunPlotFeed, type PrefsStore } from './runPlotFeed';
import { runName } from './runsTree';
import { renderPage, webviewOptions } from './webviewHost';

export const RUN_PANEL_VIEW_TYPE = 'l3prune.run';

const PAGE = (title: string) => ({
  title,
  script: 'runPlot.js',
  styles: [
    { folder: 'dist/webview' as const, file: 'uPlot.min.css' },
    { folder: 'media' as const, file: 'webview.css' },
    { folder: 'media' as const, file: 'runPlot.css' },
  ],
  body: '<main id="app"><p class="hint">No run selected.</p></main>',
});

/**
 * The small live loss plot under the Runs tree: the training runs selected there, else the newest live run,
 * else the newest training run. Selecting runs without a loss (an analysis, an evaluation) leaves it as it was.
 */
export class LossPlotViewProvider implements vscode.WebviewViewProvider, vscode.Disposable {
  static readonly viewId = 'l3prune.lossPlot';
  private feed: RunPlotFeed | undefined;
  private selection: RunSummary[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly store: RunStore,
    private readonly log: (line: string) => void,
  ) {}

  resolveWebviewView(view: vscode.WebviewView): void {
    view.webview.options = webviewOptions(this.extensionUri);
    view.webview.html = renderPage(view.webview, this.extensionUri, PAGE('Loss'));
    this.feed?.dispose();
    this.feed = new RunPlotFeed(view.webview, this.store, () => this.shown(), 'compact', this.log);
    view.onDidDispose(() => {
      this.feed?.dispose();
      this.feed = undefined;
    });
  }

  select(runs: readonly RunSummary[]): void {
    const training = runs.filter((r) => r.verb === 'train');
    if (runs.length && !training.length) return;
    this.selection = training;
    this.feed?.setRuns(() => this.shown());
  }

  private shown(): string[] {
    const selected = this.selection.filter((r) => this.store.get(r.runDir));
    if (selected.length) return selected.map((r) => r.runDir);
    const runs = this.store.list().filter((r) => r.verb === 'train');
    const pick = runs.find((r) => r.status === 'running') ?? runs[0];
    return pick ? [pick.runDir] : [];
  }

  dispose(): void {
    this.feed?.dispose();
  }
}

let prefsStore: PrefsStore | undefined;

/** The run page's charts follow the user's last choices, in every window (global state). */
export function useRunPagePrefs(memento: vscode.Memento): void {
  prefsStore = mementoPrefs(memento);
}

/** The page of one training run (or several overlaid), in an editor tab: one tab per run or set of runs. */
export class RunPanel implements vscode.Disposable {
  private static readonly open = new Map<string, RunPanel>();
  private readonly feed: RunPlotFeed;
  private readonly subscription: { dispose(): void };
  private disposed = false;

  static show(extensionUri: vscode.Uri, store: RunStore, picked: RunSummary[], log: (line: string) => void): RunPanel | undefined {
    // Only training runs have series: an analysis or an evaluation among them would be an empty line.
    const runs = picked.filter((r) => r.verb === 'train');
    if (!runs.length) {
      void vscode.window.showInformationMessage('Runs are overlaid by their loss: pick at least one training run.');
      return undefined;
    }
    const key = keyOf(runs.map((r) => r.runDir));
    const existing = RunPanel.open.get(key);
    if (existing) {
      existing.panel.reveal();
      return existing;
    }
    const panel = vscode.window.createWebviewPanel(RUN_PANEL_VIEW_TYPE, 'Run', vscode.ViewColumn.Active, webviewOptions(extensionUri));
    return RunPanel.adopt(panel, extensionUri, store, runs.map((r) => r.runDir), log);
  }

  /** A panel VS Code restored after a reload (the serializer), or one just made. */
  static adopt(panel: vscode.WebviewPanel, extensionUri: vscode.Uri, store: RunStore, runDirs: string[], log: (line: string) => void): RunPanel {
    const key = keyOf(runDirs);
    const created = new RunPanel(panel, key, extensionUri, store, runDirs, log);
    RunPanel.open.set(key, created);
    return created;
  }

  /** The open page of exactly this run, if any (tests and the rename command). */
  static of(runDir: string): RunPanel | undefined {
    return RunPanel.open.get(keyOf([runDir]));
  }

  private constructor(
    readonly panel: vscode.WebviewPanel,
    private readonly key: string,
    extensionUri: vscode.Uri,
    private readonly store: RunStore,
    private readonly runDirs: string[],
    log: (line: string) => void,
  ) {
    panel.webview.options = webviewOptions(extensionUri);
    this.retitle();
    panel.webview.html = renderPage(panel.webview, extensionUri, PAGE(panel.title));
    this.feed = new RunPlotFeed(panel.webview, store, () => runDirs, 'full', log, prefsStore);
    // A rename (here or in another window) shows in the tab at the next refresh.
    this.subscription = store.onDidChange(() => this.retitle());
    panel.onDidDispose(() => this.dispose());
  }

  private retitle(): void {
    const runs = this.runDirs.map((d) => this.store.get(d)).filter((r): r is RunSummary => !!r);
    const title =
      this.runDirs.length === 1 ? (runs[0] ? runName(this.store, runs[0]) : path.basename(this.runDirs[0])) : `Runs: ${this.runDirs.length} compared`;
    if (this.panel.title !== title) this.panel.title = title;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    RunPanel.open.delete(this.key);
    this.subscription.dispose();
    this.feed.dispose();
    this.panel.dispose();
  }
}

const keyOf = (runDirs: string[]) => runDirs.map((d) => path.resolve(d)).sort().join('|');

/**
 * Brings run pages back after a window reload. The page's own state names its runs; only names of run
 * folders the store lists are taken (the state is the page's word, and a page is untrusted).
 */
export function registerRunPanelSerializer(extensionUri: vscode.Uri, store: RunStore, log: (line: string) => void): vscode.Disposable {
  return vscode.window.registerWebviewPanelSerializer(RUN_PANEL_VIEW_TYPE, {
    async deserializeWebviewPanel(panel, state: unknown) {
      const ids = (state as { runIds?: unknown } | undefined)?.runIds;
      await store.refresh();
      const runDirs = Array.isArray(ids) ? ids.filter((id): id is string => typeof id === 'string' && store.get(id) !== undefined).slice(0, 20) : [];
      if (!runDirs.length) {
        panel.dispose();
        return;
      }
      RunPanel.adopt(panel, extensionUri, store, runDirs, log);
    },
  });
}

/**
 * Open Run: each run where its result is read. A training run gets its page; an analysis its curve in the
 * model's layer-stack panel; an evaluation its row among the model's variants (Compare). No run gets an
 * empty page.
 */
export async function openRunPages(s: Services, runs: RunSummary[]): Promise<void> {
  const pages = runs.filter((r) => r.verb === 'train');
  for (const run of runs.filter((r) => r.verb === 'analyze').slice(0, 1)) await openAnalysis(s, run);
  for (const run of runs.filter((r) => r.verb === 'evaluate').slice(0, 1)) await vscode.commands.executeCommand('l3prune.compareVariants', run);
  const others = runs.filter((r) => r.verb !== 'train' && r.verb !== 'analyze' && r.verb !== 'evaluate');
  if (others.length) {
    // An export or encode run has no series: its folder holds what it made.
    await vscode.commands.executeCommand('l3prune.revealRun', others[0]);
  }
  if (pages.length) RunPanel.show(s.extensionUri, s.store, pages, (line) => s.log.warn(line));
}

async function openAnalysis(s: Services, run: RunSummary): Promise<void> {
  if (!run.model) {
    void vscode.window.showWarningMessage(`Run ${run.id} names no model in its run.json, so there is no layer stack to show its curve on.`);
    return;
  }
  const model = path.resolve(run.model);
  await vscode.commands.executeCommand('l3prune.showLayerStack', model);
  const view = await readInitialLoss(run.runDir);
  const entry = s.registry.get(model);
  const panel = LayerStackPanel.forModel(model);
  if (view && panel && entry?.state === 'ready') panel.update(entry.stack, view);
  else if (!view) {
    void vscode.window.showInformationMessage(
      run.status === 'running'
        ? `The initial loss of ${path.basename(model)} is still being computed; its curve appears in the layer stack when the run ends.`
        : `Run ${run.id} holds no initial-loss curve (it ${run.status === 'succeeded' ? 'ended without one' : run.status}); the layer stack shows the latest analysis of the model instead.`,
    );
  }
}

/** Rename Run…: asks for a name and stores it in the run folder (name.json), where every window finds it. */
export async function renameRun(s: Pick<Services, 'store'>, run: RunSummary | undefined): Promise<void> {
  if (!run) return;
  const current = runName(s.store, run);
  const name = await vscode.window.showInputBox({
    title: 'Rename run',
    prompt: `The name ${run.id} is shown by in the Runs tree, its page and the plots`,
    value: current,
    validateInput: (value) => runNameProblem(value),
  });
  if (name === undefined || name.trim() === current) return;
  try {
    s.store.rename(run.runDir, name);
  } catch (e) {
    void vscode.window.showErrorMessage(`Run ${run.id} was not renamed: ${(e as Error).message}`);
  }
}
