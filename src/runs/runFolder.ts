import { open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { asObject } from '../model/safetensors';
import type { RunEvent, RunStatus, RunRecord } from '../shared/protocol/workerEvents';
import { parseRunEvent, parseRunRecord } from '../shared/protocol/workerEvents';

/**
 * Reading a run folder, the worker's only output (protocol/run.schema.json and events.schema.json).
 * events.jsonl is append-only: a reader keeps its byte offset and reads only what was added, holding back
 * a last line without its newline until the worker finishes writing it.
 */
export const RUN_FILE = 'run.json';
export const EVENTS_FILE = 'events.jsonl';
/** A run whose heartbeat is older than this is not alive, whatever run.json says. */
export const HEARTBEAT_STALE_MS = 30_000;
/** run.json holds a spec and a small result; anything this large is not one the worker wrote. */
const MAX_RUN_FILE_BYTES = 16 * 1024 * 1024;
/**
 * The longest events.jsonl line kept (in characters; a few KB in practice, a few MB for a layer_losses event
 * of the longest curves the parser accepts). A longer line is passed over without being held and counted in
 * `skipped`, so a runaway writer cannot grow a reader's memory without bound.
 */
export const MAX_EVENT_LINE_LENGTH = 16 * 1024 * 1024;
/** events.jsonl is read in slices of at most this many bytes, so a huge file never becomes one huge string. */
const READ_SLICE_BYTES = 4 * 1024 * 1024;

export async function readRunRecord(runDir: string): Promise<RunRecord | undefined> {
  try {
    const file = path.join(runDir, RUN_FILE);
    // Only a regular file of a sane size is read: a FIFO would block forever, a huge file would be held whole.
    const info = await stat(file);
    if (!info.isFile() || info.size > MAX_RUN_FILE_BYTES) return undefined;
    const text = await readFile(file, 'utf8');
    return parseRunRecord(JSON.parse(text));
  } catch {
    return undefined;
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
export async function readNewEvents(runDir: string, state: TailState): Promise<{ events: RunEvent[]; skipped: number; state: TailState }> {
  const file = path.join(runDir, EVENTS_FILE);
  let size: number;
  try {
    const info = await stat(file);
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
      handle = await open(file, 'r');
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
    // Same atomic replace the worker uses, so a reader never sees half a file.
    await writeFile(`${file}.ext.tmp`, `${JSON.stringify(updated, null, 2)}\n`);
    await rename(`${file}.ext.tmp`, file);
  } catch {
    // No run.json yet: the worker was stopped before it created the run; nothing to mark.
  }
}
