import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, writeSync } from 'node:fs';
import * as path from 'node:path';

/**
 * Writes into run and model folders, which a cloned repository may have shipped. A shipped `worker.log ->
 * ~/.bashrc` or `spec.json -> ~/.ssh/authorized_keys` must not turn our write into one to the link's target,
 * so a file is either created here (O_EXCL: an existing name, link or not, is an error) or appended to only
 * after lstat shows a regular file with one name, opened without following a link, and fstat shows it is the
 * file lstat saw.
 */

// Windows has no O_NOFOLLOW (and no unprivileged symlinks); 0 leaves the flag out there.
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

export class UnsafePathError extends Error {}

/** Creates `file` with `text`; fails if anything (a file, a link, a dangling link) already has its name. */
export function createExclusive(file: string, text: string, mode = 0o644): void {
  const fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NOFOLLOW, mode);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** Like createExclusive, but a name that already exists is left exactly as it is. Returns whether it wrote. */
export function createIfAbsent(file: string, text: string): boolean {
  try {
    createExclusive(file, text);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/** A descriptor that appends to `file` (created when absent): never through a link, never to a second name of another file. */
export function openAppend(file: string): number {
  let seen;
  try {
    seen = lstatSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return openSync(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_EXCL | NOFOLLOW, 0o644);
  }
  if (!seen.isFile() || seen.nlink > 1) {
    throw new UnsafePathError(`${file} is ${seen.isSymbolicLink() ? 'a symbolic link' : seen.isFile() ? 'a file with more than one name (a hard link)' : 'not a regular file'}, so L³Prune does not write to it`);
  }
  const fd = openSync(file, constants.O_WRONLY | constants.O_APPEND | NOFOLLOW);
  const opened = fstatSync(fd);
  if (opened.ino !== seen.ino || opened.dev !== seen.dev) {
    closeSync(fd);
    throw new UnsafePathError(`${file} was replaced while it was being opened, so L³Prune does not write to it`);
  }
  return fd;
}

/** Makes a folder that must be new: an existing name (folder, file or link) is an error. */
export function makeNewDir(dir: string): void {
  mkdirSync(dir, { mode: 0o755 });
}

/** Makes `dir` if it is missing, and checks that what is there is a real folder, not a link to one elsewhere. */
export function ensureRealDir(dir: string): void {
  try {
    mkdirSync(dir, { mode: 0o755 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const info = lstatSync(dir);
  if (!info.isDirectory()) {
    throw new UnsafePathError(`${dir} is ${info.isSymbolicLink() ? 'a symbolic link' : 'not a folder'}; L³Prune writes runs only into a real folder it made`);
  }
}

/**
 * The symbolic links in a run folder the worker writes to: the folder itself, its entries, and those of
 * checkpoints/ and of each checkpoint (where resume reads and the worker writes). Relative names.
 */
export function linksInRunFolder(runDir: string): string[] {
  const found: string[] = [];
  const top = lstatSync(runDir);
  if (top.isSymbolicLink()) return ['.'];
  if (!top.isDirectory()) throw new UnsafePathError(`${runDir} is not a folder`);
  const scan = (dir: string, rel: string, depth: number) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const name = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isSymbolicLink()) found.push(name);
      else if (entry.isDirectory() && depth > 0 && (rel !== '' || entry.name === 'checkpoints')) scan(path.join(dir, entry.name), name, depth - 1);
    }
  };
  scan(runDir, '', 2);
  return found;
}

/** One sentence refusing a run folder with links in it, before anything is spawned; undefined when it has none. */
export function runFolderLinkProblem(runDir: string): string | undefined {
  let links: string[];
  try {
    links = linksInRunFolder(runDir);
  } catch (e) {
    return (e as Error).message;
  }
  if (!links.length) return undefined;
  const named = links.slice(0, 3).join(', ') + (links.length > 3 ? ` and ${links.length - 3} more` : '');
  return `the run folder ${runDir} contains symbolic links (${named}); L³Prune does not write into a folder with links it did not make, so it was left untouched`;
}
