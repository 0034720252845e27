/**
 * Model folders for the end-to-end tests.
 *
 * The real SmolLM2-135M folder (.demo/models/smollm2-135m, prepared outside the tests, git-ignored) is
 * used when it is there; otherwise the test writes a tiny synthetic Hugging Face folder: a llama
 * config.json plus a model.safetensors with a valid header and zero-filled data. Both are read from file
 * headers only by the extension, so the synthetic one exercises the same code paths.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FrameLocator } from 'playwright-core';
import { hostileMessages } from '../fixtures/hostileMessages';
import { log, REPO_ROOT, type CodeServerHarness } from './harness';

export interface ModelFixture {
  /** Absolute path of the model folder. */
  dir: string;
  /** Folder name: the model's label in the Models tree. */
  name: string;
  /** num_hidden_layers from config.json: the ground truth for the layer count shown. */
  numLayers: number;
  /** Whether lm_head.weight is tied to the embedding (then the tree has no "Head" item). */
  tied: boolean;
  synthetic: boolean;
}

export const DEMO_MODEL_DIR = path.join(REPO_ROOT, '.demo', 'models', 'smollm2-135m');

/**
 * The model to test with: $E2E_MODEL (an HF folder) if set, else the demo model when complete, else a
 * synthetic model written under `scratchDir`. E2E_SYNTHETIC=1 forces the synthetic one.
 */
export function modelFixture(scratchDir: string): ModelFixture {
  if (!process.env.E2E_SYNTHETIC) {
    if (process.env.E2E_MODEL) return describeHfFolder(process.env.E2E_MODEL, false);
    // The preparer of .demo/ writes `.complete` last: without it the folder may still be filling up.
    if (isHfFolder(DEMO_MODEL_DIR) && fs.existsSync(path.join(DEMO_MODEL_DIR, '.complete'))) {
      return describeHfFolder(DEMO_MODEL_DIR, false);
    }
  }
  return writeSyntheticLlama(path.join(scratchDir, 'tiny-llama'), 4);
}

function isHfFolder(dir: string): boolean {
  try {
    const files = fs.readdirSync(dir);
    return files.includes('config.json') && files.some((f) => f.endsWith('.safetensors'));
  } catch {
    return false;
  }
}

function describeHfFolder(dir: string, synthetic: boolean): ModelFixture {
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as {
    num_hidden_layers: number; tie_word_embeddings?: boolean;
  };
  return {
    dir: path.resolve(dir),
    name: path.basename(dir),
    numLayers: config.num_hidden_layers,
    // transformers' default for llama is tied = false
    tied: config.tie_word_embeddings ?? false,
    synthetic,
  };
}

/**
 * Writes a llama-shaped HF folder with `numLayers` decoder layers and untied embeddings (so the tree
 * shows a "Head" item too). Tensor data is zeros: only the header matters to the inspector.
 */
export function writeSyntheticLlama(dir: string, numLayers: number): ModelFixture {
  const hidden = 64;
  const intermediate = 128;
  const vocab = 256;
  const heads = 4;
  const kvHeads = 2;
  const headDim = hidden / heads;
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: hidden,
    intermediate_size: intermediate,
    num_hidden_layers: numLayers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    vocab_size: vocab,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
  }, null, 2));

  const shapes: Array<[string, number[]]> = [['model.embed_tokens.weight', [vocab, hidden]]];
  for (let i = 0; i < numLayers; i++) {
    const p = `model.layers.${i}`;
    shapes.push(
      [`${p}.input_layernorm.weight`, [hidden]],
      [`${p}.self_attn.q_proj.weight`, [heads * headDim, hidden]],
      [`${p}.self_attn.k_proj.weight`, [kvHeads * headDim, hidden]],
      [`${p}.self_attn.v_proj.weight`, [kvHeads * headDim, hidden]],
      [`${p}.self_attn.o_proj.weight`, [hidden, heads * headDim]],
      [`${p}.post_attention_layernorm.weight`, [hidden]],
      [`${p}.mlp.gate_proj.weight`, [intermediate, hidden]],
      [`${p}.mlp.up_proj.weight`, [intermediate, hidden]],
      [`${p}.mlp.down_proj.weight`, [hidden, intermediate]],
    );
  }
  shapes.push(['model.norm.weight', [hidden]], ['lm_head.weight', [vocab, hidden]]);
  fs.writeFileSync(path.join(dir, 'model.safetensors'), safetensorsBytes(shapes));
  return describeHfFolder(dir, true);
}

/** safetensors layout: u64 LE header length, JSON header (padded to 8 bytes), then the data. F32 here. */
function safetensorsBytes(shapes: Array<[string, number[]]>): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape] of shapes) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  return Buffer.concat([prefix, headerBytes, Buffer.alloc(offset)]);
}

/**
 * Parameter count of decoder layer `index`, read straight from the safetensors headers (independent of
 * the extension's own parser), to check what the plan removes per layer.
 */
export function layerParamsFromHeaders(dir: string, index: number): number {
  const prefix = `model.layers.${index}.`;
  let total = 0;
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors'))) {
    const fd = fs.openSync(path.join(dir, file), 'r');
    try {
      const len = Buffer.alloc(8);
      fs.readSync(fd, len, 0, 8, 0);
      const header = Buffer.alloc(Number(len.readBigUInt64LE()));
      fs.readSync(fd, header, 0, header.length, 8);
      const tensors = JSON.parse(header.toString('utf8')) as Record<string, { shape?: number[] }>;
      for (const [name, info] of Object.entries(tensors)) {
        if (name.startsWith(prefix) && info.shape) total += info.shape.reduce((a, b) => a * b, 1);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return total;
}

/**
 * Posts `count` hostile messages from a live panel's page and checks the host ignored every one (each logged
 * as invalid, in the extension's log) and acted on none (no file appears under `watched`, e.g. the runs folder).
 */
export async function assertPanelIgnoresHostileMessages(
  h: CodeServerHarness,
  frame: FrameLocator,
  validTypes: readonly string[],
  options: { seed: number; count?: number; watched: string[] },
): Promise<void> {
  const count = options.count ?? 110;
  const ignored = () => h.extensionLog().filter((line) => line.includes('ignored an invalid webview message')).length;
  const listing = () => options.watched.flatMap((dir) => (fs.existsSync(dir) ? fs.readdirSync(dir, { recursive: true }).map(String).sort() : []));
  const before = { ignored: ignored(), files: listing() };
  const messages = hostileMessages(validTypes, count, options.seed);
  await h.postFromWebview(frame, messages);
  const deadline = Date.now() + 30_000;
  let seen = ignored() - before.ignored;
  while (seen < count && Date.now() < deadline) {
    await h.page.waitForTimeout(250); // poll: the log file is written asynchronously
    seen = ignored() - before.ignored;
  }
  log(`hostile messages (seed ${options.seed}): ${count} posted, ${seen} ignored by the host`);
  assert.equal(seen, count, 'every hostile message is logged as invalid, none acted on');
  assert.deepEqual(listing(), before.files, 'no hostile message created a file or run');
}
