import { readdir, readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { ModelReadError } from './errors';
import { asObject, clip, fileOpenError, readSafetensorsHeader, type TensorInfo } from './safetensors';

export const INDEX_FILE = 'model.safetensors.index.json';
const MAX_INDEX_BYTES = 64 * 1024 * 1024;

export interface CheckpointTensors {
  files: string[];
  tensors: TensorInfo[];
}

/**
 * Finds a folder's safetensors weights (sharded through the index file, or single) and reads their
 * headers. Shard names come from a file the user may have downloaded from anywhere, so a name that is
 * not a plain file name inside the folder is refused rather than followed.
 */
export async function readCheckpointTensors(folder: string): Promise<CheckpointTensors> {
  const entries = await listFolder(folder);
  if (entries.includes(INDEX_FILE)) {
    return readSharded(folder, path.join(folder, INDEX_FILE));
  }
  if (entries.includes('model.safetensors')) {
    return readShards([path.join(folder, 'model.safetensors')]);
  }
  const safetensors = entries.filter((e) => e.endsWith('.safetensors') && !e.startsWith('adapter_')).sort();
  if (safetensors.length) {
    return readShards(safetensors.map((e) => path.join(folder, e)));
  }
  const pickles = entries.filter((e) => /\.(bin|pt|pth|ckpt)$/.test(e));
  if (pickles.length) {
    throw new ModelReadError(
      folder,
      `holds only PyTorch pickle weights (${pickles.slice(0, 3).join(', ')}), which L³Prune does not read because unpickling can run code`,
      'convert them once with transformers (from_pretrained then save_pretrained(..., safe_serialization=True))',
    );
  }
  throw new ModelReadError(folder, 'has no safetensors weights (no model.safetensors or model.safetensors.index.json)', 'pick a Hugging Face model folder saved with save_pretrained');
}

async function listFolder(folder: string): Promise<string[]> {
  try {
    return await readdir(folder);
  } catch (e) {
    throw fileOpenError(folder, e);
  }
}

async function readSharded(folder: string, indexFile: string): Promise<CheckpointTensors> {
  const weightMap = await readWeightMap(indexFile);
  const shardNames = [...new Set(Object.values(weightMap))].sort();
  const checkpoint = await readShards(shardNames.map((name) => path.join(folder, name)), indexFile);
  const located = new Map(checkpoint.tensors.map((t) => [t.name, path.basename(t.file)]));
  for (const [tensor, shard] of Object.entries(weightMap)) {
    const actual = located.get(tensor);
    if (actual !== shard) {
      throw new ModelReadError(
        indexFile,
        `says tensor "${clip(tensor)}" is in ${shard} but ${actual ? `it is in ${actual}` : 'no shard holds it'}`,
        'the index and the shards come from different saves: download the checkpoint again',
      );
    }
  }
  return checkpoint;
}

async function readWeightMap(indexFile: string): Promise<Record<string, string>> {
  let text: string;
  try {
    const info = await stat(indexFile);
    if (!info.isFile()) {
      // A folder, FIFO or device under the index's name: reading it would fail or block forever.
      throw new ModelReadError(indexFile, info.isDirectory() ? 'is a folder, not a file' : 'is not a regular file', 'replace it with the checkpoint\'s real index file');
    }
    if (info.size > MAX_INDEX_BYTES) {
      throw new ModelReadError(indexFile, `is ${info.size} bytes, too large for a shard index`, 'check that it is the checkpoint\'s real index file');
    }
    text = await readFile(indexFile, 'utf8');
  } catch (e) {
    if (e instanceof ModelReadError) throw e;
    throw fileOpenError(indexFile, e);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ModelReadError(indexFile, `is not valid JSON (${(e as Error).message})`, 'download the checkpoint again');
  }
  const weightMap = asObject(asObject(parsed)?.weight_map);
  if (!weightMap) {
    throw new ModelReadError(indexFile, 'has no weight_map object', 'download the checkpoint again');
  }
  for (const [tensor, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || !isPlainShardName(shard)) {
      throw new ModelReadError(
        indexFile,
        `maps tensor "${clip(tensor)}" to ${clip(JSON.stringify(shard) ?? 'undefined')}, which is not a .safetensors file name inside the model folder`,
        'shards must sit beside the index; fix the index or download the checkpoint again',
      );
    }
  }
  return weightMap as Record<string, string>;
}

/** A shard name must be a bare file name: no folders, no "..", no absolute paths, no NUL. */
export function isPlainShardName(name: string): boolean {
  return (
    name.length > 0 &&
    name.length <= 255 &&
    name.endsWith('.safetensors') &&
    !/[\\/\0]/.test(name) &&
    name !== '.' &&
    name !== '..' &&
    !path.isAbsolute(name) &&
    path.basename(name) === name
  );
}

async function readShards(files: string[], indexFile?: string): Promise<CheckpointTensors> {
  const headers = await Promise.all(
    files.map(async (file) => {
      try {
        return await readSafetensorsHeader(file);
      } catch (e) {
        if (indexFile && e instanceof ModelReadError && e.problem === 'does not exist') {
          throw new ModelReadError(
            file,
            `is listed in ${path.basename(indexFile)} but missing`,
            'the download is incomplete: fetch the missing shard',
          );
        }
        throw e;
      }
    }),
  );
  const seen = new Map<string, string>();
  const tensors: TensorInfo[] = [];
  for (const header of headers) {
    for (const tensor of header.tensors) {
      const first = seen.get(tensor.name);
      if (first) {
        throw new ModelReadError(header.file, `repeats tensor "${clip(tensor.name)}" already in ${path.basename(first)}`, 'download the checkpoint again');
      }
      seen.set(tensor.name, header.file);
      tensors.push(tensor);
    }
  }
  return { files, tensors };
}
