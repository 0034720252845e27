import type { LayerLossesEvent } from '../protocol/generated/events';

/**
 * How sure each L³Prune cut is, from the bootstrap that `analyze` runs over its batches
 * (worker/l3prune/cutstability.py): the band drawn around the curve and the sentence under each cut.
 */
/** The layer_losses event's cutStability (protocol/events.schema.json): per-depth spread, resample count, win shares. */
export type CutStabilityView = NonNullable<LayerLossesEvent['cutStability']>;

/** Below this share the winner is not settled and more samples are suggested. */
export const SURE_SHARE = 0.8;

/** The curve ± one standard error of its mean over batches: where the mean of another sample would likely fall. */
export function lossBand(losses: readonly number[], stability: CutStabilityView): { lower: number[]; upper: number[] } {
  const se = (i: number) => (stability.batches > 1 ? (stability.lossStd[i] ?? 0) / Math.sqrt(stability.batches) : 0);
  return { lower: losses.map((v, i) => v - se(i)), upper: losses.map((v, i) => v + se(i)) };
}

export interface CutConfidence {
  share: number;
  sure: boolean;
  /** Other depths that won at least 5 % of the resamples, most often first. */
  rivals: Array<{ depth: number; share: number }>;
  text: string;
}

export function cutConfidence(variant: 'small' | 'large', depth: number, stability: CutStabilityView): CutConfidence {
  const shares = variant === 'small' ? stability.smallShare : stability.largeShare;
  const share = variant === 'small' ? stability.small : stability.large;
  const rivals = shares
    .map((s, i) => ({ depth: i + 1, share: s }))
    .filter((r) => r.depth !== depth && r.share >= 0.05)
    .sort((a, b) => b.share - a.share)
    .slice(0, 3);
  const percent = (s: number) => `${Math.round(100 * s)} %`;
  const of = `${stability.resamples.toLocaleString('en-US')} resamples of the ${stability.batches} batches`;
  const sure = share >= SURE_SHARE;
  const others = rivals.length ? ` (also ${rivals.map((r) => `${r.depth}: ${percent(r.share)}`).join(', ')})` : '';
  const text = sure
    ? `keep ${depth} won ${percent(share)} of ${of}${others}`
    : `not settled: keep ${depth} won only ${percent(share)} of ${of}${others}; compute the initial loss on more samples`;
  return { share, sure, rivals, text };
}
