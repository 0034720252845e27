import { lstat } from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { conditionFlags, toCsv, toJson, unmeasuredExports, variantRows, withOrtNodeSpeeds, type EvalConditions, type OrtNodeSpeed, type VariantRow } from '../shared/compare/variants';
import { parseCompareMessage, type CompareToWebview, type ExportFormat } from '../shared/protocol/compareMessages';
import type { RunStore, RunSummary } from '../runs/runStore';
import { onValidatedMessage, renderPage, webviewOptions } from './webviewHost';

export const COMPARE_VIEW_TYPE = 'l3prune.compare';

export interface CompareOptions {
  log: (line: string) => void;
  /** A detail's link: show that run (an evaluation, or the training run of a trained variant). */
  openRun: (run: RunSummary) => unknown;
  /** "Re-evaluate to match": evaluate these rows' variants again under their model's reference conditions. */
  reevaluate?: (flagged: Array<{ row: VariantRow; reference: EvalConditions }>) => unknown;
  /** Where the save dialog starts. */
  exportFolder: () => vscode.Uri | undefined;
  /** The onnxruntime-node timer of the ONNX rows' exports (src/compare/ortNodeSpeeds), one per panel. */
  ortNodeSpeeds?: () => OrtNodeSpeedSource;
}

export interface OrtNodeSpeedSource extends vscode.Disposable {
  readonly measured: ReadonlyMap<string, OrtNodeSpeed>;
  request(folders: readonly string[], batchSize: number): void;
  onDidChange(listener: () => void): vscode.Disposable;
}

/**
 * One panel for all evaluated variants: a table and a Pareto plot of average score against cost, kept
 * current from the run store so a finishing evaluation appears without a reload. The page only asks for
 * exports; the host builds the file from its own rows and writes it where the user chose.
 */
export class ComparePanel implements vscode.Disposable {
  private static current: ComparePanel | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private rows: VariantRow[] = [];
  private sentSignature = '';
  private ready = false;
  private highlight: string | undefined;
  private disposed = false;
  private readonly speeds: OrtNodeSpeedSource | undefined;

  static show(extensionUri: vscode.Uri, store: RunStore, options: CompareOptions, highlight?: RunSummary): ComparePanel {
    const panel = ComparePanel.current ?? new ComparePanel(extensionUri, store, options);
    ComparePanel.current = panel;
    panel.highlight = highlight?.runDir;
    panel.panel.reveal();
    panel.push(true);
    return panel;
  }

  private readonly panel: vscode.WebviewPanel;

  private constructor(
    extensionUri: vscode.Uri,
    private readonly store: RunStore,
    private readonly options: CompareOptions,
  ) {
    this.panel = vscode.window.createWebviewPanel(COMPARE_VIEW_TYPE, 'Compare Variants', vscode.ViewColumn.Active, webviewOptions(extensionUri));
    this.panel.webview.html = renderPage(this.panel.webview, extensionUri, {
      title: 'Compare Variants',
      script: 'compare.js',
      styles: [
        { folder: 'dist/webview', file: 'uPlot.min.css' },
        { folder: 'media', file: 'webview.css' },
      ],
      body: '<main id="app" aria-live="polite"><p class="hint">Reading the evaluations…</p></main>',
    });
    this.speeds = options.ortNodeSpeeds?.();
    this.disposables.push(
      store.onDidChange(() => this.push(false)),
      ...(this.speeds ? [this.speeds, this.speeds.onDidChange(() => this.push(false))] : []),
      onValidatedMessage(
        this.panel.webview,
        (raw) => parseCompareMessage(raw, new Set(this.rows.map((r) => r.id))),
        (message) => {
          switch (message.type) {
            case 'ready':
              this.ready = true;
              return this.push(true);
            case 'openRun': {
              const run = this.store.get(message.id);
              return run ? this.options.openRun(run) : undefined;
            }
            case 'openTraining': {
              const fromRun = this.rows.find((r) => r.id === message.id)?.fromRun;
              const run = fromRun ? this.store.get(fromRun) : undefined;
              if (run) return this.options.openRun(run);
              void vscode.window.showWarningMessage(`The training run ${fromRun ?? ''} of this variant is no longer in the runs folder.`);
              return undefined;
            }
            case 'reevaluate': {
              // The host's own rows and flags decide what runs: the page only names rows it was shown.
              const flags = conditionFlags(this.rows);
              const wanted = new Set(message.ids);
              const flagged = this.rows.flatMap((row, i) => (wanted.has(row.id) && flags[i] && !flags[i]!.rematched ? [{ row, reference: flags[i]!.reference }] : []));
              return flagged.length ? this.options.reevaluate?.(flagged) : undefined;
            }
            case 'export':
              return this.export(message.format);
          }
        },
        options.log,
      ),
      this.panel.onDidDispose(() => this.dispose()),
    );
  }

  /** Sends the rows when they changed (or always, on a page load or an explicit show). */
  private push(always: boolean): void {
    const speeds = this.speeds;
    this.rows = speeds ? withOrtNodeSpeeds(variantRows(this.store.list()), speeds.measured) : variantRows(this.store.list());
    // Each export is timed once, at the batch size its evaluation used, while the panel is open.
    if (speeds && this.ready) {
      for (const row of this.rows) if (row.onnx && unmeasuredExports([row], speeds.measured).length) speeds.request([row.onnx.folder], row.batchSize);
    }
    const signature = JSON.stringify(this.rows);
    if (!this.ready || (!always && signature === this.sentSignature)) return;
    this.sentSignature = signature;
    void this.post({ type: 'show', rows: this.rows, highlight: this.highlight });
  }

  private async export(format: ExportFormat): Promise<void> {
    const rows = this.rows;
    if (!rows.length) {
      void vscode.window.showInformationMessage('There is no evaluated variant to export yet.');
      return;
    }
    const folder = this.options.exportFolder();
    const name = `l3prune-variants.${format}`;
    const target = await vscode.window.showSaveDialog({
      title: `Export ${rows.length} variant${rows.length === 1 ? '' : 's'} as ${format.toUpperCase()}`,
      defaultUri: folder ? vscode.Uri.joinPath(folder, name) : undefined,
      filters: format === 'csv' ? { 'CSV (comma-separated values)': ['csv'] } : { JSON: ['json'] },
      saveLabel: 'Export',
    });
    if (!target) return;
    const text = format === 'csv' ? toCsv(rows) : toJson(rows);
    // Replacing the chosen name is what the save dialog confirmed; writing through a link there (a shipped
    // l3prune-variants.csv -> ~/.bashrc) would replace another file, which it did not.
    if (target.scheme === 'file' && (await lstat(target.fsPath).then((info) => info.isSymbolicLink(), () => false))) {
      void vscode.window.showErrorMessage(`${target.fsPath} is a symbolic link, so L³Prune does not write through it; choose another name.`);
      return;
    }
    await vscode.workspace.fs.writeFile(target, Buffer.from(text, 'utf8'));
    void this.post({ type: 'exported', format, path: target.fsPath });
    void vscode.window.showInformationMessage(`Exported ${rows.length} variant${rows.length === 1 ? '' : 's'} to ${path.basename(target.fsPath)}.`);
  }

  private post(message: CompareToWebview): Thenable<boolean> {
    return this.panel.webview.postMessage(message);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (ComparePanel.current === this) ComparePanel.current = undefined;
    while (this.disposables.length) this.disposables.pop()?.dispose();
    this.panel.dispose();
  }
}
