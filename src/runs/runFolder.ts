import { open, readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { asObject } from '../model/safetensors';
import type { RunEvent, RunStatus, RunRecord } from '../protocol/workerEvents';
import { parseRunEvent, parseRunRecord } from '../protocol/workerEvents';

/**
 * Reading a run folder, the worker's only output (protocol/run.schema.json and events.schema.json).
 * events.jsonl is append-only: a reader keeps its byte offset and reads only what was added, holding back
 * a last line without its newline until the worker finishes writing it.
 */
export const RUN_FILE = 'run.json';
export const EVENTS_FILE = 'events.jsonl';
/** A run whose heartbeat is older than this is not alive, whatever run.json says. */
export const HEARTBEAT_STALE_MS = 30_000;

export async function readRunRecord(runDir: string): Promise<RunRecord | undefined> {
  try {
    const text = await readFile(path.join(runDir, RUN_FILE), 'utf8');
    return parseRunRecord(JSON.parse(text));
  } catch {
    return undefined;
  }
}

export interface TailState {
  offset: number;
  partial: string;
}

export const freshTail = (): TailState => ({ offset: 0, partial: '' });

/**
 * Reads what was appended to events.jsonl since `state`. A file that shrank (rewritten or truncated) is
 * read again from the start. Lines that do not parse as events are skipped and counted, never fatal.
 */
export async function readNewEvents(runDir: string, state: TailState): Promise<{ events: RunEvent[]; skipped: number; state: TailState }> {
  const file = path.join(runDir, EVENTS_FILE);
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch {
    return { events: [], skipped: 0, state };
  }
  let { offset, partial } = state;
  if (size < offset) {
    offset = 0;
    partial = '';
  }
  if (size === offset) return { events: [], skipped: 0, state: { offset, partial } };
  const handle = await open(file, 'r');
  let chunk: string;
  try {
    const buffer = Buffer.alloc(size - offset);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
    chunk = buffer.subarray(0, bytesRead).toString('utf8');
    offset += bytesRead;
  } finally {
    await handle.close();
  }
  const lines = (partial + chunk).split('\n');
  partial = lines.pop() ?? '';
  const events: RunEvent[] = [];
  let skipped = 0;
  for (const line of lines) {
    if (!line.trim()) continue;
    const event = parseEventLine(line);
    if (event) events.push(event);
    else skipped++;
  }
  return { events, skipped, state: { offset, partial } };
}

export function parseEventLine(line: string): RunEvent | undefined {
  try {
    return parseRunEvent(JSON.parse(line));
  } catch {
    return undefined;
  }
}

export async function readAllEvents(runDir: string): Promise<RunEvent[]> {
  const { events, state } = await readNewEvents(runDir, freshTail());
  // A complete last line without its newline is still an event once the writer has gone.
  const last = state.partial.trim() ? parseEventLine(state.partial) : undefined;
  return last ? [...events, last] : events;
}

/** A run's status as a reader should show it: a "running" run whose process or heartbeat is gone has failed. */
export function effectiveStatus(record: RunRecord, now = Date.now(), isAlive = processIsAlive): RunStatus {
  if (record.status !== 'running') return record.status;
  const heartbeat = Date.parse(record.heartbeatAt);
  const fresh = Number.isFinite(heartbeat) && now - heartbeat < HEARTBEAT_STALE_MS;
  return fresh && isAlive(record.pid) ? 'running' : 'failed';
}

export function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export { asObject };
