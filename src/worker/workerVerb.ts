import { parseRunEvent, type RunEvent } from '../shared/protocol/workerEvents';
import { markCancelledIfRunning } from '../runs/runFolder';
import { startWorker } from './workerProcess';

/** How a worker verb launched by the extension ended; `result` is the verb's closing event. */
export type VerbOutcome<Result> =
  | { status: 'succeeded'; result: Result; runDir: string }
  | { status: 'cancelled'; runDir: string }
  | { status: 'failed'; runDir: string; message: string };

/** VS Code's CancellationToken, structurally, so the runners can be tested without VS Code. */
export interface Cancellation {
  isCancellationRequested: boolean;
  onCancellationRequested(listener: () => unknown): { dispose(): unknown };
}

export interface VerbLaunch {
  python: string;
  verb: string;
  /** Everything after the verb except `--run-dir`, which comes from `runDir`. */
  args: string[];
  runDir: string;
  env?: Record<string, string>;
}

/**
 * Any verb that writes one run folder and closes a successful run with one result event (analyze:
 * layer_losses, evaluate: evaluation_finished, export-onnx: exported). Success needs both that event and
 * exit status 0; a cancel stops the worker's process group; a failure carries the worker's own sentence.
 * The run folder is the record: the worker writes it, and the only write from here is marking a run
 * "cancelled" when its worker had to be killed before it could say so.
 */
export async function runWorkerVerb<Result extends RunEvent>(
  launch: VerbLaunch,
  isResult: (event: RunEvent) => event is Result,
  onEvent: (event: RunEvent) => void,
  cancellation: Cancellation,
): Promise<VerbOutcome<Result>> {
  const { runDir } = launch;
  const worker = await startWorker({ python: launch.python, verb: launch.verb, args: [...launch.args, '--run-dir', runDir], env: launch.env });
  let cancelled = false;
  const subscription = cancellation.onCancellationRequested(() => {
    cancelled = true;
    void worker.cancel();
  });
  let result: Result | undefined;
  let lastError: string | undefined;
  try {
    for await (const line of worker.lines) {
      let event: RunEvent | undefined;
      try {
        event = parseRunEvent(JSON.parse(line));
      } catch {
        continue;
      }
      if (!event) continue;
      if (isResult(event)) result = event;
      if (event.event === 'error' && typeof event.message === 'string') lastError = event.message;
      onEvent(event);
    }
  } catch {
    // The stream ends with an error when the process is killed; its exit status below says what happened.
  }
  const exit = await worker.done;
  subscription.dispose();
  if (result && exit.exitCode === 0) return { status: 'succeeded', result, runDir };
  if (cancelled) {
    await markCancelledIfRunning(runDir);
    return { status: 'cancelled', runDir };
  }
  const stderrLine = exit.stderr.trim().split('\n').filter(Boolean).pop();
  return {
    status: 'failed',
    runDir,
    message: lastError ?? stderrLine ?? `the worker exited with ${exit.exitCode ?? exit.signal}`,
  };
}
