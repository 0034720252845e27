import type { ResultPromise } from 'execa';
import { ownProcesses, workerCommand } from './ownProcesses';
import { workerCwd, workerEnv } from './workerEnv';
import { logLaunch } from './workerLog';

/**
 * Starting and stopping `python -m l3prune VERB`. The worker gets its own process group so that a cancel
 * reaches every process it started (data loaders, torchrun ranks): SIGTERM first, which the worker turns
 * into a clean "cancelled" run, then SIGKILL for the whole group if it has not exited in time.
 */
export interface WorkerHandle {
  pid: number | undefined;
  /** Resolves with the exit code (null when killed by a signal) and the stderr text. */
  done: Promise<{ exitCode: number | null; signal: string | null; stderr: string }>;
  lines: AsyncIterable<string>;
  cancel(graceMs?: number): Promise<void>;
}

export interface WorkerLaunch {
  python: string;
  verb: string;
  args: string[];
  env?: Record<string, string>;
}

/**
 * execa is ESM-only; a dynamic import lets the same code run bundled (esbuild) and under the test runner's
 * CommonJS loader.
 */
export const loadExeca = () => import('execa');

export async function startWorker(launch: WorkerLaunch): Promise<WorkerHandle> {
  const { execa } = await loadExeca();
  const argv = ['-m', 'l3prune', launch.verb, ...launch.args];
  const subprocess: ResultPromise = execa(launch.python, argv, {
    cwd: workerCwd(),
    detached: true,
    cleanup: true,
    reject: false,
    stdin: 'ignore',
    env: workerEnv(launch.env),
  });
  const runDir = workerCommand(argv)?.runDir;
  ownProcesses.remember(subprocess.pid, runDir, (listener) => void subprocess.once('exit', listener));
  const logEnd = logLaunch({ verb: launch.verb, runDir, python: launch.python, argv, pid: subprocess.pid });
  let cancelledByUser = false;
  const done = subprocess.then((result) => {
    const end = { exitCode: result.exitCode ?? null, signal: result.signal ?? null, stderr: String(result.stderr ?? '') };
    logEnd({ exitCode: end.exitCode, signal: end.signal, cancelledByUser, errorText: end.stderr });
    return end;
  });
  let exited = false;
  void done.then(() => {
    exited = true;
  });
  // Only while the child has not been reaped: after that its pid may be another process's.
  const killGroup = (signal: NodeJS.Signals) => void ownProcesses.signalChild(subprocess.pid, signal);
  return {
    pid: subprocess.pid,
    done,
    lines: subprocess.iterable({ from: 'stdout' }) as AsyncIterable<string>,
    async cancel(graceMs = 10_000) {
      if (exited) return;
      cancelledByUser = true;
      killGroup('SIGTERM');
      const timer = setTimeout(() => killGroup('SIGKILL'), graceMs);
      await done;
      clearTimeout(timer);
    },
  };
}
