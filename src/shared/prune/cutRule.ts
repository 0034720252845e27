/**
 * L³Prune's rule (the paper, section 3): given the initial loss of the untrained model truncated at every
 * depth 1..N (losses[0] is depth 1), the small variant keeps argmin over depths 1..⌊N/2⌋ and the large one
 * argmin over ⌊N/2⌋+1..N. Ties go to the shallower depth, the cheaper model. The worker implements the
 * same rule in Python; both are tested against protocol/cut-rule-vectors.json.
 */
export interface CutPoints {
  small: number;
  large: number;
}

export function l3pruneCuts(losses: readonly number[]): CutPoints {
  const n = losses.length;
  if (n < 1 || !losses.every(Number.isFinite)) {
    throw new Error('the L³Prune rule needs at least one finite loss per depth');
  }
  const half = Math.floor(n / 2);
  // With a single layer there is no first half: both variants are the whole model.
  const small = half >= 1 ? argminDepth(losses, 1, half) : 1;
  const large = argminDepth(losses, half + 1, n);
  return { small, large };
}

function argminDepth(losses: readonly number[], fromDepth: number, toDepth: number): number {
  let best = fromDepth;
  for (let depth = fromDepth + 1; depth <= toDepth; depth++) {
    if (losses[depth - 1] < losses[best - 1]) best = depth;
  }
  return best;
}
