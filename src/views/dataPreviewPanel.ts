import * as path from 'node:path';
import * as vscode from 'vscode';
import { parseDataPreviewMessage, type DataPreviewToWebview } from '../shared/protocol/dataPreviewMessages';
import { runDataPreview, type DataPreviewRequest } from '../worker/dataPreview';
import { onValidatedMessage, renderPage, webviewOptions } from './webviewHost';

export const DATA_PREVIEW_VIEW_TYPE = 'l3prune.dataPreview';

/**
 * One panel that shows what a data set holds as analyze and train will read it: the worker's preview-data
 * report (validated against its schema before it is shown). The page can only ask for a recount at another
 * max length; the data, the model and everything else stay the host's.
 */
export class DataPreviewPanel implements vscode.Disposable {
  private static current: DataPreviewPanel | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private readonly panel: vscode.WebviewPanel;
  private request: DataPreviewRequest;
  private shown: DataPreviewToWebview | undefined;
  private ready = false;
  private running: vscode.CancellationTokenSource | undefined;
  private disposed = false;

  static show(extensionUri: vscode.Uri, request: DataPreviewRequest, log: (line: string) => void): DataPreviewPanel {
    const panel = DataPreviewPanel.current ?? new DataPreviewPanel(extensionUri, request, log);
    DataPreviewPanel.current = panel;
    panel.panel.reveal();
    void panel.count(request);
    return panel;
  }

  private constructor(extensionUri: vscode.Uri, request: DataPreviewRequest, private readonly log: (line: string) => void) {
    this.request = request;
    this.panel = vscode.window.createWebviewPanel(DATA_PREVIEW_VIEW_TYPE, 'Preview Training Data', vscode.ViewColumn.Active, webviewOptions(extensionUri));
    this.panel.webview.html = renderPage(this.panel.webview, extensionUri, {
      title: 'Preview Training Data',
      script: 'dataPreview.js',
      styles: [{ folder: 'media', file: 'webview.css' }],
      body: '<main id="app" aria-live="polite"><p class="hint">Reading the data…</p></main>',
    });
    this.disposables.push(
      onValidatedMessage(
        this.panel.webview,
        parseDataPreviewMessage,
        (message) => {
          switch (message.type) {
            case 'ready':
              this.ready = true;
              if (this.shown) void this.post(this.shown);
              return undefined;
            case 'recount':
              return this.count({ ...this.request, maxLength: message.maxLength });
          }
        },
        log,
      ),
      this.panel.onDidDispose(() => this.dispose()),
    );
  }

  /** Runs the worker for `request`; a newer count cancels one still running. */
  private async count(request: DataPreviewRequest): Promise<void> {
    this.running?.cancel();
    const running = new vscode.CancellationTokenSource();
    this.running = running;
    this.request = request;
    this.panel.title = `Preview: ${path.basename(request.data)}`;
    this.send({ type: 'loading', data: request.data, model: request.model, maxLength: request.maxLength });
    this.log(`preview-data ${request.data} with the tokenizer of ${request.model}, maxLength ${request.maxLength}`);
    const outcome = await runDataPreview(request, running.token);
    running.dispose();
    if (this.disposed || this.running !== running) return;
    this.running = undefined;
    if (outcome.status === 'done') this.send({ type: 'show', report: outcome.report });
    else if (outcome.status === 'failed') {
      this.log(`preview-data failed: ${outcome.message}`);
      this.send({ type: 'failed', data: request.data, message: outcome.message });
    }
  }

  private send(message: DataPreviewToWebview): void {
    this.shown = message;
    if (this.ready) void this.post(message);
  }

  private post(message: DataPreviewToWebview): Thenable<boolean> {
    return this.panel.webview.postMessage(message);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.running?.cancel();
    if (DataPreviewPanel.current === this) DataPreviewPanel.current = undefined;
    while (this.disposables.length) this.disposables.pop()?.dispose();
    this.panel.dispose();
  }
}
