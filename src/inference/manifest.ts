import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import manifestSchema from '../../protocol/encoder-manifest.schema.json';
import { schemaCheck, type JsonSchema } from '../protocol/schemas';
import type { EncoderManifest as GeneratedManifest } from '../shared/protocol/generated/encoder-manifest';

/**
 * l3prune-encoder.json, written by the worker's `export-onnx` verb next to model.onnx: everything needed to
 * feed the graph the same ids and masks the worker fed torch. protocol/encoder-manifest.schema.json defines
 * it (the type is generated from it) and every manifest is checked against it, because a folder picked by
 * hand may hold anything, and a wrong pad side or length would give plausible but wrong embeddings.
 */
export const MANIFEST_FILE = 'l3prune-encoder.json';
export const MODEL_FILE = 'model.onnx';
export const TOKENIZER_FILE = 'tokenizer.json';

/** As read: the schema's defaults filled in, so the graph's file name is always there. */
export type EncoderManifest = GeneratedManifest & Required<Pick<GeneratedManifest, 'model'>>;

const MANIFEST_CHECK = schemaCheck(manifestSchema as JsonSchema, {
  useDefaults: true,
  // Words for fields whose JSON type alone would not tell the user what belongs there.
  nouns: { fileName: 'a file name inside the folder', tokenIds: 'a list of token ids', padTokenId: 'a token id', inputs: 'a list of input names' },
});

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
  // The format comes first: a newer format is not a broken file, and needs a different fix.
  if (m.format !== 1) {
    const seen = m.format === undefined ? 'has no "format"' : `has "format": ${JSON.stringify(m.format)}`;
    throw new EncoderFolderError(`${file} ${seen}; this version of the extension reads format 1 only, so update the extension or ${REEXPORT}.`);
  }
  const problems = MANIFEST_CHECK.problems(m).map((p) => p.text);
  // JSON Schema cannot compare two fields; the schema's description asks readers to.
  if (Number.isSafeInteger(m.numLayers) && Number.isSafeInteger(m.originalNumLayers) && (m.numLayers as number) > (m.originalNumLayers as number)) {
    problems.push(`"numLayers" (${m.numLayers}) cannot exceed "originalNumLayers" (${m.originalNumLayers})`);
  }
  if (problems.length) throw new EncoderFolderError(`${file} is not a valid encoder description: ${problems.join('; ')}. ${capitalise(REEXPORT)}.`);
  return m as unknown as EncoderManifest;
}

function capitalise(s: string): string {
  return s[0].toUpperCase() + s.slice(1);
}
