import * as vscode from 'vscode';
import type { RunServices } from '../services';
import { RunPanel } from '../views/runPlots';
import { runName } from '../views/runsTree';
import { TrainFormPanel, type TrainFormServices } from '../views/trainFormPanel';
import { cancelRun } from './trainLauncher';
import { confirmCancel } from './cancelConfirm';
import { notifyFinished } from '../workspace/nextStepsHost';
import { createTrainTask } from './trainTask';
import { isResumable, type RunStore, type RunSummary } from './runStore';

export { devicePlansSummary, planSummary } from './devicePlans';

export interface TrainChoice {
  model: string;
  keep: number;
  numLayers: number;
  /** Chosen before the form; else the form offers the remembered file. */
  data?: string;
}

/** Prune and Finetune: the training form (src/views/trainFormPanel), which launches the run as a VS Code task. */
export async function startTraining(s: TrainFormServices, choice: TrainChoice): Promise<void> {
  await TrainFormPanel.show(s, choice);
}

/**
 * A launched run, followed: a progress notification while it runs, then its closing notification with the next
 * steps (nextSteps: trained → Evaluate, Export, Compare; cancelled or failed → Resume). The notification's Cancel
 * asks first (confirmCancel); "Keep Running" brings the progress back.
 */
export function followWithProgress(store: RunStore, runDir: string): void {
  const ended = new Promise<RunSummary>((resolve) => {
    const check = () => {
      const run = store.get(runDir);
      if (!run || run.status === 'running') return;
      subscription.dispose();
      resolve(run);
    };
    const subscription = store.onDidChange(check);
  });
  void ended.then((run) => notifyRunEnded(runName(store, run), run));
  showProgress(store, runDir, ended, true);
}

function showProgress(store: RunStore, runDir: string, ended: Promise<RunSummary>, cancellable: boolean): void {
  const run = store.get(runDir);
  if (!run) {
    // Launched, but its run.json is not read yet: the notification waits for it, so it names the run by its name.
    const appeared = store.onDidChange(() => {
      if (!store.get(runDir)) return;
      appeared.dispose();
      showProgress(store, runDir, ended, cancellable);
    });
    void ended.then(() => appeared.dispose());
    return;
  }
  const name = runName(store, run);
  const title = cancellable ? `Training ${name}` : `Cancelling ${name}: the worker finishes its step and writes a checkpoint`;
  void vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable }, (progress, token) =>
    new Promise<void>((resolve) => {
      let reported = 0;
      const update = () => {
        const run = store.get(runDir);
        if (!run?.totalSteps || run.step === undefined) return;
        const done = (100 * run.step) / run.totalSteps;
        progress.report({ increment: done - reported, message: `step ${run.step}/${run.totalSteps}, loss ${run.lastLoss?.toFixed(3) ?? '…'}` });
        reported = done;
      };
      update();
      const subscription = store.onDidChange(update);
      const finish = () => {
        subscription.dispose();
        resolve();
      };
      void ended.then(finish);
      token.onCancellationRequested(() => {
        // The notification closes on the click; it comes back as "cancelling…" or, kept, as it was.
        finish();
        void (async () => {
          const run = store.get(runDir);
          if (run?.status !== 'running') return;
          if (!(await confirmCancel([runName(store, run)]))) return showProgress(store, runDir, ended, true);
          const current = store.get(runDir);
          if (current?.status === 'running' && cancelRun(current)) showProgress(store, runDir, ended, false);
        })();
      });
    }),
  );
}

/** A training run's closing notification, with what to do next. */
function notifyRunEnded(named: string, run: RunSummary): Promise<void> {
  if (run.status !== 'succeeded' && run.status !== 'failed' && run.status !== 'cancelled') return Promise.resolve();
  const steps = run.totalSteps ? `${run.step ?? 0}/${run.totalSteps} steps` : undefined;
  const message =
    run.status === 'succeeded'
      ? `${named} trained: ${[steps, run.lastLoss !== undefined ? `final loss ${run.lastLoss.toFixed(4)}` : undefined].filter(Boolean).join(', ')}. Next: evaluate, export or compare it.`
      : run.status === 'cancelled'
        ? `${named} cancelled at step ${run.step ?? 0}${run.checkpoints ? '; its checkpoint is kept, so it can resume from there' : ''}.`
        : `${named} failed${run.error ? `: ${run.error}` : ''}.`;
  return notifyFinished({ verb: 'train', status: run.status, runDir: run.runDir, resumable: isResumable(run) }, message);
}

