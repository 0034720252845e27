import type { LayerStack } from '../model/stack';
import type { CutStabilityView } from '../prune/cutStability';
import type { DeviceProfile } from '../prune/resources';
import { firstMatch, isFiniteNumber, isInteger, isMessage, type Check } from './validate';

/** The layer-stack panel's contract, imported by the host (src/views) and the page (webview/layerStack). */
export interface InitialLossView {
  losses: number[];
  small: number;
  large: number;
  blockInfluence?: number[];
  angularDistance?: number[];
  /** Absent for analyses made before the worker reported it. */
  cutStability?: CutStabilityView;
  runDir?: string;
}

export type LayerStackToWebview =
  | { type: 'show'; stack: LayerStack; keep: number; initialLoss?: InitialLossView; device?: DeviceProfile }
  | { type: 'error'; message: string };

export type LayerStackFromWebview =
  | { type: 'ready' }
  | { type: 'keepChanged'; keep: number }
  /** "Train at this cut…": Prune and Finetune at the slider's keep. */
  | { type: 'trainAt'; keep: number };

/** Checks depend on the stack shown: a keep outside 1..N is as invalid as a missing one. */
export function parseLayerStackMessage(raw: unknown, numLayers: number): LayerStackFromWebview | undefined {
  const keep = isInteger(1, Math.max(1, numLayers));
  const checks: Check<LayerStackFromWebview>[] = [
    isMessage('ready', {}),
    isMessage('keepChanged', { keep }),
    isMessage('trainAt', { keep }),
  ];
  return firstMatch(raw, checks);
}

export const isLossCurve: Check<number[]> = (v): v is number[] => Array.isArray(v) && v.length > 0 && v.every(isFiniteNumber);
