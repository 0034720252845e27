import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { TrainSpecResolved } from '../shared/protocol/generated/specs/train';

export const SPEC_FILE = 'spec.json';
export const WORKER_LOG = 'worker.log';

/**
 * Starts `python -m l3prune train` fully detached: its own session, output to the run folder's log, no
 * pipe back to this process. Closing the window, reloading it or a crash of the extension host leaves the
 * training running; the run folder is how anyone (this window after a reload, another window, a script)
 * follows it.
 */
export async function launchTrain(python: string, runDir: string, spec: TrainSpecResolved | undefined, options: { resume?: boolean; env?: Record<string, string> } = {}): Promise<number> {
  await mkdir(runDir, { recursive: true });
  const args = ['-m', 'l3prune', 'train', '--run-dir', runDir];
  if (spec) {
    await writeFile(path.join(runDir, SPEC_FILE), `${JSON.stringify(spec, null, 2)}\n`);
    args.push('--spec', path.join(runDir, SPEC_FILE));
  }
  if (options.resume) args.push('--resume');
  const log = openSync(path.join(runDir, WORKER_LOG), 'a');
  try {
    const child = spawn(python, args, {
      detached: true,
      stdio: ['ignore', log, log],
      env: { ...process.env, PYTHONUNBUFFERED: '1', HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1', ...options.env },
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => resolve(child.pid!));
    });
    child.unref();
    return pid;
  } finally {
    closeSync(log);
  }
}

/** Cancel = SIGTERM to the worker's process group: it finishes the step, checkpoints and exits "cancelled". */
export function cancelRun(pid: number): boolean {
  try {
    process.kill(-pid, 'SIGTERM');
    return true;
  } catch {
    try {
      process.kill(pid, 'SIGTERM');
      return true;
    } catch {
      return false;
    }
  }
}
