import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, renameSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import type { RunName } from '../shared/protocol/generated/run-name';
import { createExclusive, UnsafePathError } from './safeFiles';

/** protocol/run-name.schema.json: the one file of a run folder the extension writes itself. */
export const RUN_NAME_FILE = 'name.json';
export const MAX_RUN_NAME = 120;
const MAX_FILE_BYTES = 4096;
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** What is wrong with a name typed by the user, in one sentence; undefined when it can be used (after trimming). */
export function runNameProblem(name: string): string | undefined {
  const trimmed = name.trim();
  if (!trimmed) return 'Type a name, or press Escape to keep the current one.';
  if (trimmed.length > MAX_RUN_NAME) return `A run name has at most ${MAX_RUN_NAME} characters (this one has ${trimmed.length}).`;
  if (CONTROL.test(trimmed)) return 'A run name cannot hold tabs, line breaks or other control characters.';
  return undefined;
}

const isRunName = (v: unknown): v is RunName => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const record = v as Record<string, unknown>;
  if (Object.keys(record).some((k) => k !== 'schemaVersion' && k !== 'name')) return false;
  return record.schemaVersion === 1 && typeof record.name === 'string' && record.name === record.name.trim() && runNameProblem(record.name) === undefined;
};

/**
 * The name stored in a run folder, or undefined. The folder may be a cloned repository's: a link, a FIFO, a
 * huge file or a file that breaks the schema is passed over (never followed, never read whole), so a run
 * keeps its derived name rather than showing whatever a stranger put there.
 */
export function readRunName(runDir: string): string | undefined {
  const file = path.join(runDir, RUN_NAME_FILE);
  let fd: number;
  try {
    const seen = lstatSync(file);
    if (!seen.isFile() || seen.size > MAX_FILE_BYTES) return undefined;
    fd = openSync(file, constants.O_RDONLY | NOFOLLOW | (constants.O_NONBLOCK ?? 0));
  } catch {
    return undefined;
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile() || info.size > MAX_FILE_BYTES) return undefined;
    const buffer = Buffer.alloc(MAX_FILE_BYTES + 1);
    const length = readSync(fd, buffer, 0, buffer.length, 0);
    if (length > MAX_FILE_BYTES) return undefined;
    const parsed: unknown = JSON.parse(buffer.subarray(0, length).toString('utf8'));
    return isRunName(parsed) ? parsed.name : undefined;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Stores `name` (trimmed) as the run's name. Written to a fresh file of ours (O_EXCL, no link followed) and
 * renamed over name.json: a rename replaces a link of that name rather than writing through it, so a shipped
 * `name.json -> ~/.bashrc` is swapped out, never written to. Throws a one-sentence error otherwise.
 */
export function writeRunName(runDir: string, name: string): string {
  const problem = runNameProblem(name);
  if (problem) throw new Error(problem);
  const info = lstatSync(runDir);
  if (!info.isDirectory()) throw new UnsafePathError(`${runDir} is ${info.isSymbolicLink() ? 'a symbolic link' : 'not a folder'}, so L³Prune does not write a name into it`);
  const trimmed = name.trim();
  const record: RunName = { schemaVersion: 1, name: trimmed };
  const temp = path.join(runDir, `.${RUN_NAME_FILE}.${process.pid}.${Date.now()}.tmp`);
  createExclusive(temp, `${JSON.stringify(record)}\n`);
  try {
    renameSync(temp, path.join(runDir, RUN_NAME_FILE));
  } catch (e) {
    rmSync(temp, { force: true });
    throw new Error(`The name could not be stored in ${path.join(runDir, RUN_NAME_FILE)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); check that the run folder is writable and that nothing else has that name.`, { cause: e });
  }
  return trimmed;
}

/** "14:02": the local clock time a run started, the part of its default name that tells two runs apart. */
export function clockTime(iso: string): string {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return '?';
  return `${String(at.getHours()).padStart(2, '0')}:${String(at.getMinutes()).padStart(2, '0')}`;
}
