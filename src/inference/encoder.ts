import * as path from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { checkEncoderFiles, checkEncoderFolder, EncoderFolderError, readManifest, type EncoderManifest } from './manifest';
import { EncoderTokenizer, type EncoderInput } from './tokenizer';

export { EncoderFolderError, type EncoderManifest } from './manifest';

type OrtModule = typeof Ort;
let ortModule: Promise<OrtModule> | undefined;

/**
 * onnxruntime-node is a native addon: it is loaded at first use, never at activation, so an extension host
 * on a platform without a bundled binding still starts and only this feature reports the problem.
 */
export function loadOnnxRuntime(): Promise<OrtModule> {
  ortModule ??= import('onnxruntime-node').then(
    (m) => ((m as { default?: OrtModule }).default?.InferenceSession ? (m as { default: OrtModule }).default : m),
    (e: Error) => {
      ortModule = undefined;
      throw new Error(
        `The ONNX runtime (onnxruntime-node) cannot be loaded on ${process.platform}-${process.arch}: ${e.message.split('\n')[0]}. ` +
          'This build of L³Prune Studio may not carry the runtime for this platform; install the build made for it.',
      );
    },
  );
  return ortModule;
}

export interface EncoderOptions {
  /** Threads inside one operator; ORT's default is one per physical core. */
  intraOpNumThreads?: number;
}

export interface EncoderInfo {
  folder: string;
  manifest: EncoderManifest;
  inputNames: string[];
  outputName: string;
}

export interface Throughput {
  texts: number;
  batchSize: number;
  /** Batches timed after the warm-up ones. */
  batches: number;
  /** Median wall time of one batch, tokenisation included, as a caller of embed() sees it. */
  msPerBatch: number;
  textsPerSecond: number;
  /** Longest padded sequence fed in the timed batches. */
  maxSeq: number;
  /** Every timed batch, in milliseconds, for callers that pool several measurements. */
  batchTimes: number[];
}

/** An exported L³Prune encoder on onnxruntime-node's CPU provider: texts in, pooled unit vectors out. */
export class OnnxEncoder {
  private constructor(
    readonly info: EncoderInfo,
    readonly tokenizer: EncoderTokenizer,
    private readonly ort: OrtModule,
    private readonly session: Ort.InferenceSession,
  ) {}

  static async load(folder: string, options: EncoderOptions = {}): Promise<OnnxEncoder> {
    const resolved = await checkEncoderFolder(folder);
    const manifest = await readManifest(resolved);
    await checkEncoderFiles(resolved, manifest);
    const tokenizer = await EncoderTokenizer.fromFolder(resolved, {
      maxLength: manifest.maxLength,
      paddingSide: manifest.paddingSide,
      padTokenId: manifest.padTokenId,
      addSpecialTokens: manifest.addSpecialTokens,
      truncationSide: manifest.truncationSide,
      prependTokenIds: manifest.prependTokenIds,
      appendTokenIds: manifest.appendTokenIds,
      // The worker's text pipeline (textpipe.py); exports made before it have none: no wrapper, no instruction format.
      instructionFormat: manifest.textPipeline?.instructionFormat,
      chatPrefix: manifest.textPipeline?.chatPrefix ?? null,
      chatSuffix: manifest.textPipeline?.chatSuffix ?? null,
    });
    const ort = await loadOnnxRuntime();
    const modelFile = path.join(resolved, manifest.model);
    let session: Ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(modelFile, {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
        // The binding rejects an explicit undefined; absent means ORT's own default.
        ...(options.intraOpNumThreads ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
      });
    } catch (e) {
      throw new EncoderFolderError(`${modelFile} cannot be loaded by ONNX Runtime (${(e as Error).message.split('\n')[0]}); export the encoder again.`);
    }
    const inputNames = [...session.inputNames];
    const outputName = manifest.output;
    const unknown = inputNames.filter((n) => !FEEDABLE.has(n));
    const missing = ['input_ids', 'attention_mask'].filter((n) => !inputNames.includes(n));
    if (unknown.length || missing.length) {
      await session.release();
      throw new EncoderFolderError(
        `${modelFile} takes inputs ${inputNames.join(', ')}; an L³Prune encoder takes input_ids and attention_mask` +
          `${unknown.length ? ` (cannot feed ${unknown.join(', ')})` : ''}; export it with l3prune export-onnx.`,
      );
    }
    if (!session.outputNames.includes(outputName)) {
      await session.release();
      throw new EncoderFolderError(`${modelFile} has no output "${outputName}" (it has ${session.outputNames.join(', ')}), which l3prune-encoder.json names; export the encoder again.`);
    }
    return new OnnxEncoder({ folder: resolved, manifest, inputNames, outputName }, tokenizer, ort, session);
  }

