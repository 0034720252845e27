import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { readModelConfig, type ModelConfig } from './config';
import { ONNX_DTYPE_BYTES, ONNX_DTYPE_NAMES } from './dtypes';
import { ModelReadError } from './errors';
import { fileOpenError } from './safetensors';
import type { IoInfo, LayerStack, TensorSummary } from '../shared/model/stack';
import { buildLayerStack } from './stack';

/** Protobuf cannot address more than 2 GiB; larger graphs keep their weights as external data. */
const MAX_ONNX_BYTES = 2 ** 31 - 1;

/**
 * Reads an ONNX graph's inputs, outputs and initializer shapes with the onnx-proto decoder. Weights stored
 * as external data are counted from their shapes without being read. A config.json beside the file (as
 * Optimum exports leave it) gives the family and layer count; without one they come from tensor names.
 */
export async function inspectOnnx(file: string): Promise<LayerStack> {
  let bytes: Buffer;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new ModelReadError(file, 'is not a file', 'pick the .onnx file itself');
    if (info.size > MAX_ONNX_BYTES) {
      throw new ModelReadError(file, `is ${info.size} bytes, beyond protobuf's 2 GiB limit`, 'export the model with external data (save_as_external_data=True)');
    }
    bytes = await readFile(file);
  } catch (e) {
    if (e instanceof ModelReadError) throw e;
    throw fileOpenError(file, e);
  }
  let model: onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new ModelReadError(file, `is not a valid ONNX model (${(e as Error).message})`, 'export it again or pick another .onnx file');
  }
  const graph = model.graph;
  if (!graph || (!graph.node?.length && !graph.initializer?.length)) {
    throw new ModelReadError(file, 'holds no ONNX graph', 'export it again or pick another .onnx file');
  }
  const tensors: TensorSummary[] = (graph.initializer ?? []).map((t, i) => initializerSummary(t, i, file));
  const initializerNames = new Set(tensors.map((t) => t.name));
  const config = await siblingConfig(file);
  return buildLayerStack(
    {
      source: 'onnx',
      path: file,
      name: path.basename(file),
      family: config?.family ?? 'onnx',
      numLayers: config?.numLayers,
      hiddenSize: config?.hiddenSize,
      numHeads: config?.numHeads,
      numKeyValueHeads: config?.numKeyValueHeads,
      vocabSize: config?.vocabSize,
      tieWordEmbeddings: config?.tieWordEmbeddings,
      files: [file],
      io: {
        inputs: (graph.input ?? []).filter((v) => !initializerNames.has(v.name ?? '')).map(ioInfo),
        outputs: (graph.output ?? []).map(ioInfo),
      },
    },
    tensors,
  );
}

function initializerSummary(tensor: onnx.ITensorProto, position: number, file: string): TensorSummary {
  const name = tensor.name || `initializer_${position}`;
  const shape = (tensor.dims ?? []).map((d) => Number(d));
  let params = 1;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      throw new ModelReadError(file, `gives initializer "${name.slice(0, 120)}" the invalid dimension ${dim}`, 'export the model again');
    }
    params *= dim;
    if (!Number.isSafeInteger(params)) {
      throw new ModelReadError(file, `gives initializer "${name.slice(0, 120)}" a shape whose size overflows`, 'export the model again');
    }
  }
  const dataType = tensor.dataType ?? 0;
  const bytesPerElement = ONNX_DTYPE_BYTES[dataType] ?? 0;
  return {
    name,
    dtype: ONNX_DTYPE_NAMES[dataType] ?? `type${dataType}`,
    shape,
    params,
    bytes: bytesPerElement ? params * bytesPerElement : (tensor.rawData?.length ?? 0),
  };
}

function ioInfo(value: onnx.IValueInfoProto): IoInfo {
  const tensorType = value.type?.tensorType;
  return {
    name: value.name ?? '',
    dtype: ONNX_DTYPE_NAMES[tensorType?.elemType ?? 0] ?? 'unknown',
    shape: (tensorType?.shape?.dim ?? []).map((d) => (d.dimParam ? d.dimParam : d.dimValue != null ? Number(d.dimValue) : '?')),
  };
}

async function siblingConfig(file: string): Promise<ModelConfig | undefined> {
  try {
    return await readModelConfig(path.join(path.dirname(file), 'config.json'));
  } catch {
    // A config beside an ONNX file is a bonus; names alone still give the stack.
    return undefined;
  }
}
