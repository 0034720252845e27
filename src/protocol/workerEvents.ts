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

export type RunEvent = LayerLossesEvent | ProgressEvent | ErrorEvent | BaseEvent;

const STATUSES: RunStatus[] = ['running', 'succeeded', 'failed', 'cancelled'];
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isLosses = isArrayOf(isFiniteNumber, 100_000);

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
    (raw.error === null || (isObject(raw.error) && isString(raw.error.message)));
  return ok ? (raw as unknown as RunRecord) : undefined;
}

export const isLayerLosses = (e: RunEvent | undefined): e is LayerLossesEvent => e?.event === 'layer_losses';
