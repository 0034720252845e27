import { isLayerLosses, type LayerLossesEvent, type RunEvent } from '../shared/protocol/workerEvents';
import { runWorkerVerb, type Cancellation, type VerbOutcome } from '../worker/workerVerb';

export interface AnalyzeRequest {
  python: string;
  model: string;
  data: string;
  runDir: string;
  /** Triples sampled, and per batch; left out, the worker's device-dependent default (protocol/specs/analyze.schema.json:
   * the paper's 6400 in batches of 64 on CUDA, 256 in batches of 16 on a CPU), which run.json then records. */
  samples?: number;
  batchSize?: number;
  maxLength?: number;
  pooling?: 'mean' | 'weighted_mean' | 'last_token';
  /** The user's consent to the model folder's own code, from the dialog (worker/remoteCode). */
  trustRemoteCode?: boolean;
  env?: Record<string, string>;
}

export type AnalyzeOutcome = VerbOutcome<LayerLossesEvent>;

/** Runs `analyze` (the initial loss at every depth) and streams its events. */
export function runAnalyze(request: AnalyzeRequest, onEvent: (event: RunEvent) => void, cancellation: Cancellation): Promise<AnalyzeOutcome> {
  const args = ['--model', request.model, '--data', request.data];
  if (request.samples) args.push('--samples', String(request.samples));
  if (request.batchSize) args.push('--batch-size', String(request.batchSize));
  if (request.maxLength) args.push('--max-length', String(request.maxLength));
  if (request.pooling) args.push('--pooling', request.pooling);
  if (request.trustRemoteCode) args.push('--trust-remote-code');
  return runWorkerVerb({ python: request.python, verb: 'analyze', args, runDir: request.runDir, env: request.env }, isLayerLosses, onEvent, cancellation);
}
