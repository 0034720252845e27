import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { readCheckpointTensors, INDEX_FILE } from './checkpoint';
import { readModelConfig } from './config';
import { ModelReadError } from './errors';
import { cachedRepoOf } from './hfCache';
import { inspectOnnx } from './onnx';
import { fileOpenError, readSafetensorsHeader } from './safetensors';
import type { LayerStack } from '../shared/model/stack';
import { buildLayerStack } from './stack';

/**
 * The one entry point for reading a layer stack, used by the extension and the CLI alike: a Hugging Face
 * folder (or a file inside one), an ONNX file, or a lone safetensors file.
 */
export async function inspectModel(target: string): Promise<LayerStack> {
  const resolved = path.resolve(target);
  let info;
  try {
    info = await stat(resolved);
  } catch (e) {
    throw fileOpenError(resolved, e);
  }
  if (info.isDirectory()) return inspectHuggingFaceFolder(resolved);
  const base = path.basename(resolved);
  if (base.endsWith('.onnx')) return inspectOnnx(resolved);
  if (base === 'config.json' || base === INDEX_FILE) return inspectHuggingFaceFolder(path.dirname(resolved));
  if (base.endsWith('.safetensors')) return inspectLoneSafetensors(resolved);
  throw new ModelReadError(resolved, 'is neither a model folder, an .onnx file nor a .safetensors file', 'open a Hugging Face model folder or an ONNX file');
}

async function inspectHuggingFaceFolder(folder: string): Promise<LayerStack> {
  // Config and shard headers are independent reads; overlapping them halves the wall time on 8B checkpoints.
  const configRead = readModelConfig(path.join(folder, 'config.json')).catch((e: unknown) => {
    if (e instanceof ModelReadError && e.problem === 'does not exist') {
      throw new ModelReadError(folder, 'has no config.json', 'open a Hugging Face model folder saved with save_pretrained');
    }
    throw e;
  });
  const checkpointRead = readCheckpointTensors(folder);
  // Both settle before either error is raised, so a rejected read is never left unobserved.
  const [configResult, checkpointResult] = await Promise.allSettled([configRead, checkpointRead]);
  if (configResult.status === 'rejected') throw configResult.reason;
  if (checkpointResult.status === 'rejected') throw checkpointResult.reason;
  const config = configResult.value;
  const { files, tensors } = checkpointResult.value;
  return buildLayerStack(
    {
      source: 'safetensors',
      path: folder,
      // A cache snapshot's folder is a commit hash; its repo id is the name people know it by.
      name: cachedRepoOf(folder)?.repoId ?? path.basename(folder),
      family: config.family,
      numLayers: config.numLayers,
      hiddenSize: config.hiddenSize,
      numHeads: config.numHeads,
      numKeyValueHeads: config.numKeyValueHeads,
      vocabSize: config.vocabSize,
      tieWordEmbeddings: config.tieWordEmbeddings,
      files,
    },
    tensors,
  );
}

async function inspectLoneSafetensors(file: string): Promise<LayerStack> {
  const header = await readSafetensorsHeader(file);
  return buildLayerStack(
    { source: 'safetensors', path: file, name: path.basename(file), family: 'unknown', files: [file] },
    header.tensors,
  );
}
