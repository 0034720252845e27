import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { createIfAbsent, ensureRealDir } from './safeFiles';

/** The workspace's folder for L³Prune's own files; its runs are in `runs/` under it. */
export const WORKSPACE_FOLDER = '.l3prune';

/**
 * Run folders hold absolute paths, user names and merged weights: nothing to commit by accident. Written
 * once, exclusively; whatever already has the name (the user's own .gitignore, or a link) is left alone.
 */
export const GITIGNORE_TEXT = '# L³Prune run folders (absolute paths, merged weights): not for version control.\n*\n';

/**
 * Makes the runs root ready for a new run. Inside a workspace (`<folder>/.l3prune/runs`) both folders must
 * be real folders, not links a cloned repository shipped to point our writes elsewhere, and `.l3prune/`
 * gets its .gitignore with the first run. Elsewhere (global storage) the folder is the extension's own.
 */
export async function ensureRunsRoot(root: string): Promise<void> {
  const parent = path.dirname(root);
  if (path.basename(parent) !== WORKSPACE_FOLDER) {
    await mkdir(root, { recursive: true });
    return;
  }
  ensureRealDir(parent);
  createIfAbsent(path.join(parent, '.gitignore'), GITIGNORE_TEXT);
  ensureRealDir(root);
}

/** A new, unique run folder name that sorts by time: `<verb>-<UTC stamp>-<random>`. */
export async function newRunDir(root: string, verb: string): Promise<string> {
  await ensureRunsRoot(root);
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  return path.join(root, `${verb}-${stamp}-${randomBytes(3).toString('hex')}`);
}
