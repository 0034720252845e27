import type { LayerStack } from '../model/stack';
import { formatParams } from '../format/units';
import type { CutStabilityView } from './cutStability';
import { planKeep } from './plan';

/**
 * The pure pieces of the layer-stack panel's curve, where the user chooses the cut: the x range, the depth a click
 * picks, the labels of L³Prune's cut markers and the bootstrap histogram under the curve.
 */

/** Half a layer beyond each end: the markers and bars of depth 1 and N then sit inside the frame, not on it. */
export function depthRange(numLayers: number): [number, number] {
  return [0.5, numLayers + 0.5];
}

/** The depth a click at x (in the x scale's units, layers kept) picks: the nearest whole depth in 1..N; none off the axis. */
export function depthAt(x: number, numLayers: number): number | undefined {
  if (!Number.isFinite(x) || !Number.isInteger(numLayers) || numLayers < 1) return undefined;
  const [min, max] = depthRange(numLayers);
  if (x < min || x > max) return undefined;
  return Math.min(numLayers, Math.max(1, Math.round(x)));
}

export interface CutMarker {
  variant: 'small' | 'large';
  keep: number;
  /** "small · keep 7" */
  label: string;
  /** What the cut costs and buys: "77.2M params · 23 % of layers · ×4.29" */
  cost: string;
  /** "won 81 % of resamples", when the analysis carried its bootstrap. */
  confidence?: string;
}

export function cutMarker(stack: LayerStack, variant: 'small' | 'large', keep: number, stability?: CutStabilityView): CutMarker {
  const plan = planKeep(stack, keep);
  const layersShare = Math.round((100 * keep) / plan.numLayers);
  const share = stability ? (variant === 'small' ? stability.small : stability.large) : undefined;
  return {
    variant,
    keep,
    label: `${variant} · keep ${keep}`,
    cost: `${formatParams(plan.params)} params · ${layersShare} % of layers · ×${plan.expectedSpeedup.toFixed(2)}`,
    confidence: share === undefined ? undefined : `won ${Math.round(100 * share)} % of resamples`,
  };
}

export interface BootstrapBar {
  depth: number;
  variant: 'small' | 'large';
  share: number;
}

/** One bar per depth that won a resample, for each half: the bootstrap's picture of where the cut could fall. */
export function bootstrapBars(stability: CutStabilityView, numLayers: number): BootstrapBar[] {
  const bars: BootstrapBar[] = [];
  for (const [variant, shares] of [['small', stability.smallShare], ['large', stability.largeShare]] as const) {
    shares.forEach((share, i) => {
      if (i < numLayers && Number.isFinite(share) && share > 0) bars.push({ depth: i + 1, variant, share: Math.min(1, share) });
    });
  }
  return bars;
}
