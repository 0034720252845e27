import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';

/** Runs live in the workspace (`.l3prune/runs/`) so they travel with the project; else in global storage. */
export function runsRoot(globalStorage: vscode.Uri): string {
  const folder = vscode.workspace.workspaceFolders?.[0];
  return folder ? path.join(folder.uri.fsPath, '.l3prune', 'runs') : path.join(globalStorage.fsPath, 'runs');
}

/** A new, unique run folder name that sorts by time: `<verb>-<UTC stamp>-<random>`. */
export async function newRunDir(root: string, verb: string): Promise<string> {
  await mkdir(root, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  return path.join(root, `${verb}-${stamp}-${randomBytes(3).toString('hex')}`);
}
