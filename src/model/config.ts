import { readFile, stat } from 'node:fs/promises';
import { ModelReadError } from './errors';
import { asObject, fileOpenError } from './safetensors';
import { MAX_LAYERS } from './stack';

/** A config.json is a few KB; anything this large is not one. */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

export interface ModelConfig {
  /** Family used for tensor naming: the config's model_type (or one derived from `architectures`). */
  family: string;
  numLayers: number;
  hiddenSize: number;
  numHeads?: number;
  numKeyValueHeads?: number;
  intermediateSize?: number;
  vocabSize?: number;
  tieWordEmbeddings: boolean;
  architectures: string[];
}

const ALIASES = {
  numLayers: ['num_hidden_layers', 'n_layer', 'num_layers', 'n_layers'],
  hiddenSize: ['hidden_size', 'n_embd', 'd_model', 'dim'],
  numHeads: ['num_attention_heads', 'n_head', 'num_heads'],
  numKeyValueHeads: ['num_key_value_heads', 'n_head_kv', 'num_kv_heads'],
  intermediateSize: ['intermediate_size', 'n_inner', 'ffn_dim'],
  vocabSize: ['vocab_size', 'n_vocab', 'padded_vocab_size'],
} as const;

export async function readModelConfig(file: string): Promise<ModelConfig> {
  let text: string;
  try {
    const info = await stat(file);
    if (!info.isFile()) {
      // A folder, FIFO or device named config.json: reading it would fail or block forever.
      throw new ModelReadError(file, info.isDirectory() ? 'is a folder, not a file' : 'is not a regular file', 'point at the model folder holding a normal config.json');
    }
    if (info.size > MAX_CONFIG_BYTES) {
      throw new ModelReadError(file, `is ${info.size} bytes, too large for a model config`, 'point at the model folder holding a normal config.json');
    }
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (e instanceof ModelReadError) throw e;
    throw fileOpenError(file, e);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ModelReadError(file, `is not valid JSON (${(e as Error).message})`, 'fix or re-save the config with save_pretrained');
  }
  return parseModelConfig(parsed, file);
}

export function parseModelConfig(parsed: unknown, file: string): ModelConfig {
  const root = asObject(parsed);
  if (!root) {
    throw new ModelReadError(file, 'is not a JSON object', 'fix or re-save the config with save_pretrained');
  }
  // Multimodal checkpoints keep the language model's shape under text_config.
  const textConfig = asObject(root.text_config);
  const source = pick(root, ALIASES.numLayers) === undefined && textConfig ? { ...root, ...textConfig } : root;

  const numLayers = pick(source, ALIASES.numLayers);
  const hiddenSize = pick(source, ALIASES.hiddenSize);
  const missing: string[] = [];
  if (numLayers === undefined) missing.push('num_hidden_layers');
  if (hiddenSize === undefined) missing.push('hidden_size');
  if (missing.length) {
    throw new ModelReadError(
      file,
      `has no valid ${missing.join(' or ')} (a positive integer)`,
      'add the field or re-save the config with transformers save_pretrained',
    );
  }
  if (numLayers! > MAX_LAYERS) {
    // The stack lists every layer; a hostile count must not become that many entries.
    throw new ModelReadError(file, `declares ${numLayers} layers, more than the ${MAX_LAYERS} any real model has`, 'fix num_hidden_layers or re-save the config with save_pretrained');
  }
  const architectures = Array.isArray(root.architectures)
    ? root.architectures.filter((a): a is string => typeof a === 'string')
    : [];
  const modelType = typeof source.model_type === 'string' ? source.model_type : undefined;
  return {
    family: (modelType ?? familyFromArchitecture(architectures[0]) ?? 'unknown').toLowerCase(),
    numLayers: numLayers!,
    hiddenSize: hiddenSize!,
    numHeads: pick(source, ALIASES.numHeads),
    numKeyValueHeads: pick(source, ALIASES.numKeyValueHeads),
    intermediateSize: pick(source, ALIASES.intermediateSize),
    vocabSize: pick(source, ALIASES.vocabSize),
    // transformers' own default is to tie, so absent means tied.
    tieWordEmbeddings: root.tie_word_embeddings !== false && source.tie_word_embeddings !== false,
    architectures,
  };
}

function pick(object: Record<string, unknown>, names: readonly string[]): number | undefined {
  for (const name of names) {
    const value = object[name];
    if (Number.isSafeInteger(value) && (value as number) > 0) return value as number;
  }
  return undefined;
}

function familyFromArchitecture(architecture: string | undefined): string | undefined {
  const match = architecture?.match(/^(.*?)(?:ForCausalLM|LMHeadModel|Model|ForMaskedLM)$/);
  return match?.[1] || undefined;
}
