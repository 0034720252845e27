import type { LayerStack } from '../model/stack';

export interface PrunePlan {
  keep: number;
  numLayers: number;
  /** How many layers the cut removes, and which. */
  prunedLayers: number;
  prunedLayerIndices: number[];
  /** Parameters and bytes of the checkpoint after the cut (embedding, kept layers, final norm, head, other). */
  params: number;
  bytes: number;
  paramsRemoved: number;
  bytesRemoved: number;
  paramsRemovedShare: number;
  bytesRemovedShare: number;
  /**
   * Per-token compute of the layer stack before over after the cut. Layers dominate an encoder's cost and
   * the paper measures latency falling in proportion to the layers cut, so this is N/n for uniform stacks.
   */
  expectedSpeedup: number;
}

export class PlanError extends Error {}

/** Keep the first `keep` layers, the paper's `model.layers = model.layers[:keep]`. */
export function planKeep(stack: LayerStack, keep: number): PrunePlan {
  const n = stack.layers.length;
  if (!Number.isInteger(keep) || keep < 1 || keep > n) {
    throw new PlanError(`keep must be a whole number of layers from 1 to ${n} for ${stack.name}; got ${keep}`);
  }
  const cut = stack.layers.slice(keep);
  const paramsRemoved = cut.reduce((sum, layer) => sum + layer.params, 0);
  const bytesRemoved = cut.reduce((sum, layer) => sum + layer.bytes, 0);
  const layerParams = stack.layers.reduce((sum, layer) => sum + layer.params, 0);
  const keptLayerParams = layerParams - paramsRemoved;
  return {
    keep,
    numLayers: n,
    prunedLayers: cut.length,
    prunedLayerIndices: cut.map((layer) => layer.index),
    params: stack.totalParams - paramsRemoved,
    bytes: stack.totalBytes - bytesRemoved,
    paramsRemoved,
    bytesRemoved,
    paramsRemovedShare: stack.totalParams ? paramsRemoved / stack.totalParams : 0,
    bytesRemovedShare: stack.totalBytes ? bytesRemoved / stack.totalBytes : 0,
    expectedSpeedup: keptLayerParams > 0 ? layerParams / keptLayerParams : keep === n ? 1 : n / keep,
  };
}

/**
 * Prune p % of the layers: keep floor(N · (100 − p) / 100), the paper's `int(N * (1 - p))` in exact integer
 * arithmetic (32 layers at 10 % keep 28, at 20 % keep 25), never fewer than 1. p may carry up to two decimals; it
 * is read as a whole number of hundredths. The same rule as worker/l3prune/cutrule.py, both tested against
 * protocol/keep-rule-vectors.json.
 */
export function keepForPrunePercent(numLayers: number, percent: number): number {
  if (!Number.isInteger(numLayers) || numLayers < 1) {
    throw new PlanError(`the layer count must be a whole number of at least 1; got ${numLayers}`);
  }
  if (!Number.isFinite(percent) || percent < 0 || percent >= 100) {
    throw new PlanError(`prune percent must be at least 0 and below 100; got ${percent}`);
  }
  const hundredths = Math.round(percent * 100);
  if (Math.abs(percent * 100 - hundredths) > 1e-6) {
    throw new PlanError(`prune percent takes at most two decimals; got ${percent}`);
  }
  // Integers throughout (BigInt: no rounding however large N is).
  const kept = (BigInt(numLayers) * BigInt(10_000 - hundredths)) / 10_000n;
  return Math.max(1, Number(kept));
}

export function planPrunePercent(stack: LayerStack, percent: number): PrunePlan {
  return planKeep(stack, keepForPrunePercent(stack.layers.length, percent));
}
