import type { LayerGroup, LayerStack, ParamGroup, TensorSummary } from '../shared/model/stack';
import { ModelReadError } from './errors';
import type { TensorInfo } from './safetensors';
import { groupTensor, namingFor } from './families';

export interface StackShape {
  source: LayerStack['source'];
  path: string;
  name: string;
  family: string;
  /** From config.json when there is one; otherwise the layers seen in tensor names. */
  numLayers?: number;
  hiddenSize?: number;
  numHeads?: number;
  numKeyValueHeads?: number;
  vocabSize?: number;
  tieWordEmbeddings?: boolean;
  files: string[];
  io?: LayerStack['io'];
}

const emptyGroup = (): ParamGroup => ({ params: 0, bytes: 0, tensors: [] });

/**
 * The deepest stack listed; the deepest real models have a few hundred layers. The stack lists every layer
 * up to the highest one named, so a hostile "layers.9007199254740990." or num_hidden_layers must be refused
 * rather than expanded into that many entries.
 */
export const MAX_LAYERS = 10_000;

function add(group: ParamGroup, tensor: TensorSummary): void {
  group.params += tensor.params;
  group.bytes += tensor.bytes;
  group.tensors.push(tensor);
}

export function buildLayerStack(shape: StackShape, tensors: ReadonlyArray<TensorInfo | TensorSummary>): LayerStack {
  const naming = namingFor(shape.family);
  const embedding = emptyGroup();
  const finalNorm = emptyGroup();
  const head = emptyGroup();
  const other = emptyGroup();
  const byLayer = new Map<number, ParamGroup>();
  let totalParams = 0;
  let totalBytes = 0;
  for (const { name, dtype, shape: dims, params, bytes } of tensors) {
    const tensor: TensorSummary = { name, dtype, shape: dims, params, bytes };
    totalParams += params;
    totalBytes += bytes;
    const group = groupTensor(name, naming);
    switch (group.kind) {
      case 'layer': {
        let layer = byLayer.get(group.index);
        if (!layer) byLayer.set(group.index, (layer = emptyGroup()));
        add(layer, tensor);
        break;
      }
      case 'embedding': add(embedding, tensor); break;
      case 'finalNorm': add(finalNorm, tensor); break;
      case 'head': add(head, tensor); break;
      default: add(other, tensor);
    }
  }
  const warnings: string[] = [];
  // A loop, not Math.max(...keys): a spread of 100k+ layer indices overflows the call stack.
  let seenLayers = 0;
  for (const index of byLayer.keys()) seenLayers = Math.max(seenLayers, index + 1);
  if (seenLayers > MAX_LAYERS) {
    const deepest = byLayer.get(seenLayers - 1)!.tensors[0].name;
    throw new ModelReadError(
      shape.path,
      `has a tensor named for layer ${seenLayers - 1} ("${deepest.length > 120 ? `${deepest.slice(0, 120)}…` : deepest}"), more than the ${MAX_LAYERS} layers any real model has`,
      'check that this is a transformer checkpoint with its original tensor names',
    );
  }
  if (shape.numLayers !== undefined && shape.numLayers > MAX_LAYERS) {
    throw new ModelReadError(
      shape.path,
      `is declared by its config.json to have ${shape.numLayers} layers, more than the ${MAX_LAYERS} any real model has`,
      'fix num_hidden_layers in config.json or re-save the config with save_pretrained',
    );
  }
  const numLayers = shape.numLayers ?? seenLayers;
  if (shape.numLayers !== undefined && seenLayers !== shape.numLayers) {
    warnings.push(`config.json declares ${shape.numLayers} layers but the weights hold ${seenLayers}`);
  }
  const layers: LayerGroup[] = [];
  for (let index = 0; index < Math.max(numLayers, seenLayers); index++) {
    const group = byLayer.get(index) ?? emptyGroup();
    if (group.tensors.length === 0 && index < seenLayers) warnings.push(`layer ${index} has no tensors`);
    layers.push({ index, ...group });
  }
  if (other.tensors.length) {
    warnings.push(`${other.tensors.length} tensor(s) match no embedding, layer, norm or head name of family "${shape.family}" and are listed under Other`);
  }
  return {
    source: shape.source,
    path: shape.path,
    name: shape.name,
    family: shape.family,
    numLayers,
    hiddenSize: shape.hiddenSize,
    numHeads: shape.numHeads,
    numKeyValueHeads: shape.numKeyValueHeads,
    vocabSize: shape.vocabSize,
    tieWordEmbeddings: shape.tieWordEmbeddings,
    totalParams,
    totalBytes,
    embeddingParams: embedding.params,
    headParams: head.params,
    finalNormParams: finalNorm.params,
    otherParams: other.params,
    embedding,
    finalNorm,
    head,
    other,
    layers,
    files: shape.files,
    io: shape.io,
    warnings,
  };
}
