import * as vscode from 'vscode';
import { revealPath } from '../views/reveal';
import type { RunEvent } from '../shared/protocol/workerEvents';
import type { Cancellation, VerbOutcome } from './workerVerb';

/** A worker verb the extension runs itself (not as a task), followed in a cancellable notification. */
export interface WorkerJob<Result> {
  /** The notification's title, e.g. "Initial loss of smollm2-135m". */
  title: string;
  /** What the job is called in its closing message, e.g. "Initial loss". */
  what: string;
  start(onEvent: (event: RunEvent) => void, cancellation: Cancellation): Promise<VerbOutcome<Result>>;
  /** How far an event says the job is: a message, and a share done from 0 to 1 when it knows one. */
  progressOf(event: RunEvent): { message?: string; done?: number } | undefined;
}

/**
 * Runs a job under a progress notification whose Cancel stops the worker. Cancels and failures are
 * reported here (a failure offers its run folder); the caller gets the result of a success only.
 */
export async function runWithProgress<Result>(job: WorkerJob<Result>): Promise<{ result: Result; runDir: string } | undefined> {
  const outcome = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: job.title, cancellable: true },
    (progress, token) => {
      let reported = 0;
      return job.start((event) => {
        const step = job.progressOf(event);
        if (!step) return;
        const done = step.done === undefined ? reported : Math.min(100, Math.max(reported, 100 * step.done));
        progress.report({ increment: done - reported, message: step.message });
        reported = done;
      }, token);
    },
  );
  if (outcome.status === 'cancelled') {
    void vscode.window.showInformationMessage(`${job.what} cancelled; the run folder ${outcome.runDir} is marked cancelled.`);
    return undefined;
  }
  if (outcome.status === 'failed') {
    const open = 'Reveal Run Folder';
    void vscode.window.showErrorMessage(`${job.what} failed: ${outcome.message}`, open).then((choice) => {
      if (choice) void revealPath(outcome.runDir);
    });
    return undefined;
  }
  return { result: outcome.result, runDir: outcome.runDir };
}
