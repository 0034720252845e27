import type { EncodedEvent, ErrorEvent, EvaluationFinishedEvent, ExportedEvent, LayerLossesEvent, ProgressEvent, StExportedEvent, TaskResultEvent, WorkerEvent } from './generated/events';
import type { RunRecord } from './generated/run';
import { isArrayOf, isFiniteNumber, isInteger, isString } from './validate';

export type { EncodedEvent, ErrorEvent, EvaluationFinishedEvent, ExportedEvent, LayerLossesEvent, ProgressEvent, RunRecord, StExportedEvent, TaskResultEvent, WorkerEvent };

/**
 * Reading the worker's run folders. The types are generated from protocol/events.schema.json and
 * run.schema.json (generated/); the parsers check at run time what the extension relies on and pass the
 * rest, so a newer worker's extra fields or event kinds do not break an older extension.
 * test/unit/protocol.test.ts checks real worker output against the schemas and these parsers.
 */
export type RunStatus = RunRecord['status'];

/** Any line with an `event` and a `time`: a kind the parser does not check, or one from a newer worker. */
export interface UncheckedEvent {
  event: string;
  time: string;
  [key: string]: unknown;
}

/** An events.jsonl line as parsed: the kinds below are checked field by field, every other kind is passed on. */
export type RunEvent =
  | LayerLossesEvent
  | ProgressEvent
  | ErrorEvent
  | TaskResultEvent
  | EvaluationFinishedEvent
  | ExportedEvent
  | StExportedEvent
  | EncodedEvent
  | UncheckedEvent;

/** evaluate: the variant's size, scores and speed, as its closing event and run.json's result give them. */
export type EvaluationResult = Pick<
  EvaluationFinishedEvent,
  'numLayers' | 'params' | 'bytes' | 'averageScore' | 'scores' | 'latencyMsPerBatch' | 'textsPerSecond' | 'batchSize' | 'maxLength' | 'device' | 'maxExamples' | 'examples' | 'onnx'
>;

/** export-onnx: where the graph went and how closely it matches the torch model. */
export type ExportResult = Pick<ExportedEvent, 'path' | 'outDir' | 'bytes' | 'opset' | 'parityMinCosine' | 'parityMeanCosine' | 'numLayers' | 'seconds'>;

const STATUSES: readonly RunStatus[] = ['running', 'succeeded', 'failed', 'cancelled'];
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isLosses = isArrayOf(isFiniteNumber, 100_000);
const isCount = isInteger(0, Number.MAX_SAFE_INTEGER);
const isPositiveCount = isInteger(1, Number.MAX_SAFE_INTEGER);
const isNonNegative = (v: unknown): v is number => isFiniteNumber(v) && v >= 0;
const isScoreOrNull = (v: unknown): v is number | null => v === null || isFiniteNumber(v);
const isScoreTable = (v: unknown): v is Record<string, number | null> => isObject(v) && Object.values(v).every(isScoreOrNull);

/**
 * The fields the extension reads were checked just before; the others are the worker's word, which
 * test/unit/protocol.test.ts holds to the schema.
 */
const checked = <T extends RunEvent>(raw: Record<string, unknown>): T => raw as unknown as T;

/** evaluate --onnx: which exported graph was scored; a row shows its folder and precision, so both must be sound. */
const isOnnxScored = (v: unknown): boolean =>
  isObject(v) && isString(v.folder) && v.folder !== '' && (v.precision === 'fp32' || v.precision === 'fp16' || v.precision === 'int8') && isString(v.provider);

export function parseRunEvent(raw: unknown): RunEvent | undefined {
  if (!isObject(raw) || !isString(raw.event) || !isString(raw.time)) return undefined;
  switch (raw.event) {
    case 'layer_losses': {
      const n = Array.isArray(raw.losses) ? raw.losses.length : 0;
      const depth = isInteger(1, n);
      return n > 0 && isLosses(raw.losses) && depth(raw.small) && depth(raw.large) && isLosses(raw.blockInfluence) && isLosses(raw.angularDistance)
        ? checked<LayerLossesEvent>(raw)
        : undefined;
    }
    case 'progress':
      return isInteger(0, Number.MAX_SAFE_INTEGER)(raw.batch) && isInteger(0, Number.MAX_SAFE_INTEGER)(raw.batches) ? checked<ProgressEvent>(raw) : undefined;
    case 'error':
      return isString(raw.message) ? checked<ErrorEvent>(raw) : undefined;
    case 'task_result':
      return isString(raw.task) && raw.task !== '' && isString(raw.taskType) && isString(raw.metric) && isScoreOrNull(raw.mainScore) && isObject(raw.scores) && isNonNegative(raw.seconds)
        ? checked<TaskResultEvent>(raw)
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
        isString(raw.device) &&
        (raw.onnx === undefined || isOnnxScored(raw.onnx))
        ? checked<EvaluationFinishedEvent>(raw)
        : undefined;
    case 'exported':
      return isString(raw.path) && raw.path !== '' && isString(raw.outDir) && raw.outDir !== '' && isCount(raw.bytes) && isPositiveCount(raw.opset) && isFiniteNumber(raw.parityMinCosine) &&
        isFiniteNumber(raw.parityMeanCosine) && isPositiveCount(raw.numLayers) && isNonNegative(raw.seconds)
        ? checked<ExportedEvent>(raw)
        : undefined;
    case 'st_exported':
      return isString(raw.outDir) && raw.outDir !== '' && isCount(raw.bytes) && isPositiveCount(raw.numLayers) && isFiniteNumber(raw.parityMinCosine) &&
        isPositiveCount(raw.parityTexts) && isNonNegative(raw.seconds)
        ? checked<StExportedEvent>(raw)
        : undefined;
    case 'encoded':
      return isString(raw.output) && raw.output !== '' && isPositiveCount(raw.rows) && isPositiveCount(raw.dim) && isNonNegative(raw.seconds)
        ? checked<EncodedEvent>(raw)
        : undefined;
    default:
      return raw as UncheckedEvent;
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
export const isStExported = (e: RunEvent | undefined): e is StExportedEvent => e?.event === 'st_exported';
export const isEncoded = (e: RunEvent | undefined): e is EncodedEvent => e?.event === 'encoded';
