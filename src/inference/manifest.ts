import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';

/**
 * l3prune-encoder.json, written by the worker's `export-onnx` verb next to model.onnx: everything needed to
 * feed the graph the same ids and masks the worker fed torch. Checked field by field, because a folder picked
 * by hand may hold anything, and a wrong pad side or length would give plausible but wrong embeddings.
 */
export const MANIFEST_FILE = 'l3prune-encoder.json';
export const MODEL_FILE = 'model.onnx';
export const TOKENIZER_FILE = 'tokenizer.json';

export interface EncoderManifest {
  format: 1;
  /** The graph's file name inside the folder (model.onnx). */
  model: string;
  /** One weights file next to the graph when the model is over protobuf's 2 GiB, else null. */
  externalData?: string | null;
  pooling: string;
  normalize: boolean;
  maxLength: number;
  hiddenSize: number;
  numLayers: number;
  originalNumLayers: number;
  inputs: string[];
  output: string;
  paddingSide: 'left' | 'right';
  truncationSide?: 'left' | 'right';
  padTokenId: number;
  addSpecialTokens: boolean;
  /** The ids the worker's tokenizer puts before and after a text's own tokens, as it measured them. */
  prependTokenIds?: number[];
  appendTokenIds?: number[];
  sourceModel: string;
  /** The folder export-onnx loaded (a train run's merged model, or sourceModel) and the adapter it merged, if any. */
  loadedFrom?: string;
  adapter?: string | null;
  /** The worker's own ONNX-vs-torch check at export time. */
  parity?: { minCosine?: number; meanCosine?: number; sentences?: number; threshold?: number; examplesFile?: string };
}

export class EncoderFolderError extends Error {
  override name = 'EncoderFolderError';
}

const REEXPORT = 'export the encoder again with “python -m l3prune export-onnx”';

/** Only a folder on this machine: no URLs, no single files (the tokenizer and manifest must come along). */
export async function checkEncoderFolder(folder: string): Promise<string> {
  if (/^[a-z][a-z0-9+.-]+:\/\//i.test(folder)) {
    throw new EncoderFolderError(`${folder} is not a local folder; pick an exported encoder folder on this machine (one with ${MANIFEST_FILE} and ${MODEL_FILE}).`);
  }
  const resolved = path.resolve(folder);
  const info = await stat(resolved).catch(() => undefined);
  if (!info) throw new EncoderFolderError(`${resolved} does not exist; pick an exported encoder folder (one with ${MANIFEST_FILE} and ${MODEL_FILE}).`);
  if (!info.isDirectory()) {
    throw new EncoderFolderError(`${resolved} is a file, not a folder; pick the folder that holds ${MANIFEST_FILE}, ${MODEL_FILE} and ${TOKENIZER_FILE}.`);
  }
  const manifest = await stat(path.join(resolved, MANIFEST_FILE)).catch(() => undefined);
  if (!manifest?.isFile()) {
    throw new EncoderFolderError(`${path.join(resolved, MANIFEST_FILE)} is missing: ${resolved} is not an exported L³Prune encoder; ${REEXPORT}.`);
  }
  return resolved;
}

/** The files the manifest names, all present: a half-copied export fails here, not inside ONNX Runtime. */
export async function checkEncoderFiles(folder: string, manifest: EncoderManifest): Promise<void> {
  for (const name of [manifest.model, manifest.externalData, TOKENIZER_FILE]) {
    if (!name) continue;
    const file = path.join(folder, name);
    const found = await stat(file).catch(() => undefined);
    if (!found?.isFile()) throw new EncoderFolderError(`${file} is missing: ${folder} is not a complete exported encoder; ${REEXPORT}.`);
  }
}

