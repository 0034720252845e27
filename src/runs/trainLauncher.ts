import { spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import * as path from 'node:path';
import type { TrainSpecResolved } from '../shared/protocol/generated/specs/train';
import type { DevicesReport } from '../shared/protocol/generated/devices-report';
import { ownProcesses, type OwnProcesses } from '../worker/ownProcesses';
import { workerCwd, workerEnv } from '../worker/workerEnv';
import { logLaunch } from '../worker/workerLog';
import { readRunRecord } from './runFolder';
import { launchLine, type Rendezvous } from './trainDevices';
import { createExclusive, makeNewDir, openAppend, runFolderLinkProblem, UnsafePathError } from './safeFiles';

export const SPEC_FILE = 'spec.json';
export const WORKER_LOG = 'worker.log';

export interface TrainLaunchOptions {
  resume?: boolean;
  /** Consent given in the dialog for the model's own code; never read from a file. */
  trustRemoteCode?: boolean;
  env?: Record<string, string>;
  /**
   * Where the processes go (trainDevices.ts); default the spec's devices. For a resume, run.json's unless the
   * task chose others, which then also travel as --devices (the worker keeps the global batch).
   */
  devices?: string;
  /** Set on a resume whose devices differ from run.json's: passes --devices to the worker. */
  changeDevices?: boolean;
  /** The devices report, for `all` (how many GPUs) and the CUDA_VISIBLE_DEVICES it means. */
  report?: DevicesReport;
  rendezvous?: Rendezvous;
}

/**
 * Starts `python -m l3prune train` fully detached: its own session, output to the run folder's log, no
 * pipe back to this process. Closing the window, reloading it or a crash of the extension host leaves the
 * training running; the run folder is how anyone (this window after a reload, another window, a script)
 * follows it. A new run's folder is made here and must not exist; a resumed one may be a shipped folder, so
 * one with links in it is refused before anything is written or spawned.
 */
export async function launchTrain(python: string, runDir: string, spec: TrainSpecResolved | undefined, options: TrainLaunchOptions = {}): Promise<number> {
  if (options.resume) {
    const problem = runFolderLinkProblem(runDir);
    if (problem) throw new UnsafePathError(problem);
  } else {
    makeNewDir(runDir);
  }
  const args = ['--run-dir', runDir];
  if (spec) {
    // Consent travels on the command line only; the file says false whatever the spec object held.
    createExclusive(path.join(runDir, SPEC_FILE), `${JSON.stringify({ ...spec, trustRemoteCode: false, allowDownload: false }, null, 2)}\n`);
    args.push('--spec', path.join(runDir, SPEC_FILE));
  }
  if (options.resume) args.push('--resume');
  if (options.trustRemoteCode) args.push('--trust-remote-code');
  const devices = options.devices ?? spec?.devices ?? 'auto';
  if (options.resume && options.changeDevices) args.push('--devices', devices);
  // torchrun, when there is more than one process, leads the detached group: a SIGTERM to it reaches every rank.
  const line = launchLine(args, devices, options.report, options.rendezvous);
  const log = openAppend(path.join(runDir, WORKER_LOG));
  try {
    const child = spawn(python, line.argv, {
      cwd: workerCwd(),
      detached: true,
      stdio: ['ignore', log, log],
      env: { ...process.env, ...workerEnv({ ...line.env, ...options.env }) },
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => resolve(child.pid!));
    });
    ownProcesses.remember(pid, runDir, (listener) => void child.once('exit', listener));
    const logEnd = logLaunch({ verb: 'train', runDir, python, argv: line.argv, pid });
    // The worker's output goes to worker.log, so why it ended is read from run.json, which it closes before exiting.
    child.once('exit', (exitCode, signal) => {
      void readRunRecord(runDir).then(
        (record) => logEnd({ exitCode, signal, cancelledByUser: cancelledByUser.has(runDir) && record?.status === 'cancelled', errorText: record?.error?.message }),
        () => logEnd({ exitCode, signal, cancelledByUser: false }),
      );
    });
    child.unref();
    return pid;
  } finally {
    closeSync(log);
  }
}

/**
 * Cancel: SIGTERM to the run's worker group (it finishes the step, checkpoints and exits "cancelled"), only
 * for a run shown as running (a fresh, sane heartbeat) whose run.json pid is provably that worker (see
 * ownProcesses), checked again now. Returns whether a signal was sent.
 */
export function cancelRun(run: { runDir: string; status: string; record: { pid: unknown } }, processes: OwnProcesses = ownProcesses): boolean {
  const sent = run.status === 'running' && processes.signalRun(run.record.pid, run.runDir);
  if (sent) cancelledByUser.add(run.runDir);
  return sent;
}

/** Runs whose cancel the user asked for in this session, so the log tells that end from a crash. */
const cancelledByUser = new Set<string>();

