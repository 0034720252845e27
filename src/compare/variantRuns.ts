import * as path from 'node:path';
import { runWorkerVerb, type Cancellation, type VerbOutcome } from '../worker/workerVerb';
import type { ExportOnnxSpec } from '../shared/protocol/generated/specs/export-onnx';
import { isEvaluationFinished, isExported, type EvaluationFinishedEvent, type ExportedEvent, type RunEvent } from '../shared/protocol/workerEvents';

/**
 * A variant is a model cut to its first `keep` layers, as it is (base) or finetuned by a train run
 * (`fromRun`). The worker resolves a train run to its merged model, or its base model plus adapter.
 */
export type Variant =
  | { kind: 'base'; model: string; keep: number; numLayers: number }
  | { kind: 'trained'; model: string; keep: number; fromRun: string };

/**
 * The folders a variant's worker may load a model (and so a model's code) from: a trained variant's merged
 * model/ in its run folder and the base model its train run names, or the base model itself.
 */
export function variantModelFolders(variant: Variant): string[] {
  return variant.kind === 'trained' ? [path.join(variant.fromRun, 'model'), variant.model].filter(Boolean) : [variant.model];
}

export function variantLabel(variant: Variant, modelName: string): string {
  if (variant.kind === 'trained') return `${modelName} · keep ${variant.keep} · trained`;
  return variant.keep === variant.numLayers ? `${modelName} · full (${variant.numLayers} layers)` : `${modelName} · keep ${variant.keep} of ${variant.numLayers}`;
}

/**
 * A trained variant is named by its run alone: the worker then loads the run's merged model, which is
 * faster than the base model plus adapter that an explicit `--model` would ask for.
 */
export function variantArgs(variant: Variant): string[] {
  return variant.kind === 'trained' ? ['--from-run', variant.fromRun] : ['--model', variant.model, '--keep', String(variant.keep)];
}

/** An export-onnx folder scored in onnxruntime (evaluate --onnx): the variant is the one its manifest names. */
export interface OnnxTarget {
  kind: 'onnx';
  folder: string;
}

export interface EvaluateRequest {
  python: string;
  runDir: string;
  variant: Variant | OnnxTarget;
  tasks?: string[];
  /** Real MTEB tasks run through the mteb package (their data from the datasets cache, or downloaded with consent). */
  mtebTasks?: string[];
  /** The user's consent, from a modal dialog, to download MTEB task data the datasets cache lacks; never a file's. */
  allowDownload?: boolean;
  /** Examples per task; fewer make a quick, rougher score. */
  maxExamples?: number;
  /** Tokens per text; absent: the worker's default (512, the paper's evaluation length). */
  maxLength?: number;
  /** Texts per forward pass, also the latency batch; absent: the worker's default. */
  batchSize?: number;
  /** auto, cpu, cuda or cuda:N; absent: the worker's default (auto). An ONNX graph always runs on the CPU. */
  device?: string;
  /** Folder with the evaluation data (sts.jsonl, eval/); the worker's default otherwise. */
  dataDir?: string;
  /** The user's consent to the model's own code, from the dialog (worker/remoteCode); never a run's file. */
  trustRemoteCode?: boolean;
  env?: Record<string, string>;
}

export function evaluateArgs(request: EvaluateRequest): string[] {
  const args = request.variant.kind === 'onnx' ? ['--onnx', request.variant.folder] : variantArgs(request.variant);
  // An explicit empty list: MTEB tasks only (the worker's --tasks none).
  if (request.tasks) args.push('--tasks', request.tasks.length ? request.tasks.join(',') : 'none');
  for (const name of request.mtebTasks ?? []) args.push('--mteb-task', name);
  if (request.allowDownload) args.push('--allow-download');
  if (request.maxExamples) args.push('--max-examples', String(request.maxExamples));
  // The conditions always go on the command line, so every variant evaluated in one sitting is measured alike.
  if (request.maxLength) args.push('--max-length', String(request.maxLength));
  if (request.batchSize) args.push('--batch-size', String(request.batchSize));
  if (request.device && request.variant.kind !== 'onnx') args.push('--device', request.device);
  if (request.dataDir) args.push('--data-dir', request.dataDir);
  // An ONNX graph runs no model code; consent is never passed where nothing would use it.
  if (request.trustRemoteCode && request.variant.kind !== 'onnx') args.push('--trust-remote-code');
  return args;
}

export function runEvaluate(request: EvaluateRequest, onEvent: (event: RunEvent) => void, cancellation: Cancellation): Promise<VerbOutcome<EvaluationFinishedEvent>> {
  return runWorkerVerb({ python: request.python, verb: 'evaluate', args: evaluateArgs(request), runDir: request.runDir, env: request.env }, isEvaluationFinished, onEvent, cancellation);
}

/** The graph's weights and arithmetic: fp32, fp16 (half the bytes) for serving on a GPU, or int8 for a CPU. */
export type ExportPrecision = NonNullable<ExportOnnxSpec['precision']>;

export interface ExportOnnxRequest {
  python: string;
  runDir: string;
  variant: Variant;
  /** Folder for model.onnx and its files; the worker's default is <run-dir>/onnx. */
  out?: string;
  /** Absent: the worker's default, fp32. */
  precision?: ExportPrecision;
  trustRemoteCode?: boolean;
  env?: Record<string, string>;
}

export function exportOnnxArgs(request: ExportOnnxRequest): string[] {
  const args = variantArgs(request.variant);
  if (request.out) args.push('--out', request.out);
  if (request.precision) args.push('--precision', request.precision);
  if (request.trustRemoteCode) args.push('--trust-remote-code');
  return args;
}

export function runExportOnnx(request: ExportOnnxRequest, onEvent: (event: RunEvent) => void, cancellation: Cancellation): Promise<VerbOutcome<ExportedEvent>> {
  return runWorkerVerb({ python: request.python, verb: 'export-onnx', args: exportOnnxArgs(request), runDir: request.runDir, env: request.env }, isExported, onEvent, cancellation);
}
