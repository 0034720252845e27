import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { Tokenizer } from '@huggingface/tokenizers';

/**
 * Tokenisation as the worker's text pipeline does it (worker/l3prune/textpipe.py), from the exported folder's own
 * tokenizer.json. The string is chatPrefix + "{instruction}; " (queries only) + text + chatSuffix, tokenised with
 * special tokens, truncated at maxLength and left-padded; the embed mask marks the pooled positions: the row's last
 * k real positions, k = the token count of the text alone without special tokens (truncated at maxLength), clamped
 * to 1..the row's length (the paper's rule: instruction, BOS and chat prefix are attended to but not pooled).
 * The library runs the normaliser, pre-tokeniser and model; truncation and padding are ours, because the ONNX
 * encoder must see exactly the ids and masks the worker fed torch, and those are set by l3prune-encoder.json, not
 * by whatever truncation/padding block tokenizer.json happens to carry (MiniLM's pads to a fixed 128).
 */
export interface TokenizerSettings {
  maxLength: number;
  paddingSide: 'left' | 'right';
  padTokenId: number;
  addSpecialTokens: boolean;
  /** Hugging Face's default is to cut the end of a long text. */
  truncationSide?: 'left' | 'right';
  /**
   * The special-token ids around each text as the worker measured them at export time; when absent they are
   * read off the tokenizer's own post-processor.
   */
  prependTokenIds?: number[];
  appendTokenIds?: number[];
  /** The manifest's textPipeline: a query's instruction prefix ({instruction} replaced); default "{instruction}; ". */
  instructionFormat?: string;
  /** The user turn of the model's chat template around the whole string; null or absent: no wrapper. */
  chatPrefix?: string | null;
  chatSuffix?: string | null;
}

/** A document (a bare string) or a text with the instruction that goes before it (a query). */
export type EncoderInput = string | { text: string; instruction?: string | null };

export const DEFAULT_INSTRUCTION_FORMAT = '{instruction}; ';

export interface TokenBatch {
  /** Row-major [batch, seq], as the ONNX inputs want them. */
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  /** 1 on the pooled positions (the text pipeline's embed mask), the graph's embed_mask input. */
  embedMask: BigInt64Array;
  batch: number;
  seq: number;
  /** Real (unpadded) length of each text, for reports and tests. */
  lengths: number[];
}

