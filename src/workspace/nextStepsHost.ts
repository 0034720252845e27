import * as vscode from 'vscode';
import { nextSteps, type FinishedJob } from '../shared/guide/nextSteps';

/** A button a notification keeps of its own beside the next steps (e.g. Reveal Folder), run here when picked. */
export interface LocalAction {
  title: string;
  run: () => unknown;
}

/**
 * A finished job's closing notification: its sentence, the next steps nextSteps() gives it (each runs its command
 * on this run or model), then the caller's own buttons. Informational for a success or a user's cancel, an error
 * for a failure. Resolves once the user has answered (or dismissed it) and the chosen step was started.
 */
export async function notifyFinished(job: FinishedJob, message: string, local: LocalAction[] = []): Promise<void> {
  const steps = nextSteps(job);
  const titles = [...steps.map((s) => s.title), ...local.map((l) => l.title)];
  const show = job.status === 'failed' ? vscode.window.showErrorMessage : vscode.window.showInformationMessage;
  const choice = await show(message, ...titles);
  const step = steps.find((s) => s.title === choice);
  if (step) {
    await vscode.commands.executeCommand(step.command, ...step.args);
    return;
  }
  await local.find((l) => l.title === choice)?.run();
}
