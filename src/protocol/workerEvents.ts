import { isArrayOf, isFiniteNumber, isInteger, isString } from './validate';

/**
 * TypeScript face of the worker protocol. protocol/events.schema.json and protocol/run.schema.json are the
 * definition; test/unit/protocol.test.ts checks real worker output against those schemas and against these
 * parsers, so the two cannot drift apart. The parsers check what the extension relies on and pass the rest.
 */
export type RunStatus = 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface RunRecord {
  schemaVersion: number;
  runId: string;
  verb: string;
  spec: Record<string, unknown>;
  status: RunStatus;
  pid: number;
  startedAt: string;
  heartbeatAt: string;
  endedAt: string | null;
  error: { message: string; [key: string]: unknown } | null;
  result: Record<string, unknown> | null;
}

interface BaseEvent {
  event: string;
  time: string;
  [key: string]: unknown;
}

export interface LayerLossesEvent extends BaseEvent {
  event: 'layer_losses';
  losses: number[];
  small: number;
  large: number;
  blockInfluence: number[];
  angularDistance: number[];
}

export interface ProgressEvent extends BaseEvent {
  event: 'progress';
  batch: number;
  batches: number;
}

export interface ErrorEvent extends BaseEvent {
  event: 'error';
  message: string;
}

/** evaluate: one per MTEB task, as soon as that task's result file is written. */
export interface TaskResultEvent extends BaseEvent {
  event: 'task_result';
  task: string;
  taskType: string;
  metric: string;
  /** null when the metric is undefined for this model (e.g. every similarity equal). */
  mainScore: number | null;
  scores: Record<string, unknown>;
  seconds: number;
}

/** evaluate: the variant's size, scores and speed, as its closing event and run.json's result give them. */
export interface EvaluationResult {
  numLayers: number;
  params: number;
  bytes: number;
  /** null when no task produced a score. */
  averageScore: number | null;
  /** Main score per task; null for a task whose metric could not be computed. */
  scores: Record<string, number | null>;
  latencyMsPerBatch: number;
  textsPerSecond: number;
  batchSize: number;
  maxLength: number;
  device: string;
}

export interface EvaluationFinishedEvent extends BaseEvent, EvaluationResult {
  event: 'evaluation_finished';
}

/** export-onnx: where the graph went and how closely it matches the torch model. */
export interface ExportResult {
  /** <outDir>/model.onnx */
  path: string;
  /** The export folder: model.onnx with its tokenizer files, l3prune-encoder.json and parity examples. */
  outDir: string;
  bytes: number;
  opset: number;
  parityMinCosine: number;
  parityMeanCosine: number;
  numLayers: number;
  seconds: number;
}

export interface ExportedEvent extends BaseEvent, ExportResult {
  event: 'exported';
}

export type RunEvent = LayerLossesEvent | ProgressEvent | ErrorEvent | TaskResultEvent | EvaluationFinishedEvent | ExportedEvent | BaseEvent;

const STATUSES: RunStatus[] = ['running', 'succeeded', 'failed', 'cancelled'];
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isLosses = isArrayOf(isFiniteNumber, 100_000);
const isCount = isInteger(0, Number.MAX_SAFE_INTEGER);
const isPositiveCount = isInteger(1, Number.MAX_SAFE_INTEGER);
const isNonNegative = (v: unknown): v is number => isFiniteNumber(v) && v >= 0;
const isScoreOrNull = (v: unknown): v is number | null => v === null || isFiniteNumber(v);
const isScoreTable = (v: unknown): v is Record<string, number | null> => isObject(v) && Object.values(v).every(isScoreOrNull);

export function parseRunEvent(raw: unknown): RunEvent | undefined {
  if (!isObject(raw) || !isString(raw.event) || !isString(raw.time)) return undefined;
  switch (raw.event) {
    case 'layer_losses': {
      const n = Array.isArray(raw.losses) ? raw.losses.length : 0;
      const depth = isInteger(1, n);
      return n > 0 && isLosses(raw.losses) && depth(raw.small) && depth(raw.large) && isLosses(raw.blockInfluence) && isLosses(raw.angularDistance)
        ? (raw as LayerLossesEvent)
        : undefined;
    }
    case 'progress':
      return isInteger(0, Number.MAX_SAFE_INTEGER)(raw.batch) && isInteger(0, Number.MAX_SAFE_INTEGER)(raw.batches) ? (raw as ProgressEvent) : undefined;
    case 'error':
      return isString(raw.message) ? (raw as ErrorEvent) : undefined;
    case 'task_result':
      return isString(raw.task) && raw.task !== '' && isString(raw.taskType) && isString(raw.metric) && isScoreOrNull(raw.mainScore) && isObject(raw.scores) && isNonNegative(raw.seconds)
        ? (raw as TaskResultEvent)
        : undefined;
    case 'evaluation_finished':
      return isPositiveCount(raw.numLayers) &&
        isCount(raw.params) &&
        isCount(raw.bytes) &&
        isScoreOrNull(raw.averageScore) &&
        isScoreTable(raw.scores) &&
        isNonNegative(raw.latencyMsPerBatch) &&
        isNonNegative(raw.textsPerSecond) &&
        isPositiveCount(raw.batchSize) &&
        isPositiveCount(raw.maxLength) &&
        isString(raw.device)
        ? (raw as EvaluationFinishedEvent)
        : undefined;
    case 'exported':
      return isString(raw.path) && raw.path !== '' && isString(raw.outDir) && raw.outDir !== '' && isCount(raw.bytes) && isPositiveCount(raw.opset) && isFiniteNumber(raw.parityMinCosine) &&
        isFiniteNumber(raw.parityMeanCosine) && isPositiveCount(raw.numLayers) && isNonNegative(raw.seconds)
        ? (raw as ExportedEvent)
        : undefined;
    default:
      return raw as BaseEvent;
  }
}

export function parseRunRecord(raw: unknown): RunRecord | undefined {
  if (!isObject(raw)) return undefined;
  const ok =
    isString(raw.runId) &&
    isString(raw.verb) &&
    isObject(raw.spec) &&
    STATUSES.includes(raw.status as RunStatus) &&
    isInteger(0, Number.MAX_SAFE_INTEGER)(raw.pid) &&
    isString(raw.startedAt) &&
    isString(raw.heartbeatAt) &&
    // Readers use endedAt as a time string and spread result as an object: anything else is not a run.json.
    (raw.endedAt == null || isString(raw.endedAt)) &&
    (raw.result == null || isObject(raw.result)) &&
    (raw.error === null || (isObject(raw.error) && isString(raw.error.message)));
  return ok ? (raw as unknown as RunRecord) : undefined;
}

export const isLayerLosses = (e: RunEvent | undefined): e is LayerLossesEvent => e?.event === 'layer_losses';
export const isTaskResult = (e: RunEvent | undefined): e is TaskResultEvent => e?.event === 'task_result';
export const isEvaluationFinished = (e: RunEvent | undefined): e is EvaluationFinishedEvent => e?.event === 'evaluation_finished';
export const isExported = (e: RunEvent | undefined): e is ExportedEvent => e?.event === 'exported';
