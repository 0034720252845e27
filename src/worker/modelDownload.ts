import { downloadCommand, hubCacheDir, repoRefText, type RepoRef } from '../model/hfCache';
import type { Cancellation } from './workerVerb';
import { startWorker } from './workerProcess';

/**
 * Downloading a model the Hugging Face cache lacks: the worker's `download-model` verb (safetensors, JSON and
 * tokenizer files only), launched with `--allow-download` once the user said yes in a modal dialog
 * (modelDownloadDialog.ts); consent is never read from a file. Kept free of the vscode module so it is tested
 * like any other launch.
 */

const isTrue = (v: string | undefined) => v !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(v.trim().toUpperCase());

/** Whether the user's environment says offline, by huggingface_hub's rule (HF_HUB_OFFLINE, else TRANSFORMERS_OFFLINE). */
export const isHubOffline = (env: NodeJS.ProcessEnv = process.env): boolean => isTrue(env.HF_HUB_OFFLINE || env.TRANSFORMERS_OFFLINE);

/** Whether the user's environment keeps `datasets` offline (HF_DATASETS_OFFLINE, or the hub's own switch). */
export const isDatasetsOffline = (env: NodeJS.ProcessEnv = process.env): boolean => isHubOffline(env) || isTrue(env.HF_DATASETS_OFFLINE);

/** A worker's environment once the user allowed a dataset download: the worker's own offline defaults lifted. */
export const ONLINE_ENV: Readonly<Record<string, string>> = { HF_HUB_OFFLINE: '0', TRANSFORMERS_OFFLINE: '0', HF_DATASETS_OFFLINE: '0' };

export class DownloadRefusedError extends Error {}

/**
 * The worker's command line and environment for downloading `ref`. Workers start offline (workerEnv); this one
 * alone is let online, and only when the user's own environment does not say offline, which is then respected.
 */
export function downloadLaunch(ref: RepoRef, env: NodeJS.ProcessEnv = process.env): { verb: string; args: string[]; env: Record<string, string> } {
  if (isHubOffline(env)) {
    throw new DownloadRefusedError(
      `${repoRefText(ref)} is not in the Hugging Face cache ${hubCacheDir(env)}, and VS Code's environment says offline (HF_HUB_OFFLINE), ` +
        `so L³Prune downloads nothing; get it with \`${downloadCommand(ref)}\` where there is a network.`,
    );
  }
  return { verb: 'download-model', args: ['--model', repoRefText(ref), '--allow-download'], env: { HF_HUB_OFFLINE: '0', TRANSFORMERS_OFFLINE: '0' } };
}

export type DownloadLine =
  | { kind: 'progress'; filesDone: number; files: number; bytesDone: number; bytes: number; file?: string }
  | { kind: 'ready'; path: string; repoId: string; commit: string; downloaded: boolean };

const count = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** One stdout line of download-model: a `download` event, the closing `model_ready`, or nothing we read. */
export function parseDownloadLine(line: string): DownloadLine | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (raw === null || typeof raw !== 'object') return undefined;
  const e = raw as Record<string, unknown>;
  if (e.event === 'download' && count(e.filesDone) && count(e.files) && count(e.bytesDone) && count(e.bytes)) {
    return { kind: 'progress', filesDone: e.filesDone, files: e.files, bytesDone: e.bytesDone, bytes: e.bytes, file: typeof e.file === 'string' ? e.file : undefined };
  }
  if (e.event === 'model_ready' && typeof e.path === 'string' && e.path && typeof e.repoId === 'string' && typeof e.commit === 'string') {
    return { kind: 'ready', path: e.path, repoId: e.repoId, commit: e.commit, downloaded: e.downloaded === true };
  }
  return undefined;
}

export type DownloadOutcome = { status: 'ready'; path: string; downloaded: boolean } | { status: 'cancelled' } | { status: 'failed'; message: string };

/** Runs download-model for `ref` (the user has consented), reporting each file; a cancel stops the worker. */
export async function runModelDownload(
  python: string,
  ref: RepoRef,
  onProgress: (line: Extract<DownloadLine, { kind: 'progress' }>) => void,
  cancellation: Cancellation,
): Promise<DownloadOutcome> {
  const worker = await startWorker({ python, ...downloadLaunch(ref) });
  let cancelled = false;
  const subscription = cancellation.onCancellationRequested(() => {
    cancelled = true;
    void worker.cancel();
  });
  let ready: Extract<DownloadLine, { kind: 'ready' }> | undefined;
  try {
    for await (const line of worker.lines) {
      const parsed = parseDownloadLine(line);
      if (parsed?.kind === 'progress') onProgress(parsed);
      else if (parsed?.kind === 'ready') ready = parsed;
    }
  } catch {
    // The stream ends with an error when the process is killed; its exit status below says what happened.
  }
  const exit = await worker.done;
  subscription.dispose();
  if (ready && exit.exitCode === 0) return { status: 'ready', path: ready.path, downloaded: ready.downloaded };
  if (cancelled) return { status: 'cancelled' };
  const sentence = exit.stderr.trim().split('\n').filter(Boolean).pop()?.replace(/^l3prune: /, '');
  return { status: 'failed', message: sentence ?? `the worker exited with ${exit.exitCode ?? exit.signal}` };
}
