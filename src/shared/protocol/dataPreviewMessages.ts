import type { DataPreview } from './generated/data-preview';
import { firstMatch, isInteger, isMessage } from './validate';

/** The Preview Training Data panel's contract, shared by the host (src/views/dataPreviewPanel) and its page (webview/dataPreview). */
export type DataPreviewToWebview =
  | { type: 'loading'; data: string; model: string; maxLength: number }
  | { type: 'show'; report: DataPreview }
  | { type: 'failed'; data: string; message: string };

/** `recount`: the same data and model counted again at another max length (the page's only input). */
export type DataPreviewFromWebview = { type: 'ready' } | { type: 'recount'; maxLength: number };

/** The bounds of the spec's maxLength (protocol/specs/preview-data.schema.json: at least 2); 1M tokens is past any model. */
export const MAX_LENGTH_BOUNDS = { min: 2, max: 1_048_576 } as const;

export function parseDataPreviewMessage(raw: unknown): DataPreviewFromWebview | undefined {
  return firstMatch<DataPreviewFromWebview>(raw, [
    isMessage('ready', {}),
    isMessage('recount', { maxLength: isInteger(MAX_LENGTH_BOUNDS.min, MAX_LENGTH_BOUNDS.max) }),
  ]);
}

export interface HistogramBar {
  from: number;
  to: number;
  count: number;
  /** The bar holds lengths past maxLength (texts that are cut); a bar that straddles it holds both kinds. */
  truncated: boolean;
}

/** The report's bins as bars; bins from 0 past both the longest text and maxLength, so its line is inside the plot. */
export function histogramBars(lengths: DataPreview['lengths'], maxLength: number): HistogramBar[] {
  return lengths.counts.map((count, i) => ({ from: lengths.edges[i], to: lengths.edges[i + 1], count, truncated: lengths.edges[i + 1] - 1 > maxLength }));
}
