import { firstMatch, isArrayOf, isInteger, isMessage, type Check } from './validate';

/** The Try Encoder panel's contract, imported by the host (src/inference/tryEncoderPanel) and its page. */
export interface EncoderSummary {
  name: string;
  folder: string;
  sourceModel: string;
  numLayers: number;
  originalNumLayers: number;
  hiddenSize: number;
  maxLength: number;
  pooling: string;
  normalize: boolean;
  /** The graph's weights and arithmetic (l3prune-encoder.json; fp32 for exports made before fp16). */
  precision: 'fp32' | 'fp16' | 'int8';
}

export interface ComparisonView {
  texts: string[];
  matrix: number[][];
  tokens: number[];
  batchSize: number;
  firstPassMs: number;
  msPerBatch: number;
  textsPerSecond: number;
  batches: number;
  maxSeq: number;
}

export type TryEncoderToWebview =
  | { type: 'encoder'; encoder: EncoderSummary; texts: string[] }
  | { type: 'busy'; message: string }
  | { type: 'result'; result: ComparisonView }
  | { type: 'error'; message: string };

export type TryEncoderFromWebview = { type: 'ready' } | { type: 'compare'; texts: string[]; batchSize: number };

/** Bounds keep a compromised page from making the host embed without end. */
export const MAX_TEXTS = 64;
export const MAX_TEXT_CHARS = 20_000;
export const MAX_BATCH_SIZE = 256;

const isText: Check<string> = (v): v is string => typeof v === 'string' && v.length <= MAX_TEXT_CHARS;
const isTexts: Check<string[]> = (v): v is string[] => isArrayOf(isText, MAX_TEXTS)(v) && v.length >= 2;

export function parseTryEncoderMessage(raw: unknown): TryEncoderFromWebview | undefined {
  return firstMatch<TryEncoderFromWebview>(raw, [isMessage('ready', {}), isMessage('compare', { texts: isTexts, batchSize: isInteger(1, MAX_BATCH_SIZE) })]);
}
