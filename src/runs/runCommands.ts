import * as path from 'node:path';
import * as vscode from 'vscode';
import { inspectModel } from '../model/inspect';
import { formatGiB } from '../shared/format/units';
import { TRAIN_DEFAULTS } from '../shared/protocol/generated/defaults';
import type { ResourcePlan } from '../shared/prune/resources';
import type { RunServices } from '../services';
import { RunPanel } from '../views/runPlots';
import type { DevicesReport } from '../shared/protocol/generated/devices-report';
import { cancelRun } from './trainLauncher';
import { confirmCancel } from './cancelConfirm';
import { notifyFinished } from '../workspace/nextStepsHost';
import { devicePlansSummary, planLaunch, type DevicePlans } from './devicePlans';
import { checkDevices } from './trainDevices';
import type { TrainRecipe } from './trainDefinition';
import { createTrainTask, type TrainTaskDefinition } from './trainTask';
import { isResumable, type RunStore, type RunSummary } from './runStore';

export { devicePlansSummary, planSummary } from './devicePlans';

export interface TrainChoice {
  model: string;
  keep: number;
  numLayers: number;
  data: string;
}

/** Asks for steps and any recipe changes, then starts the run as a VS Code task. */
export async function startTraining(s: RunServices, choice: TrainChoice): Promise<void> {
  const keepText = await vscode.window.showInputBox({
    title: `Prune ${path.basename(choice.model)}: layers to keep`,
    value: String(choice.keep),
    validateInput: (v) => (isWhole(v, 1, choice.numLayers) ? undefined : `a whole number from 1 to ${choice.numLayers}`),
  });
  if (!keepText) return;
  const stepsText = await vscode.window.showInputBox({
    title: 'Training steps',
    prompt: 'The paper trains 1000 steps with batch 64 on a GPU; a few hundred small steps show the loss falling on a CPU.',
    value: String(TRAIN_DEFAULTS.steps),
    validateInput: (v) => (isWhole(v, 1, 10_000_000) ? undefined : 'a positive whole number'),
  });
  if (!stepsText) return;
  const keep = Number(keepText);
  const steps = Number(stepsText);
  // The plan before the launch: on the device the worker would use, for the recipe as it is being edited.
  const stack = await inspectModel(choice.model).catch(() => undefined);
  const report = await s.devices(vscode.Uri.file(choice.model));
  const planFor = (recipe: TrainRecipe, devices: string): DevicePlans | undefined =>
    stack && report ? planLaunch(stack, { ...recipe, steps }, keep, devices, report) : undefined;
  const launch = { devices: TRAIN_DEFAULTS.devices };
  const recipe = await editRecipe(planFor, launch, report);
  if (!recipe) return;
  const definition: TrainTaskDefinition = {
    type: 'l3prune',
    verb: 'train',
    model: choice.model,
    keep,
    data: choice.data,
    steps,
    ...(launch.devices !== TRAIN_DEFAULTS.devices ? { devices: launch.devices } : {}),
    recipe,
  };
  const plan = planFor(recipe, launch.devices);
  if (plan) s.log.info(`plan for ${path.basename(choice.model)} keep ${keep}: ${devicePlansSummary(plan)}`);
  await vscode.tasks.executeTask(createTrainTask(definition, s.trainTasks));
}

const EDITABLE: Array<{ field: keyof TrainRecipe; label: string; kind: 'int' | 'float' | 'optionalInt' }> = [
  { field: 'batchSize', label: 'Batch size per device', kind: 'int' },
  { field: 'maxLength', label: 'Max length (tokens)', kind: 'int' },
  // The gradient cache: the batch's gradient at the activation memory of this many texts (64 × 512 on one GPU).
  { field: 'miniBatchSize', label: 'Gradient cache: texts per chunk', kind: 'optionalInt' },
  { field: 'learningRate', label: 'Learning rate', kind: 'float' },
  { field: 'warmupSteps', label: 'Warm-up steps', kind: 'int' },
  { field: 'loraR', label: 'LoRA rank', kind: 'int' },
  { field: 'checkpointEvery', label: 'Checkpoint every (steps)', kind: 'int' },
];



/**
 * The recipe form. With a plan, it heads the list (peak memory, fit, time) and follows every change; starting a
 * run that would not fit asks first and offers the changes that make it fit.
 */
