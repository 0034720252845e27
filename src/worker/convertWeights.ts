import * as path from 'node:path';
import * as vscode from 'vscode';
import { findPython, WorkspaceNotTrustedError } from './python';
import { ensureWorkerPackage } from './workerPackage';
import { startWorker } from './workerProcess';

export const CONSENT_DETAIL =
  'L³Prune reads only safetensors, because loading a pickle (.bin) file can run code. The conversion reads the pickles ' +
  'with PyTorch’s weights-only unpickler, which builds tensors and refuses every other object, then writes ' +
  'model.safetensors next to them. Convert only models from a source you trust.';

/**
 * The user's opt-in for a model folder that ships only pickle weights: consent in a modal dialog, then the
 * worker's weights-only conversion. Returns whether the folder now has safetensors weights.
 */
export async function convertPickleWeights(folder: string, extensionUri: vscode.Uri, log: vscode.LogOutputChannel): Promise<boolean> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  const consent = await vscode.window.showWarningMessage(
    `Convert the pickle weights of ${path.basename(folder)} to safetensors?`,
    { modal: true, detail: CONSENT_DETAIL },
    'Convert',
  );
  if (consent !== 'Convert') return false;
  const python = await findPython(vscode.Uri.file(folder));
  if (!(await ensureWorkerPackage(python.executable, extensionUri, log))) return false;
  log.info(`convert-safetensors ${folder} (consent given)`);
  const outcome = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Converting ${path.basename(folder)} to safetensors` },
    async () => {
      const worker = await startWorker({ python: python.executable, verb: 'convert-safetensors', args: ['--model', folder] });
      const lines: string[] = [];
      for await (const line of worker.lines) lines.push(line);
      return { ...(await worker.done), lines };
    },
  );
  if (outcome.exitCode !== 0) {
    const sentence = outcome.stderr.trim().split('\n').pop()?.replace(/^l3prune: /, '');
    throw new Error(sentence || `The conversion of ${folder} failed (exit ${outcome.exitCode ?? outcome.signal}).`);
  }
  log.info(`converted ${folder}: ${outcome.lines.at(-1) ?? ''}`);
  return true;
}