export class EncoderTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    readonly settings: TokenizerSettings,
    /** Special-token ids the post-processor puts around one text (e.g. [CLS] … [SEP]); empty for SmolLM2. */
    private readonly prefix: number[],
    private readonly suffix: number[],
  ) {}

  static async fromFolder(folder: string, settings: TokenizerSettings): Promise<EncoderTokenizer> {
    const tokenizerFile = path.join(folder, 'tokenizer.json');
    const tokenizerJson = await readJson(tokenizerFile, true);
    // tokenizer_config.json only tunes a few legacy switches; an export without one still tokenises.
    const config = (await readJson(path.join(folder, 'tokenizer_config.json'), false)) ?? {};
    // Loaded on first use: the library is pure JS but not small, and activation should not pay for it.
    const { Tokenizer } = await import('@huggingface/tokenizers');
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(tokenizerJson as object, config as object);
    } catch (e) {
      throw new Error(`${tokenizerFile} is not a tokenizer this extension can read (${(e as Error).message}); re-export the encoder with a fast (tokenizers) tokenizer.`, { cause: e });
    }
    const { prefix, suffix } = !settings.addSpecialTokens
      ? { prefix: [], suffix: [] }
      : settings.prependTokenIds && settings.appendTokenIds
        ? { prefix: settings.prependTokenIds, suffix: settings.appendTokenIds }
        : specialFrame(tokenizer);
    if (prefix.length + suffix.length >= settings.maxLength) {
      throw new Error(`maxLength ${settings.maxLength} leaves no room for text after ${prefix.length + suffix.length} special tokens.`);
    }
    return new EncoderTokenizer(tokenizer, settings, prefix, suffix);
  }

  /** The string the model sees for this input: chat prefix + instruction prefix + text + chat suffix. */
  fullText(input: EncoderInput): string {
    const { text, instruction } = typeof input === 'string' ? { text: input, instruction: null } : input;
    const format = this.settings.instructionFormat ?? DEFAULT_INSTRUCTION_FORMAT;
    // split/join, not replace: a "$&" in the instruction must stay literal.
    const body = (instruction ? format.split('{instruction}').join(instruction) : '') + text;
    return this.settings.chatPrefix == null ? body : this.settings.chatPrefix + body + (this.settings.chatSuffix ?? '');
  }

  /** How many of the row's last real positions are pooled: the text alone, no special tokens, at most maxLength. */
  pooledCount(input: EncoderInput, rowLength: number): number {
    const text = typeof input === 'string' ? input : input.text;
    const k = Math.min(this.tokenizer.encode(text, { add_special_tokens: false }).ids.length, this.settings.maxLength);
    return Math.max(1, Math.min(k, rowLength));
  }

  /** One input's ids through the text pipeline, truncated like Hugging Face: the special tokens count against maxLength and are kept. */
  encode(input: EncoderInput): number[] {
    const ids = this.tokenizer.encode(this.fullText(input), { add_special_tokens: false }).ids;
    const budget = this.settings.maxLength - this.prefix.length - this.suffix.length;
    const kept = ids.length <= budget ? ids : this.settings.truncationSide === 'left' ? ids.slice(ids.length - budget) : ids.slice(0, budget);
    return [...this.prefix, ...kept, ...this.suffix];
  }

  /** Padded to the longest text of the batch (padding=True), on the side and with the id the export names. */
  encodeBatch(texts: readonly EncoderInput[]): TokenBatch {
    const rows = texts.map((t) => this.encode(t));
    const seq = Math.max(1, ...rows.map((r) => r.length));
    const inputIds = new BigInt64Array(rows.length * seq).fill(BigInt(this.settings.padTokenId));
    const attentionMask = new BigInt64Array(rows.length * seq);
    const embedMask = new BigInt64Array(rows.length * seq);
    rows.forEach((row, b) => {
      const start = b * seq + (this.settings.paddingSide === 'left' ? seq - row.length : 0);
      const k = this.pooledCount(texts[b], row.length);
      for (let i = 0; i < row.length; i++) {
        inputIds[start + i] = BigInt(row[i]);
        attentionMask[start + i] = 1n;
        if (i >= row.length - k) embedMask[start + i] = 1n;
      }
    });
    return { inputIds, attentionMask, embedMask, batch: rows.length, seq, lengths: rows.map((r) => r.length) };
  }
}

/**
 * Where the post-processor puts the text among its special tokens, found once by running it on a marker
 * token: this covers TemplateProcessing, BertProcessing, RobertaProcessing and sequences of them alike.
 */
function specialFrame(tokenizer: Tokenizer): { prefix: number[]; suffix: number[] } {
  const marker = '\u0000l3prune-text\u0000';
  const processed = tokenizer.post_processor?.post_process([marker], null, true) as { tokens?: string[] } | undefined;
  const tokens = processed?.tokens ?? [marker];
  const at = tokens.indexOf(marker);
  if (at < 0) throw new Error('the tokenizer’s post-processor drops the text; it cannot be used as an encoder tokenizer');
  const ids = (list: string[]) =>
    list.map((token) => {
      const id = tokenizer.token_to_id(token);
      if (id === undefined) throw new Error(`the tokenizer’s post-processor adds ${JSON.stringify(token)}, which is not in its vocabulary`);
      return id;
    });
  return { prefix: ids(tokens.slice(0, at)), suffix: ids(tokens.slice(at + 1)) };
}

async function readJson(file: string, required: true): Promise<unknown>;
async function readJson(file: string, required: false): Promise<unknown | undefined>;
async function readJson(file: string, required: boolean): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); the exported encoder folder needs it, so export it again.`, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message}); export the encoder again.`, { cause: e });
  }
}
