import * as vscode from 'vscode';
import type { LayerStack } from '../shared/model/stack';
import type { DeviceProfile } from '../shared/prune/resources';
import { parseLayerStackMessage, type InitialLossView, type LayerStackToWebview } from '../shared/protocol/layerStackMessages';
import { onValidatedMessage, renderPage, webviewOptions } from './webviewHost';

export const LAYER_STACK_VIEW_TYPE = 'l3prune.layerStack';

/**
 * One panel per model: the stack drawn to scale with a cut the user moves, and the initial-loss curve with
 * L³Prune's cuts once computed. The page holds no state that matters; the host re-sends it on every load.
 */
export class LayerStackPanel implements vscode.Disposable {
  private static readonly open = new Map<string, LayerStackPanel>();
  private readonly disposables: vscode.Disposable[] = [];
  private keep: number;
  private device: DeviceProfile | undefined;

  static show(
    extensionUri: vscode.Uri,
    stack: LayerStack,
    options: {
      initialLoss?: InitialLossView;
      keep?: number;
      log: (line: string) => void;
      /** The page's "Train at this cut…", with the slider's keep. */
      onTrainAt?: (stack: LayerStack, keep: number) => void;
    },
  ): LayerStackPanel {
    const existing = LayerStackPanel.open.get(stack.path);
    if (existing) {
      existing.update(stack, options.initialLoss ?? existing.initialLoss, options.keep);
      existing.panel.reveal();
      return existing;
    }
    const panel = vscode.window.createWebviewPanel(
      LAYER_STACK_VIEW_TYPE,
      `Layer Stack: ${stack.name}`,
      vscode.ViewColumn.Active,
      webviewOptions(extensionUri),
    );
    const created = new LayerStackPanel(panel, extensionUri, stack, options.initialLoss, options.keep, options.log, options.onTrainAt);
    LayerStackPanel.open.set(stack.path, created);
    return created;
  }

  static forModel(modelPath: string): LayerStackPanel | undefined {
    return LayerStackPanel.open.get(modelPath);
  }

  private constructor(
    readonly panel: vscode.WebviewPanel,
    extensionUri: vscode.Uri,
    private stack: LayerStack,
    private initialLoss: InitialLossView | undefined,
    keep: number | undefined,
    log: (line: string) => void,
    onTrainAt?: (stack: LayerStack, keep: number) => void,
  ) {
    this.keep = keep ?? stack.layers.length;
    panel.webview.html = renderPage(panel.webview, extensionUri, {
      title: panel.title,
      script: 'layerStack.js',
      styles: [
        { folder: 'dist/webview', file: 'uPlot.min.css' },
        { folder: 'media', file: 'webview.css' },
      ],
      body: '<main id="app" aria-live="polite"><p>Reading the layer stack…</p></main>',
    });
    this.disposables.push(
      onValidatedMessage(
        panel.webview,
        (raw) => parseLayerStackMessage(raw, this.stack.layers.length),
        (message) => {
          switch (message.type) {
            case 'ready':
              return this.post();
            case 'keepChanged':
              this.keep = message.keep;
              return;
            case 'trainAt':
              this.keep = message.keep;
              onTrainAt?.(this.stack, message.keep);
              return;
          }
        },
        log,
      ),
      panel.onDidDispose(() => this.dispose()),
    );
  }

  update(stack: LayerStack, initialLoss?: InitialLossView, keep?: number): void {
    this.stack = stack;
    this.initialLoss = initialLoss;
    this.keep = Math.min(keep ?? this.keep, stack.layers.length);
    void this.post();
  }

  /** The device the training plan is for (the worker's report); the page re-plans every cut for it. */
  setDevice(device: DeviceProfile): void {
    this.device = device;
    void this.post();
  }

  get currentKeep(): number {
    return this.keep;
  }

  private post(): Thenable<boolean> {
    const message: LayerStackToWebview = { type: 'show', stack: this.stack, keep: this.keep, initialLoss: this.initialLoss, device: this.device };
    return this.panel.webview.postMessage(message);
  }

  private disposed = false;

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    LayerStackPanel.open.delete(this.stack.path);
    while (this.disposables.length) this.disposables.pop()?.dispose();
    this.panel.dispose();
  }
}
