import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readFile, rename, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { asObject } from '../model/safetensors';
import type { RunEvent, RunStatus, RunRecord } from '../shared/protocol/workerEvents';
import { parseRunEvent, parseRunRecord } from '../shared/protocol/workerEvents';
import { isWellFormedPid, type Liveness } from '../worker/ownProcesses';
import { createExclusive } from './safeFiles';

/**
 * Reading a run folder, the worker's only output (protocol/run.schema.json and events.schema.json).
 * events.jsonl is append-only: a reader keeps its byte offset and reads only what was added, holding back
 * a last line without its newline until the worker finishes writing it.
 */
export const RUN_FILE = 'run.json';
export const EVENTS_FILE = 'events.jsonl';
/** A run whose heartbeat is older than this is not alive, whatever run.json says. */
export const HEARTBEAT_STALE_MS = 30_000;
/**
 * A heartbeat further ahead than this is not a clock's skew but a file made to look alive forever (a shipped
 * run with `"heartbeatAt": "2999-…"`).
 */
export const HEARTBEAT_FUTURE_MS = 60_000;
/** run.json holds a spec and a small result (a few KB); anything this large is not one the worker wrote. */
export const MAX_RUN_FILE_BYTES = 1024 * 1024;
/**
 * The longest events.jsonl line kept (in characters; a few KB in practice, a few MB for a layer_losses event
 * of the longest curves the parser accepts). A longer line is passed over without being held and counted in
 * `skipped`, so a runaway writer cannot grow a reader's memory without bound.
 */
export const MAX_EVENT_LINE_LENGTH = 16 * 1024 * 1024;
/** events.jsonl is read in slices of at most this many bytes, so a huge file never becomes one huge string. */
const READ_SLICE_BYTES = 4 * 1024 * 1024;

export async function readRunRecord(runDir: string): Promise<RunRecord | undefined> {
  const read = await readRunFile(runDir);
  return read.kind === 'record' ? read.record : undefined;
}

/** run.json as the store sees it: a record, too large to read (shown as unreadable), or nothing to show. */
export type RunFileRead =
  | { kind: 'record'; record: RunRecord; key: string }
  | { kind: 'unchanged'; key: string }
  | { kind: 'too-large'; size: number; key: string }
  | { kind: 'none' };

/**
 * Reads run.json unless its identity (inode, size, mtime) is `knownKey`, the one already parsed: a store
 * polling hundreds of finished runs then reads none of them again. Only a regular file (not a link, FIFO or
 * device: a FIFO would block forever) of at most MAX_RUN_FILE_BYTES is read; `onParse` counts the parses.
 */
export async function readRunFile(runDir: string, knownKey?: string, onParse?: () => void): Promise<RunFileRead> {
  try {
    const file = path.join(runDir, RUN_FILE);
    const info = await lstat(file);
    if (!info.isFile()) return { kind: 'none' };
    const key = `${info.ino}:${info.size}:${info.mtimeMs}`;
    if (info.size > MAX_RUN_FILE_BYTES) return { kind: 'too-large', size: info.size, key };
    if (key === knownKey) return { kind: 'unchanged', key };
    const text = await readFile(file, 'utf8');
    onParse?.();
    const record = parseRunRecord(JSON.parse(text));
    return record ? { kind: 'record', record, key } : { kind: 'none' };
  } catch {
    return { kind: 'none' };
  }
}

export interface TailState {
  offset: number;
  partial: string;
  /** Set while the rest of a line over MAX_EVENT_LINE_LENGTH is being passed over, up to its newline. */
  skippingLine?: boolean;
}

export const freshTail = (): TailState => ({ offset: 0, partial: '' });

/**
 * Reads what was appended to events.jsonl since `state`. A file that shrank (rewritten or truncated) is
 * read again from the start. Lines that do not parse as events are skipped and counted, never fatal; so are
 * lines over MAX_EVENT_LINE_LENGTH. The file is read in bounded slices, each cut before a character split
 * by the slice's end (the next read decodes it whole), so no event's text depends on where reads fell.
 */
