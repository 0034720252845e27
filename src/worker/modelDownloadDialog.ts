import * as vscode from 'vscode';
import { hubCacheDir, repoRefText, type RepoRef } from '../model/hfCache';
import { formatBytes } from '../shared/format/units';
import { runModelDownload } from './modelDownload';
import { findPython, WorkspaceNotTrustedError } from './python';
import { ensureWorkerPackage } from './workerPackage';

const DOWNLOAD = 'Download';

/**
 * A model the Hugging Face cache lacks, downloaded once the user says yes in a modal dialog, followed in a
 * cancellable notification. Returns its snapshot folder, or undefined when the user declined or cancelled.
 */
export async function downloadIntoCache(ref: RepoRef, extensionUri: vscode.Uri, log: vscode.LogOutputChannel): Promise<string | undefined> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  const name = repoRefText(ref);
  const cacheDir = hubCacheDir();
  const consent = await vscode.window.showWarningMessage(
    `Download ${name} from the Hugging Face Hub?`,
    {
      modal: true,
      detail:
        `It is not in the Hugging Face cache (${cacheDir}). L³Prune downloads only its safetensors weights, JSON files and ` +
        'tokenizer files (never pickle weights or code) into that cache, where huggingface_hub and transformers find it too. ' +
        'A cancelled download resumes where it stopped.',
    },
    DOWNLOAD,
  );
  if (consent !== DOWNLOAD) return undefined;
  const python = await findPython();
  if (!(await ensureWorkerPackage(python.executable, extensionUri, log))) return undefined;
  log.info(`download-model ${name} into ${cacheDir} (consent given)`);
  const outcome = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Downloading ${name}`, cancellable: true },
    (progress, token) => {
      let reported = 0;
      return runModelDownload(
        python.executable,
        ref,
        (step) => {
          const done = step.bytes > 0 ? (100 * step.bytesDone) / step.bytes : (100 * step.filesDone) / step.files;
          const message = step.file
            ? `${step.file} (${step.filesDone} of ${step.files} files, ${formatBytes(step.bytesDone)} of ${formatBytes(step.bytes)})`
            : `${step.files} files, ${formatBytes(step.bytes)}`;
          progress.report({ increment: Math.max(0, done - reported), message });
          reported = Math.max(reported, done);
        },
        token,
      );
    },
  );
  if (outcome.status === 'cancelled') {
    void vscode.window.showInformationMessage(`Download of ${name} cancelled; what was fetched stays in the cache and the next download resumes it.`);
    return undefined;
  }
  if (outcome.status === 'failed') throw new Error(outcome.message);
  log.info(`${name}: ${outcome.downloaded ? 'downloaded into' : 'already in'} ${outcome.path}`);
  return outcome.path;
}
