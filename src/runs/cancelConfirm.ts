import * as vscode from 'vscode';

/**
 * Every cancel the user starts (the Runs view's Cancel, the progress notification's Cancel, Ctrl+C in or
 * terminating the task's terminal) asks first: a training run stopped by a stray click costs its steps since the
 * last checkpoint, and this says the checkpoint is written first, so the run can go on.
 */
export async function confirmCancel(names: readonly string[]): Promise<boolean> {
  const cancel: vscode.MessageItem = { title: 'Cancel Run' };
  const keep: vscode.MessageItem = { title: 'Keep Running', isCloseAffordance: true };
  const which = names.length === 1 ? `run ${names[0]}` : `${names.length} runs (${names.join(', ')})`;
  const choice = await vscode.window.showWarningMessage(
    `Cancel ${which}? A checkpoint is written first; you can resume ${names.length === 1 ? 'it' : 'them'}.`,
    { modal: true },
    cancel,
    keep,
  );
  return choice === cancel;
}