export async function readNewEvents(runDir: string, state: TailState, maxBytes = Infinity): Promise<{ events: RunEvent[]; skipped: number; state: TailState }> {
  const file = path.join(runDir, EVENTS_FILE);
  let size: number;
  try {
    const info = await lstat(file);
    // A folder or FIFO under the name has no lines to give (and reading one would throw or block).
    if (!info.isFile()) return { events: [], skipped: 0, state };
    size = info.size;
  } catch {
    return { events: [], skipped: 0, state };
  }
  let { offset, partial } = state;
  let skippingLine = state.skippingLine ?? false;
  if (size < offset) {
    offset = 0;
    partial = '';
    skippingLine = false;
  }
  // A huge shipped file is read over several polls, never all in one.
  size = Math.min(size, offset + maxBytes);
  const events: RunEvent[] = [];
  let skipped = 0;
  const take = (text: string) => {
    const pieces = text.split('\n');
    for (let i = 0; i < pieces.length; i++) {
      const complete = i < pieces.length - 1;
      if (skippingLine) {
        if (complete) skippingLine = false;
        continue;
      }
      partial += pieces[i];
      if (!complete) {
        if (partial.length > MAX_EVENT_LINE_LENGTH) {
          partial = '';
          skippingLine = true;
          skipped++;
        }
        continue;
      }
      const line = partial;
      partial = '';
      if (!line.trim()) continue;
      const event = line.length > MAX_EVENT_LINE_LENGTH ? undefined : parseEventLine(line);
      if (event) events.push(event);
      else skipped++;
    }
  };
  if (size > offset) {
    let handle;
    try {
      // Not through a link swapped in since the lstat (reads stay on the run's own file).
      handle = await open(file, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
    } catch {
      // Removed or replaced since the stat: the next poll sees what is there.
      return { events: [], skipped: 0, state };
    }
    try {
      const buffer = Buffer.alloc(Math.min(READ_SLICE_BYTES, size - offset));
      while (offset < size) {
        const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - offset), offset);
        const whole = completeUtf8Length(buffer, bytesRead);
        if (whole === 0) break;
        take(buffer.toString('utf8', 0, whole));
        offset += whole;
      }
    } catch {
      // A read error ends this poll with what was read so far; the next poll carries on from there.
    } finally {
      await handle.close();
    }
  }
  return { events, skipped, state: skippingLine ? { offset, partial, skippingLine } : { offset, partial } };
}

/** The length of `buffer[0, length)` without a UTF-8 sequence cut off at its end. */
function completeUtf8Length(buffer: Buffer, length: number): number {
  for (let i = length - 1; i >= Math.max(0, length - 3); i--) {
    const byte = buffer[i];
    if ((byte & 0xc0) === 0x80) continue;
    const needs = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return i + needs > length ? i : length;
  }
  return length;
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

/**
 * A run's status as shown: run.json's, except for "running". That is believed only for a fresh heartbeat and
 * a pid that is the run's own worker; a pid that could never be a worker's (0, 1, not an integer) or a
 * heartbeat from the future is a folder nobody's worker wrote: "unknown", as is a live pid that is some other
 * process. A run whose worker or heartbeat is gone has failed.
 */
export type RunState = RunStatus | 'unknown';

/** What the Runs tree says for a run in the "unknown" state. */
export const UNKNOWN_STATE_TEXT = 'unknown — not started here';

export function effectiveStatus(record: RunRecord, now: number, liveness: (pid: number) => boolean | Liveness): RunState {
  if (record.status !== 'running') return record.status;
  if (!isWellFormedPid(record.pid)) return 'unknown';
  const heartbeat = Date.parse(record.heartbeatAt);
  if (!Number.isFinite(heartbeat) || now - heartbeat >= HEARTBEAT_STALE_MS) return 'failed';
  if (heartbeat - now > HEARTBEAT_FUTURE_MS) return 'unknown';
  const state = liveness(record.pid);
  if (state === true || state === 'ours') return 'running';
  return state === 'foreign' ? 'unknown' : 'failed';
}

export { asObject };

/**
 * The one write the extension makes to a run folder: a worker that had to be killed before it could say
 * "cancelled" leaves run.json at "running", which readers would later call a crash.
 */
export async function markCancelledIfRunning(runDir: string): Promise<void> {
  const file = path.join(runDir, RUN_FILE);
  try {
    const record = parseRunRecord(JSON.parse(await readFile(file, 'utf8')));
    if (!record || record.status !== 'running') return;
    const now = new Date().toISOString();
    const updated = { ...record, status: 'cancelled', endedAt: now, error: { message: 'cancelled by the user; the worker was stopped' } };
    // Same atomic replace the worker uses, so a reader never sees half a file. The temporary name is new and
    // created exclusively, so no link planted under it is followed; rename replaces run.json itself, never
    // whatever a link there pointed to.
    const temp = `${file}.${randomBytes(6).toString('hex')}.ext.tmp`;
    createExclusive(temp, `${JSON.stringify(updated, null, 2)}\n`);
    try {
      await rename(temp, file);
    } catch (e) {
      await rm(temp, { force: true });
      throw e;
    }
  } catch {
    // No run.json yet: the worker was stopped before it created the run; nothing to mark.
  }
}
