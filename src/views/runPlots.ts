import * as vscode from 'vscode';
import type { RunStore, RunSummary } from '../runs/runStore';
import { RunPlotFeed } from './runPlotFeed';
import { renderPage, webviewOptions } from './webviewHost';

const PAGE = (title: string) => ({
  title,
  script: 'runPlot.js',
  styles: [
    { folder: 'dist/webview' as const, file: 'uPlot.min.css' },
    { folder: 'media' as const, file: 'webview.css' },
  ],
  body: '<main id="app"><p class="hint">No run selected.</p></main>',
});

/**
 * The small live loss plot under the Runs tree: the runs selected there, else the newest live run,
 * else the newest run.
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
    this.selection = [...runs];
    this.feed?.setRuns(() => this.shown());
  }

  private shown(): string[] {
    if (this.selection.length) return this.selection.map((r) => r.runDir);
    const runs = this.store.list().filter((r) => r.verb === 'train');
    const pick = runs.find((r) => r.status === 'running') ?? runs[0];
    return pick ? [pick.runDir] : [];
  }

  dispose(): void {
    this.feed?.dispose();
  }
}

/** The full plot of one or several runs overlaid, in an editor tab. */
export class RunPanel implements vscode.Disposable {
  private static readonly open = new Map<string, RunPanel>();
  private readonly feed: RunPlotFeed;
  private disposed = false;

  static show(extensionUri: vscode.Uri, store: RunStore, runs: RunSummary[], log: (line: string) => void): RunPanel {
    const key = runs.map((r) => r.runDir).sort().join('|');
    const existing = RunPanel.open.get(key);
    if (existing) {
      existing.panel.reveal();
      return existing;
    }
    const title = runs.length === 1 ? `Run: ${runs[0].id}` : `Runs: ${runs.length} compared`;
    const panel = vscode.window.createWebviewPanel('l3prune.run', title, vscode.ViewColumn.Active, webviewOptions(extensionUri));
    const created = new RunPanel(panel, key, extensionUri, store, runs.map((r) => r.runDir), log);
    RunPanel.open.set(key, created);
    return created;
  }

  private constructor(
    readonly panel: vscode.WebviewPanel,
    private readonly key: string,
    extensionUri: vscode.Uri,
    store: RunStore,
    runDirs: string[],
    log: (line: string) => void,
  ) {
    panel.webview.html = renderPage(panel.webview, extensionUri, PAGE(panel.title));
    this.feed = new RunPlotFeed(panel.webview, store, () => runDirs, 'full', log);
    panel.onDidDispose(() => this.dispose());
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    RunPanel.open.delete(this.key);
    this.feed.dispose();
    this.panel.dispose();
  }
}
