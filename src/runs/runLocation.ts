import * as path from 'node:path';
import * as vscode from 'vscode';
import { WORKSPACE_FOLDER } from './runDirs';

export { newRunDir } from './runDirs';

/** Runs live in the workspace (`.l3prune/runs/`) so they travel with the project; else in global storage. */
export function runsRoot(globalStorage: vscode.Uri): string {
  const folder = vscode.workspace.workspaceFolders?.[0];
  return folder ? path.join(folder.uri.fsPath, WORKSPACE_FOLDER, 'runs') : path.join(globalStorage.fsPath, 'runs');
}