function runsFromArgs(s: RunServices, arg: unknown, selection: readonly RunSummary[] = []): RunSummary[] {
  const many = Array.isArray(arg) ? arg : arg ? [arg] : [...selection];
  return many
    .map((r) => (typeof r === 'string' ? s.store.get(r) : (r as RunSummary)?.runDir ? s.store.get((r as RunSummary).runDir) : undefined))
    .filter((r): r is RunSummary => !!r);
}

export interface RunPurpose {
  /** What the runs are picked for, e.g. "cancel". */
  action: string;
  applies: (run: RunSummary) => boolean;
  many: boolean;
}

/**
 * The runs a command acts on: those it was invoked on (tree item, multi-selection), else the selected
 * runs it applies to, else a pick among all runs it applies to. From the palette it therefore never
 * silently does nothing: it asks, or says there is no such run.
 */
export async function chooseRuns(s: RunServices, arg: unknown, selection: readonly RunSummary[], purpose: RunPurpose): Promise<RunSummary[]> {
  if (arg) return runsFromArgs(s, arg);
  const selected = runsFromArgs(s, undefined, selection).filter(purpose.applies);
  if (selected.length) return purpose.many ? selected : selected.slice(0, 1);
  const candidates = s.store.list().filter(purpose.applies);
  if (!candidates.length) {
    void vscode.window.showInformationMessage(`There is no run to ${purpose.action}.`);
    return [];
  }
  // By the name the tree shows; the folder id beside it tells two runs of one name apart.
  const items = candidates.map((run) => ({ label: runName(s.store, run), description: `${runLine(run)} · ${run.id}`, run }));
  const title = `Run to ${purpose.action}`;
  if (purpose.many) return ((await vscode.window.showQuickPick(items, { title, canPickMany: true })) ?? []).map((i) => i.run);
  const picked = await vscode.window.showQuickPick(items, { title });
  return picked ? [picked.run] : [];
}

function runLine(run: RunSummary): string {
  const parts = [run.verb, run.keep !== undefined ? `keep ${run.keep}` : '', run.totalSteps ? `step ${run.step ?? 0}/${run.totalSteps}` : '', run.status];
  return parts.filter(Boolean).join(' · ');
}

export function openRuns(s: RunServices, runs: RunSummary[]): void {
  if (runs.length) RunPanel.show(s.extensionUri, s.store, runs, (line) => s.log.warn(line));
}

/**
 * Only runs whose worker is provably ours are "running"; cancelRun checks that again at the moment it signals,
 * which is after the user confirmed (a run may have ended while the dialog was open).
 */
export async function cancelRuns(store: RunStore, runs: RunSummary[]): Promise<void> {
  const live = runs.filter((run) => run.status === 'running');
  if (live.length && !(await confirmCancel(live.map((r) => runName(store, r))))) return;
  const refused = runs.filter((run) => run.status !== 'running' || !cancelRun(run));
  if (refused.length) {
    void vscode.window.showWarningMessage(
      `${refused.map((r) => r.id).join(', ')}: no worker started by L³Prune runs ${refused.length === 1 ? 'this run' : 'these runs'} here, so there is nothing to cancel.`,
    );
  }
}

export async function resumeRun(s: RunServices, run: RunSummary | undefined): Promise<void> {
  if (!run) return;
  if (!isResumable(run)) {
    void vscode.window.showInformationMessage(`Run ${run.id} cannot be resumed: only a failed or cancelled training run can.`);
    return;
  }
  await vscode.tasks.executeTask(createTrainTask({ type: 'l3prune', verb: 'train', model: run.model ?? '', keep: run.keep ?? 1, data: '', resumeRunDir: run.runDir }, s.trainTasks));
}

export async function deleteRuns(s: RunServices, runs: RunSummary[]): Promise<void> {
  const live = runs.filter((r) => r.status === 'running');
  if (live.length) {
    void vscode.window.showWarningMessage(`Cancel ${live.map((r) => r.id).join(', ')} before deleting it.`);
    return;
  }
  if (!runs.length) return;
  const confirm = 'Delete';
  const choice = await vscode.window.showWarningMessage(
    `Delete ${runs.length === 1 ? `run ${runs[0].id}` : `${runs.length} runs`} and everything in ${runs.length === 1 ? 'its folder' : 'their folders'} (checkpoints, adapter, merged model)?`,
    { modal: true },
    confirm,
  );
  if (choice !== confirm) return;
  for (const run of runs) await s.store.delete(run.runDir);
}