export async function readManifest(folder: string): Promise<EncoderManifest> {
  const file = path.join(folder, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new EncoderFolderError(`${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); ${REEXPORT}.`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new EncoderFolderError(`${file} is not valid JSON (${(e as Error).message}); ${REEXPORT}.`);
  }
  return parseManifest(raw, file);
}

/** Every problem at once, so one re-export fixes them all. */
export function parseManifest(raw: unknown, file: string): EncoderManifest {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new EncoderFolderError(`${file} must hold a JSON object; ${REEXPORT}.`);
  }
  const m = raw as Record<string, unknown>;
  if (m.format !== 1) {
    const seen = m.format === undefined ? 'has no "format"' : `has "format": ${JSON.stringify(m.format)}`;
    throw new EncoderFolderError(`${file} ${seen}; this version of the extension reads format 1 only, so update the extension or ${REEXPORT}.`);
  }
  const problems: string[] = [];
  const positive = (key: string) => {
    if (!Number.isSafeInteger(m[key]) || (m[key] as number) < 1) problems.push(`"${key}" must be a whole number ≥ 1 (found ${show(m[key])})`);
  };
  const flag = (key: string) => {
    if (typeof m[key] !== 'boolean') problems.push(`"${key}" must be true or false (found ${show(m[key])})`);
  };
  const text = (key: string) => {
    if (typeof m[key] !== 'string' || !(m[key] as string).trim()) problems.push(`"${key}" must be a non-empty string (found ${show(m[key])})`);
  };
  // Names inside the folder only: a manifest must not point the runtime at files elsewhere.
  const fileName = (key: string, optional: boolean) => {
    if (optional && (m[key] === undefined || m[key] === null)) return;
    const v = m[key];
    if (typeof v !== 'string' || !v || v === '.' || v === '..' || /[/\\]/.test(v)) problems.push(`"${key}" must be a file name inside the folder (found ${show(v)})`);
  };
  const ids = (key: string) => {
    if (m[key] === undefined) return;
    if (!Array.isArray(m[key]) || !(m[key] as unknown[]).every((id) => Number.isSafeInteger(id) && (id as number) >= 0)) {
      problems.push(`"${key}" must be a list of token ids (found ${show(m[key])})`);
    }
  };
  const side = (key: string, optional: boolean) => {
    if (optional && m[key] === undefined) return;
    if (m[key] !== 'left' && m[key] !== 'right') problems.push(`"${key}" must be "left" or "right" (found ${show(m[key])})`);
  };
  if (m.model === undefined) m.model = MODEL_FILE;
  fileName('model', false);
  fileName('externalData', true);
  text('pooling');
  flag('normalize');
  positive('maxLength');
  positive('hiddenSize');
  positive('numLayers');
  positive('originalNumLayers');
  if (!Array.isArray(m.inputs) || !m.inputs.length || !m.inputs.every((i) => typeof i === 'string' && i)) {
    problems.push(`"inputs" must be a list of input names (found ${show(m.inputs)})`);
  } else {
    for (const needed of ['input_ids', 'attention_mask']) {
      if (!m.inputs.includes(needed)) problems.push(`"inputs" must name "${needed}" (found ${show(m.inputs)})`);
    }
  }
  text('output');
  side('paddingSide', false);
  side('truncationSide', true);
  if (!Number.isSafeInteger(m.padTokenId) || (m.padTokenId as number) < 0) problems.push(`"padTokenId" must be a token id ≥ 0 (found ${show(m.padTokenId)})`);
  flag('addSpecialTokens');
  ids('prependTokenIds');
  ids('appendTokenIds');
  text('sourceModel');
  if (Number.isSafeInteger(m.numLayers) && Number.isSafeInteger(m.originalNumLayers) && (m.numLayers as number) > (m.originalNumLayers as number)) {
    problems.push(`"numLayers" (${m.numLayers}) cannot exceed "originalNumLayers" (${m.originalNumLayers})`);
  }
  if (problems.length) throw new EncoderFolderError(`${file} is not a valid encoder description: ${problems.join('; ')}. ${capitalise(REEXPORT)}.`);
  return m as unknown as EncoderManifest;
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const json = JSON.stringify(value);
  return json.length > 60 ? `${json.slice(0, 57)}…` : json;
}

function capitalise(s: string): string {
  return s[0].toUpperCase() + s.slice(1);
}
