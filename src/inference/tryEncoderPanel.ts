import * as path from 'node:path';
import * as vscode from 'vscode';
import { parseTryEncoderMessage, type ComparisonView, type EncoderSummary, type TryEncoderToWebview } from '../shared/protocol/tryEncoderMessages';
import { onValidatedMessage, renderPage, webviewOptions } from '../views/webviewHost';
import type { EncoderInfo } from './encoder';
import type { EncoderThread } from './encoderClient';

export const TRY_ENCODER_VIEW_TYPE = 'l3prune.tryEncoder';

export const SAMPLE_TEXTS = [
  'A man is playing a guitar on stage.',
  'Someone performs music with a guitar in front of an audience.',
  'The stock market fell sharply on Monday.',
  'How do I reset my password?',
];

/**
 * One panel per exported encoder: texts in, similarity matrix and measured speed out. The encoder lives in
 * a worker thread the panel owns; closing the panel ends the thread and frees the ONNX session.
 */
export class TryEncoderPanel implements vscode.Disposable {
  private static readonly open = new Map<string, TryEncoderPanel>();
  private readonly disposables: vscode.Disposable[] = [];
  private texts: string[];
  private last: ComparisonView | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  static forFolder(folder: string): TryEncoderPanel | undefined {
    return TryEncoderPanel.open.get(folder);
  }

  static show(extensionUri: vscode.Uri, thread: EncoderThread, info: EncoderInfo, log: (line: string) => void, texts?: string[]): TryEncoderPanel {
    TryEncoderPanel.open.get(info.folder)?.dispose();
    const panel = vscode.window.createWebviewPanel(TRY_ENCODER_VIEW_TYPE, `Try Encoder: ${encoderName(info)}`, vscode.ViewColumn.Active, webviewOptions(extensionUri));
    const created = new TryEncoderPanel(panel, extensionUri, thread, info, log, texts ?? SAMPLE_TEXTS);
    TryEncoderPanel.open.set(info.folder, created);
    return created;
  }

  private constructor(
    readonly panel: vscode.WebviewPanel,
    extensionUri: vscode.Uri,
    private readonly thread: EncoderThread,
    private readonly info: EncoderInfo,
    private readonly log: (line: string) => void,
    texts: string[],
  ) {
    this.texts = texts;
    panel.webview.html = renderPage(panel.webview, extensionUri, {
      title: panel.title,
      script: 'tryEncoder.js',
      styles: [{ folder: 'media', file: 'webview.css' }],
      body: '<main id="app" aria-live="polite"><p class="hint">Loading the encoder…</p></main>',
    });
    this.disposables.push(
      onValidatedMessage(
        panel.webview,
        parseTryEncoderMessage,
        async (message) => {
          if (message.type === 'ready') {
            await this.post({ type: 'encoder', encoder: summary(this.info), texts: this.texts });
            if (this.last) await this.post({ type: 'result', result: this.last });
            return;
          }
          // The page already shows the error; the host has nothing more to do with it.
          await this.compare(message.texts, message.batchSize).catch(() => undefined);
        },
        log,
      ),
      panel.onDidDispose(() => this.dispose()),
    );
  }

  /** Embeds the texts, measures speed and shows both; one comparison at a time per panel. */
  compare(texts: string[], batchSize = 16): Promise<ComparisonView | undefined> {
    this.texts = texts;
    const run = this.queue.then(() => this.doCompare(texts, batchSize));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async doCompare(texts: string[], batchSize: number): Promise<ComparisonView | undefined> {
    await this.post({ type: 'busy', message: `Embedding ${texts.length} texts and timing ${Math.ceil(texts.length / batchSize)} batch(es)…` });
    try {
      const c = await this.thread.compare(texts, batchSize);
      const result: ComparisonView = {
        texts,
        matrix: c.matrix,
        tokens: c.tokens,
        batchSize,
        firstPassMs: c.firstPassMs,
        msPerBatch: c.throughput.msPerBatch,
        textsPerSecond: c.throughput.textsPerSecond,
        batches: c.throughput.batches,
        maxSeq: c.throughput.maxSeq,
      };
      this.last = result;
      this.log(`try encoder ${this.info.folder}: ${texts.length} texts, ${result.msPerBatch.toFixed(1)} ms/batch of ${batchSize}, ${result.textsPerSecond.toFixed(1)} texts/s`);
      await this.post({ type: 'result', result });
      return result;
    } catch (e) {
      const message = (e as Error).message ?? String(e);
      this.log(`try encoder ${this.info.folder}: ${message}`);
      await this.post({ type: 'error', message });
      if (this.disposed) return undefined;
      throw e;
    }
  }

  private post(message: TryEncoderToWebview): Thenable<boolean> {
    if (this.disposed) return Promise.resolve(false);
    return this.panel.webview.postMessage(message);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (TryEncoderPanel.open.get(this.info.folder) === this) TryEncoderPanel.open.delete(this.info.folder);
    while (this.disposables.length) this.disposables.pop()?.dispose();
    void this.thread.dispose();
    this.panel.dispose();
  }
}

export function encoderName(info: EncoderInfo): string {
  // Exports default to <run>/onnx: the run folder names the encoder better than "onnx".
  const base = path.basename(info.folder);
  return base === 'onnx' ? path.basename(path.dirname(info.folder)) : base;
}

function summary(info: EncoderInfo): EncoderSummary {
  const m = info.manifest;
  return {
    name: encoderName(info),
    folder: info.folder,
    sourceModel: m.sourceModel,
    numLayers: m.numLayers,
    originalNumLayers: m.originalNumLayers,
    hiddenSize: m.hiddenSize,
    maxLength: m.maxLength,
    pooling: m.pooling,
    normalize: m.normalize,
    precision: m.precision ?? 'fp32',
  };
}
