import * as path from 'node:path';
import { stat } from 'node:fs/promises';
import * as vscode from 'vscode';
import { revealWay } from '../workspace/revealWay';

/**
 * Shows a file or folder in whatever this window can show it with (src/workspace/revealWay.ts): the OS file
 * manager in a local desktop window, the Explorer for a workspace path in a remote one, else a notification
 * with the path to copy and the folder to open in a new window.
 */
export async function revealPath(target: string): Promise<void> {
  const uri = vscode.Uri.file(target);
  const localDesktop = vscode.env.uiKind === vscode.UIKind.Desktop && vscode.env.remoteName === undefined;
  const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
  const way = revealWay(target, folders, localDesktop);
  if (way === 'os') {
    await vscode.commands.executeCommand('revealFileInOS', uri);
    return;
  }
  if (way === 'explorer') {
    await vscode.commands.executeCommand('revealInExplorer', uri);
    return;
  }
  const isFolder = await stat(target).then((s) => s.isDirectory(), () => false);
  const copy = 'Copy Path';
  const open = 'Open Folder in New Window';
  const choice = await vscode.window.showInformationMessage(
    `${target} is outside this workspace, on the machine the window is connected to.`,
    copy,
    open,
  );
  if (choice === copy) {
    await vscode.env.clipboard.writeText(target);
    void vscode.window.setStatusBarMessage(`Copied ${target}`, 4000);
  } else if (choice === open) {
    await vscode.commands.executeCommand('vscode.openFolder', vscode.Uri.file(isFolder ? target : path.dirname(target)), { forceNewWindow: true });
  }
}
