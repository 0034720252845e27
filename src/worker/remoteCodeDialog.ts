import * as path from 'node:path';
import * as vscode from 'vscode';
import { RemoteCodeConsent, type CodeReview } from './remoteCode';

const MAX_LISTED = 25;
const ALLOW = 'Run This Code';

/** The modal question, per model folder: its path and every .py file transformers may import from it. */
async function askInModal(review: CodeReview): Promise<boolean> {
  const listed = review.pyFiles.slice(0, MAX_LISTED).map((f) => `  ${f}`);
  if (review.pyFiles.length > MAX_LISTED) listed.push(`  …and ${review.pyFiles.length - MAX_LISTED} more`);
  const detail = [
    `Folder: ${review.folder}`,
    '',
    review.pyFiles.length ? `Python files:\n${listed.join('\n')}` : 'It names code in its config.json (auto_map) but holds no .py file; transformers may then fetch or import code from elsewhere.',
    '',
    'Its config.json asks transformers to import this code, which then runs in the worker with your permissions. ' +
      'Allow it only for a model from a source you trust. The answer is kept for this folder until its code or config changes.',
  ].join('\n');
  const choice = await vscode.window.showWarningMessage(`Run the Python code shipped with the model ${path.basename(review.folder)}?`, { modal: true, detail }, ALLOW);
  return choice === ALLOW;
}

/** The user declined a model's own code: say that nothing ran. */
export function refusedCode(model: string): void {
  void vscode.window.showInformationMessage(`Nothing was started: ${path.basename(model)} needs its own Python code, and it was not allowed.`);
}

/** Consent kept in the extension's global state (never in the workspace), asked in a modal dialog. */
export function createRemoteCodeConsent(globalState: vscode.Memento, log: vscode.LogOutputChannel): RemoteCodeConsent {
  return new RemoteCodeConsent(globalState, askInModal, (line) => log.info(line));
}