  /** One session run for these texts, padded together. */
  async embedBatch(texts: readonly EncoderInput[]): Promise<Float32Array[]> {
    if (!texts.length) return [];
    const tokens = this.tokenizer.encodeBatch(texts);
    const dims = [tokens.batch, tokens.seq];
    const feeds: Record<string, Ort.Tensor> = {};
    for (const name of this.info.inputNames) {
      const data =
        name === 'input_ids' ? tokens.inputIds
        : name === 'attention_mask' ? tokens.attentionMask
        : name === 'embed_mask' ? tokens.embedMask
        : new BigInt64Array(tokens.batch * tokens.seq);
      feeds[name] = new this.ort.Tensor('int64', data, dims);
    }
    const results = await this.session.run(feeds, [this.info.outputName]);
    const output = results[this.info.outputName];
    try {
      const hidden = this.info.manifest.hiddenSize;
      if (output.type !== 'float32' || output.dims.length !== 2 || output.dims[0] !== tokens.batch || output.dims[1] !== hidden) {
        throw new EncoderFolderError(
          `${path.join(this.info.folder, this.info.manifest.model)} returned ${output.type} [${output.dims.join(', ')}] for "${this.info.outputName}"; ` +
            `l3prune-encoder.json promises float32 [${tokens.batch}, ${hidden}]. Export the encoder again.`,
        );
      }
      const data = output.data as Float32Array;
      // Copies: the tensor's buffer belongs to ORT and is released with it.
      return Array.from({ length: tokens.batch }, (_, b) => data.slice(b * hidden, (b + 1) * hidden));
    } finally {
      for (const value of Object.values(results)) value.dispose();
    }
  }

  async embed(texts: readonly EncoderInput[], batchSize = 16): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (let i = 0; i < texts.length; i += batchSize) out.push(...(await this.embedBatch(texts.slice(i, i + batchSize))));
    return out;
  }

  /**
   * Latency and throughput of embed() on these texts in batches of batchSize: `warmup` untimed passes first
   * (ORT allocates and picks kernels on the first runs), then `repeats` timed passes over all the texts.
   */
  async measure(texts: readonly string[], { batchSize = 16, warmup = 1, repeats = 3 }: { batchSize?: number; warmup?: number; repeats?: number } = {}): Promise<Throughput> {
    if (!texts.length) throw new Error('nothing to measure: no texts');
    const batches: string[][] = [];
    for (let i = 0; i < texts.length; i += batchSize) batches.push(texts.slice(i, i + batchSize));
    for (let w = 0; w < warmup; w++) for (const batch of batches) await this.embedBatch(batch);
    const times: number[] = [];
    let total = 0;
    for (let r = 0; r < Math.max(1, repeats); r++) {
      for (const batch of batches) {
        const start = process.hrtime.bigint();
        await this.embedBatch(batch);
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        times.push(ms);
        total += ms;
      }
    }
    const maxSeq = Math.max(...batches.map((b) => this.tokenizer.encodeBatch(b).seq));
    return {
      texts: texts.length,
      batchSize,
      batches: times.length,
      msPerBatch: median(times),
      textsPerSecond: (texts.length * Math.max(1, repeats)) / (total / 1000),
      maxSeq,
      batchTimes: times,
    };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** token_type_ids is all zeros for one text, so a BERT-style export that kept it can still be fed; embed_mask is the
 * text pipeline's pooled positions (exports since the text pipeline). */
const FEEDABLE = new Set(['input_ids', 'attention_mask', 'token_type_ids', 'embed_mask']);

export function cosine(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`vectors of different sizes: ${a.length} and ${b.length}`);
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  // A zero vector (all-padding text) is similar to nothing rather than NaN.
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

export function similarityMatrix(vectors: readonly Float32Array[]): number[][] {
  return vectors.map((a, i) => vectors.map((b, j) => (i === j ? 1 : cosine(a, b))));
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