async function editRecipe(
  planFor: (recipe: TrainRecipe, devices: string) => DevicePlans | undefined,
  launch: { devices: string },
  report: DevicesReport | undefined,
): Promise<TrainRecipe | undefined> {
  const recipe: TrainRecipe = {};
  for (;;) {
    const current = { ...TRAIN_DEFAULTS, ...recipe };
    const plans = planFor(recipe, launch.devices);
    const plan = plans?.plan;
    const start = {
      label: '$(play) Start training',
      description: plans ? devicePlansSummary(plans) : 'with the values below',
      detail: plan ? `resource plan for ${planDevice(plan)}: ${plan.terms.map((t) => `${t.name} ${formatGiB(t.bytes)}`).join(', ')}` : undefined,
      field: undefined as keyof TrainRecipe | 'devices' | undefined,
    };
    const devicesRow = { label: 'Devices (one process each)', description: launch.devices, field: 'devices' as const };
    const picked = await vscode.window.showQuickPick(
      [start, devicesRow, ...EDITABLE.map((e) => ({ label: e.label, description: current[e.field] === null ? 'off' : String(current[e.field]), field: e.field as keyof TrainRecipe | 'devices' | undefined }))],
      { title: 'Recipe (the paper’s defaults; every field can also be set in tasks.json)', matchOnDetail: false },
    );
    if (!picked) return undefined;
    if (picked.field === 'devices') {
      const seen = report?.cuda.length ? report.cuda.map((g) => `cuda:${g.index} ${g.name}`).join(', ') : 'no CUDA device';
      const value = await vscode.window.showInputBox({
        title: 'Devices',
        prompt: `auto, cpu, cpu:K, cuda:N, cuda:N,M,… or all; more than one starts torchrun (this machine: ${seen})`,
        value: launch.devices,
        validateInput: (v) => checkDevices(v.trim(), report),
      });
      if (value) launch.devices = value.trim();
      continue;
    }
    if (!picked.field) {
      if (plan?.fits !== false) return recipe;
      const fix = await confirmWontFit(plan);
      if (fix === 'anyway') return recipe;
      if (fix) Object.assign(recipe, fix);
      continue;
    }
    const editable = EDITABLE.find((e) => e.field === picked.field)!;
    const optional = editable.kind === 'optionalInt';
    const value = await vscode.window.showInputBox({
      title: editable.label,
      prompt: optional ? 'empty: off, the whole batch at once' : undefined,
      value: current[editable.field] === null ? '' : String(current[editable.field]),
      validateInput: (v) => {
        if (optional && v.trim() === '') return undefined;
        if (editable.kind === 'float') return Number(v) > 0 ? undefined : 'a positive number';
        return isWhole(v, 1, 1e9) ? undefined : optional ? 'a positive whole number, or empty for off' : 'a positive whole number';
      },
    });
    if (value === undefined || (!optional && !value)) continue;
    (recipe as Record<string, number | null>)[editable.field] = optional && value.trim() === '' ? null : Number(value);
  }
}

function planDevice(plan: ResourcePlan['train']): string {
  const r = plan.recipe;
  return `batch ${r.batchSize} × ${r.maxLength}, ${r.precision}, checkpointing ${r.gradientCheckpointing ? 'on' : 'off'}${r.miniBatchSize ? `, cache ${r.miniBatchSize}` : ''}`;
}

/** Never a silent launch into an out-of-memory: the changes that fit, or an explicit "start anyway". */
async function confirmWontFit(plan: ResourcePlan['train']): Promise<Partial<TrainRecipe> | 'anyway' | undefined> {
  type Choice = vscode.MessageItem & { change: Partial<TrainRecipe> | 'anyway' };
  const options: Choice[] = plan.advice.map((a) => ({ title: a.text, change: a.change as Partial<TrainRecipe> }));
  const anyway: Choice = { title: 'Start Anyway', change: 'anyway' };
  const picked = await vscode.window.showWarningMessage<Choice>(
    `This run would need ${formatGiB(plan.peakBytes)} of accelerator memory (${planDevice(plan)}) and would run out of memory.`,
    {
      modal: true,
      detail: options.length
        ? 'Each of these changes makes it fit (the same gradient, at the cost of time):'
        : 'No recipe change is enough: keep fewer layers or use a device with more memory.',
    },
    ...options,
    anyway,
  );
  return picked?.change;
}

function isWhole(text: string, min: number, max: number): boolean {
  return /^\d+$/.test(text.trim()) && Number(text) >= min && Number(text) <= max;
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
  void ended.then((run) => notifyRunEnded(run));
  showProgress(store, runDir, ended, true);
}

function showProgress(store: RunStore, runDir: string, ended: Promise<RunSummary>, cancellable: boolean): void {
  const name = path.basename(runDir);
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
          if (!(await confirmCancel([run.id]))) return showProgress(store, runDir, ended, true);
          const current = store.get(runDir);
          if (current?.status === 'running' && cancelRun(current)) showProgress(store, runDir, ended, false);
        })();
      });
    }),
  );
}

/** A training run's closing notification, with what to do next. */
function notifyRunEnded(run: RunSummary): Promise<void> {
  if (run.status !== 'succeeded' && run.status !== 'failed' && run.status !== 'cancelled') return Promise.resolve();
  const what = [run.model ? path.basename(run.model) : undefined, run.keep !== undefined ? `keep ${run.keep}` : undefined].filter(Boolean).join(' · ');
  const named = `Run ${run.id}${what ? ` (${what})` : ''}`;
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
  const items = candidates.map((run) => ({ label: run.id, description: runLine(run), run }));
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
export async function cancelRuns(runs: RunSummary[]): Promise<void> {
  const live = runs.filter((run) => run.status === 'running');
  if (live.length && !(await confirmCancel(live.map((r) => r.id)))) return;
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
