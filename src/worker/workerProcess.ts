import type { ResultPromise } from 'execa';

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
  cwd?: string;
  env?: Record<string, string>;
}

/**
 * execa is ESM-only; a dynamic import lets the same code run bundled (esbuild) and under the test runner's
 * CommonJS loader.
 */
export const loadExeca = () => import('execa');

export async function startWorker(launch: WorkerLaunch): Promise<WorkerHandle> {
  const { execa } = await loadExeca();
  const subprocess: ResultPromise = execa(launch.python, ['-m', 'l3prune', launch.verb, ...launch.args], {
    cwd: launch.cwd,
    detached: true,
    cleanup: true,
    reject: false,
    stdin: 'ignore',
    env: { PYTHONUNBUFFERED: '1', HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1', ...launch.env },
  });
  const done = subprocess.then((result) => ({
    exitCode: result.exitCode ?? null,
    signal: result.signal ?? null,
    stderr: String(result.stderr ?? ''),
  }));
  let exited = false;
  void done.then(() => {
    exited = true;
  });
  const killGroup = (signal: NodeJS.Signals) => {
    if (subprocess.pid === undefined) return;
    try {
      process.kill(-subprocess.pid, signal);
    } catch {
      // The group is already gone.
    }
  };
  return {
    pid: subprocess.pid,
    done,
    lines: subprocess.iterable({ from: 'stdout' }) as AsyncIterable<string>,
    async cancel(graceMs = 10_000) {
      if (exited) return;
      killGroup('SIGTERM');
      const timer = setTimeout(() => killGroup('SIGKILL'), graceMs);
      await done;
      clearTimeout(timer);
    },
  };
}
