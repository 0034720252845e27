import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Services } from '../services';
import { formatBytes, formatParams, formatRoughDuration } from '../shared/format/units';
import { EVALUATE_DEFAULTS, EXPORT_ONNX_DEFAULTS } from '../shared/protocol/generated/defaults';
import { referenceConditions, variantRows, type EvalConditions, type VariantRow } from '../shared/compare/variants';
import type { LayerStack } from '../shared/model/stack';
import { planKeep } from '../shared/prune/plan';
import { chosenTasks, taskRows, type TaskRow } from '../shared/compare/evaluationTasks';
import { newRunDir, runsRoot } from '../runs/runLocation';
import type { RunSummary } from '../runs/runStore';
import { ComparePanel } from '../views/comparePanel';
import { revealPath } from '../views/reveal';
import type { ModelsNode } from '../views/modelsTree';
import { findPython, WorkspaceNotTrustedError } from '../worker/python';
import { refusedCode } from '../worker/remoteCodeDialog';
import { ensureWorkerPackage } from '../worker/workerPackage';
import { isDatasetsOffline, ONLINE_ENV } from '../worker/modelDownload';
import { runWithProgress } from '../worker/workerProgress';
import { notifyFinished } from '../workspace/nextStepsHost';
import { OrtNodeSpeeds } from './ortNodeSpeeds';
import { countsText, countTaskExamples, estimateSeconds, lastEvaluationOf, workerDataDir } from './evaluationEstimate';
import { runEvaluate, runExportOnnx, variantLabel, variantModelFolders, type ExportPrecision, type OnnxTarget, type Variant } from './variantRuns';

const MAX_EXAMPLES_KEY = 'l3prune.evaluate.maxExamples';

export interface ChosenVariant {
  variant: Variant;
  label: string;
}

const isSucceededTrainRun = (run: RunSummary): boolean => run.verb === 'train' && run.status === 'succeeded';

function trainedVariant(run: RunSummary): ChosenVariant {
  const variant: Variant = { kind: 'trained', model: run.model ?? '', keep: run.keep ?? 0, fromRun: run.runDir };
  return { variant, label: variantLabel(variant, run.model ? path.basename(run.model) : run.id) };
}

/** A run handed over by the Runs tree (its item, or its folder as a string) rather than a model. */
function runFromArg(s: Services, arg: unknown): RunSummary | undefined {
  if (typeof arg === 'string') return s.store.get(arg);
  const runDir = (arg as RunSummary | undefined)?.runDir;
  return typeof runDir === 'string' ? s.store.get(runDir) : undefined;
}

function modelFromArg(arg: unknown): { model: string; keep?: number } | undefined {
  if (typeof arg === 'string' && arg.trim()) return { model: arg };
  if (arg instanceof vscode.Uri) return { model: arg.fsPath };
  const node = arg as ModelsNode | undefined;
  if (node?.kind === 'model') return { model: node.model.path };
  if (node?.kind === 'cut') return { model: node.modelPath, keep: node.variant === 'small' ? node.analysis.small : node.analysis.large };
  return undefined;
}

async function encoderStack(s: Services, modelPath: string): Promise<LayerStack> {
  const entry = s.registry.get(modelPath);
  const stack = entry?.state === 'ready' ? entry.stack : await s.registry.open(modelPath);
  if (stack.source !== 'safetensors' || stack.path.endsWith('.safetensors')) {
    throw new Error(`${stack.name}: the worker needs a Hugging Face model folder (config.json, tokenizer and safetensors), not an ${stack.source} file.`);
  }
  return stack;
}

/**
 * Which variant to act on: the run or model the command was invoked on (Runs or Models tree, a path),
 * else a pick among finished training runs (those selected in the Runs tree first) and open models.
 */
export async function chooseVariant(s: Services, arg: unknown, action: string): Promise<ChosenVariant | undefined> {
  const run = runFromArg(s, arg);
  if (run) {
    if (!isSucceededTrainRun(run)) throw new Error(`Run ${run.id} is not a finished training run; ${action} a model, or a training run that succeeded.`);
    return trainedVariant(run);
  }
  const given = modelFromArg(arg);
  if (given) return chooseLayers(s, await encoderStack(s, given.model), given.keep);

  const selected = new Set(s.runsView.selection.filter(isSucceededTrainRun).map((r) => r.runDir));
  const runs = s.store.list().filter(isSucceededTrainRun).sort((a, b) => Number(selected.has(b.runDir)) - Number(selected.has(a.runDir)));
  const models = s.registry.list().filter((m) => m.state === 'ready' && m.stack.source === 'safetensors' && !m.stack.path.endsWith('.safetensors'));
  if (!runs.length && !models.length) {
    const open = 'Open Model Folder…';
    const choice = await vscode.window.showInformationMessage(`Open a model folder (or finish a training run) to ${action} it.`, open);
    if (choice !== open) return undefined;
    const stack = await vscode.commands.executeCommand<LayerStack | undefined>('l3prune.openModelFolder');
    return stack ? chooseLayers(s, await encoderStack(s, stack.path)) : undefined;
  }
  type Item = vscode.QuickPickItem & { run?: RunSummary; model?: string };
  const items: Item[] = [];
  if (runs.length) items.push({ label: 'Trained variants', kind: vscode.QuickPickItemKind.Separator });
  for (const r of runs) {
    const { label } = trainedVariant(r);
    items.push({ label: `$(beaker) ${label}`, description: r.id, detail: `finetuned by ${r.id}${r.lastLoss !== undefined ? `, final loss ${r.lastLoss.toFixed(3)}` : ''}`, run: r });
  }
  if (models.length) items.push({ label: 'Models (choose the layers to keep next)', kind: vscode.QuickPickItemKind.Separator });
  for (const m of models) {
    if (m.state !== 'ready') continue;
    items.push({ label: `$(layers) ${m.stack.name}`, description: `${m.stack.numLayers} layers · ${formatParams(m.stack.totalParams)} params`, detail: m.path, model: m.path });
  }
  const picked = await vscode.window.showQuickPick(items, { title: `Variant to ${action}`, matchOnDescription: true, matchOnDetail: true });
  if (picked?.run) return trainedVariant(picked.run);
  if (picked?.model) return chooseLayers(s, await encoderStack(s, picked.model));
  return undefined;
}

/** How many layers of a model to keep: all, one of L³Prune's cuts, or any other count. */
async function chooseLayers(s: Services, stack: LayerStack, given?: number): Promise<ChosenVariant | undefined> {
  const n = stack.layers.length;
  const base = (keep: number): ChosenVariant => {
    const variant: Variant = { kind: 'base', model: stack.path, keep, numLayers: n };
    return { variant, label: variantLabel(variant, stack.name) };
  };
  if (given !== undefined) return base(given);
  const analysis = s.analyses.get(stack.path);
  const describe = (keep: number) => `${formatParams(planKeep(stack, keep).params)} params, ${formatBytes(planKeep(stack, keep).bytes)}`;
  type Item = vscode.QuickPickItem & { keep?: number };
  const items: Item[] = [{ label: `Full model: all ${n} layers`, description: describe(n), keep: n }];
  if (analysis) {
    items.push(
      { label: `L³Prune small cut: keep ${analysis.small}`, description: describe(analysis.small), keep: analysis.small },
      { label: `L³Prune large cut: keep ${analysis.large}`, description: describe(analysis.large), keep: analysis.large },
    );
  }
  items.push({ label: 'Another number of layers…', description: analysis ? undefined : 'Compute Initial Loss… proposes L³Prune’s two cuts' });
  const picked = await vscode.window.showQuickPick(items, { title: `${stack.name}: layers to keep` });
  if (!picked) return undefined;
  if (picked.keep !== undefined) return base(picked.keep);
  const typed = await vscode.window.showInputBox({
    title: `${stack.name}: layers to keep (the first n)`,
    value: String(analysis?.small ?? Math.max(1, Math.floor(n / 2))),
    validateInput: (v) => (/^\d+$/.test(v.trim()) && Number(v) >= 1 && Number(v) <= n ? undefined : `a whole number from 1 to ${n}`),
  });
  return typed ? base(Number(typed)) : undefined;
}

export async function workerPython(s: Services, variant: Variant): Promise<string | undefined> {
  const python = await findPython(vscode.Uri.file(variant.kind === 'trained' ? variant.fromRun : variant.model));
  s.log.info(`worker interpreter: ${python.executable} (${python.source})`);
  return (await ensureWorkerPackage(python.executable, s.extensionUri, s.log)) ? python.executable : undefined;
}

/** The worker's smallest cap per task (evaluateSpecInput.maxExamples): fewer examples give no score. */
const MIN_EXAMPLES = 4;

/** `l3prune.evaluationDataDir`, relative paths from the workspace folder; unset: the worker's own default. */
function evaluationDataDir(): string | undefined {
  const configured = vscode.workspace.getConfiguration('l3prune').get<string>('evaluationDataDir')?.trim();
  if (!configured) return undefined;
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  return folder ? path.resolve(folder, configured) : path.resolve(configured);
}

/** Built-in and MTEB tasks the worker was asked for (its started event repeats the resolved spec). */
function taskCount(spec: unknown): number {
  const { tasks, mtebTasks } = (spec ?? {}) as { tasks?: unknown; mtebTasks?: unknown };
  return (Array.isArray(tasks) ? tasks.length : 0) + (Array.isArray(mtebTasks) ? mtebTasks.length : 0);
}

/** The folder the worker will read the built-in tasks from: the setting, else the worker's own default. */
async function dataDirForCounts(python: string): Promise<string | undefined> {
  return evaluationDataDir() ?? (await workerDataDir(python));
}

/** What the examples prompt is told: the model the estimate is measured on and the variant's depth. */
interface ExamplesContext {
  python: string;
  model: string;
  layers: number;
  tasks: readonly string[];
  /** The model's conditions (askConditions): the cap they last used is the prompt's value. */
  remembered?: number | null;
}

/**
 * How many examples each built-in task scores, shown with each task's count and an estimate of the run's time from
 * this model's last evaluation (its time per task and example, scaled to the variant's layers).
 */
async function askMaxExamples(s: Services, context?: ExamplesContext): Promise<number | undefined | null> {
  const remembered = context?.remembered !== undefined ? (context.remembered === null ? '' : String(context.remembered)) : s.workspaceState.get<string>(MAX_EXAMPLES_KEY, '');
  const dataDir = context?.tasks.length ? await dataDirForCounts(context.python) : undefined;
  const counts = context && dataDir ? await countTaskExamples(dataDir, context.tasks) : [];
  const measured = context ? lastEvaluationOf(s.store.list(), context.model, (r) => modelOfRun(s, r)) : undefined;
  const describe = (v: string): string => {
    const cap = /^\d+$/.test(v.trim()) ? Number(v.trim()) : undefined;
    const seconds = context ? estimateSeconds(counts, cap, context.layers, measured) : undefined;
    const time = seconds === undefined
      ? 'no time estimate yet: the first evaluation of this model measures its speed'
      : `≈ ${formatRoughDuration(seconds)} (from ${measured!.runId}, at ${measured!.layers} layers, scaled to ${context!.layers})`;
    return `${counts.length ? `${countsText(counts, cap)}. ` : ''}${time}.`;
  };
  const box = vscode.window.createInputBox();
  box.title = 'Examples per task';
  box.placeholder = 'all examples';
  box.value = remembered;
  const base = 'At most this many examples per built-in task; empty scores every example (the numbers papers report). MTEB tasks run whole.';
  const update = (v: string) => {
    const error = v.trim() === '' || (/^\d+$/.test(v.trim()) && Number(v) >= MIN_EXAMPLES) ? undefined : `a whole number from ${MIN_EXAMPLES} up, or empty for all`;
    box.validationMessage = error;
    box.prompt = `${base} ${describe(v)}`;
  };
  update(remembered);
  const text = await new Promise<string | undefined>((resolve) => {
    box.onDidChangeValue(update);
    box.onDidAccept(() => {
      if (box.validationMessage) return;
      resolve(box.value);
      box.hide();
    });
    box.onDidHide(() => {
      resolve(undefined);
      box.dispose();
    });
    box.show();
  });
  if (text === undefined) return null;
  await s.workspaceState.update(MAX_EXAMPLES_KEY, text.trim());
  return text.trim() ? Number(text) : undefined;
}

const CONDITIONS_KEY = 'l3prune.evaluate.conditions';

/** The conditions an evaluation is asked for (examples per task come from their own prompt). */
type AskedConditions = Pick<EvalConditions, 'maxLength' | 'batchSize' | 'device'> & { maxExamples?: number | null };

/** The base model an evaluate run scored, as the Compare rows group it (a trained variant by its train run's model). */
function modelOfRun(s: Services, run: RunSummary): string | undefined {
  return (run.fromRun ? s.store.get(run.fromRun)?.model : undefined) ?? run.model;
}

/**
 * The conditions a model's next evaluation defaults to, and why: those last chosen for it, else those most of its
 * evaluations used (Compare's reference for its rows), else the one fixed default (the worker's: max length 512, the paper's evaluation length). The same
 * for every variant of the model, so its rows compare.
 */
function modelConditions(s: Services, model: string): { conditions: AskedConditions; source: string } {
  const remembered = s.workspaceState.get<Record<string, AskedConditions>>(CONDITIONS_KEY, {})[model];
  if (remembered) return { conditions: remembered, source: `the conditions last chosen for ${path.basename(model)}, so its variants compare` };
  const c = referenceConditions(variantRows(s.store.list()).filter((r) => r.model === model && !r.onnx)).get(model);
  if (c) {
    return { conditions: { maxLength: c.maxLength, batchSize: c.batchSize, device: c.device, maxExamples: c.maxExamples }, source: `those most evaluations of ${path.basename(model)} used (Compare’s reference), so its variants compare` };
  }
  return {
    conditions: { maxLength: EVALUATE_DEFAULTS.maxLength, batchSize: EVALUATE_DEFAULTS.batchSize, device: EVALUATE_DEFAULTS.device },
    source: `the defaults (max length ${EVALUATE_DEFAULTS.maxLength} is the paper’s evaluation length), used for every variant of ${path.basename(model)} until you change them`,
  };
}

const conditionsLine = (c: AskedConditions) => `max length ${c.maxLength} · batch size ${c.batchSize} · device ${c.device}`;

/** One pick: accept the model's conditions, or change one field and come back to it. */
async function askConditions(s: Services, model: string): Promise<AskedConditions | undefined> {
  const { conditions: initial, source } = modelConditions(s, model);
  let c: AskedConditions = { ...initial };
  type Item = vscode.QuickPickItem & { field?: 'maxLength' | 'batchSize' | 'device' };
  for (;;) {
    const changed = JSON.stringify(c) !== JSON.stringify(initial);
    const items: Item[] = [
      { label: '$(check) Evaluate under these conditions', description: `${conditionsLine(c)}${c.maxExamples !== undefined ? ` · examples per task ${c.maxExamples ?? 'all'} (asked next)` : ''}`, detail: changed ? `changed from ${conditionsLine(initial)}: other variants of this model then differ (Compare flags them)` : source },
      { label: `Max length: ${c.maxLength}`, detail: 'tokens per text after truncation, whatever the variant was trained with', field: 'maxLength' },
      { label: `Batch size: ${c.batchSize}`, detail: 'texts per forward pass, also the batch the latency is timed on', field: 'batchSize' },
      { label: `Device: ${c.device}`, detail: 'auto: a CUDA device when there is one, else the CPU', field: 'device' },
    ];
    const picked = await vscode.window.showQuickPick(items, {
      title: `Evaluation conditions for ${path.basename(model)}`,
      placeHolder: 'The same conditions for every variant of a model make their scores and latencies comparable',
    });
    if (!picked) return undefined;
    if (!picked.field) break;
    const field = picked.field;
    const value = await vscode.window.showInputBox({
      title: picked.label.split(':')[0],
      value: String(c[field]),
      validateInput: (v) => {
        if (field === 'device') return /^(auto|cpu|cuda(:[0-9]+)?)$/.test(v.trim()) ? undefined : 'auto, cpu, cuda or cuda:N';
        const min = field === 'maxLength' ? 2 : 1;
        return /^\d+$/.test(v.trim()) && Number(v) >= min ? undefined : `a whole number from ${min} up`;
      },
    });
    if (value !== undefined) c = { ...c, [field]: field === 'device' ? value.trim() : Number(value) };
  }
  return c;
}

async function rememberConditions(s: Services, model: string, c: AskedConditions): Promise<void> {
  const all = s.workspaceState.get<Record<string, AskedConditions>>(CONDITIONS_KEY, {});
  await s.workspaceState.update(CONDITIONS_KEY, { ...all, [model]: c });
}

type TaskItem = vscode.QuickPickItem & { row?: TaskRow };

const taskItems = (rows: TaskRow[]): TaskItem[] =>
  rows.map((row) => (row.heading ? { label: row.label, kind: vscode.QuickPickItemKind.Separator } : { label: row.label, description: row.description, detail: row.detail, row }));

/**
 * Which tasks: the five built-in ones (picked) at once, the MTEB tasks of the worker's mteb added when the worker
 * has listed them (importing mteb takes seconds), keeping whatever the user ticked meanwhile.
 */
async function askTasks(s: Services, python: string): Promise<ReturnType<typeof chosenTasks> | undefined> {
  const offline = isDatasetsOffline();
  const pick = vscode.window.createQuickPick<TaskItem>();
  pick.title = 'Tasks to evaluate';
  pick.canSelectMany = true;
  pick.matchOnDescription = true;
  pick.matchOnDetail = true;
  pick.placeholder = 'Listing the MTEB tasks of the worker’s mteb…';
  pick.items = taskItems(taskRows(undefined, offline));
  pick.selectedItems = pick.items.filter((i) => i.row?.picked);
  pick.busy = true;
  let open = true;
  void s.mtebTasks.get(python).then((report) => {
    if (!open) return;
    const ticked = new Set(pick.selectedItems.map((i) => i.label));
    pick.items = taskItems(taskRows(report, offline));
    pick.selectedItems = pick.items.filter((i) => i.row && ticked.has(i.label));
    pick.busy = false;
    pick.placeholder = typeof report === 'string'
      ? `Built-in tasks only: ${report}`
      : `Built-in tasks, and ${report.tasks.length} MTEB tasks (${report.tasks.filter((t) => t.cached).length} cached)${offline ? '; the environment says offline, so only cached ones' : ''}`;
  });
  return new Promise((resolve) => {
    pick.onDidAccept(() => {
      const picked = chosenTasks(pick.selectedItems.flatMap((i) => (i.row ? [i.row] : [])));
      if (!picked.tasks.length && !picked.mtebTasks.length) {
        pick.placeholder = 'Tick at least one task';
        return;
      }
      resolve(picked);
      pick.hide();
    });
    pick.onDidHide(() => {
      open = false;
      resolve(undefined);
      pick.dispose();
    });
    pick.show();
  });
}

/** The user's consent to fetch the data of MTEB tasks the datasets cache lacks; never read from a file. */
async function allowTaskDownload(names: string[]): Promise<boolean> {
  if (!names.length) return false;
  const download = 'Download';
  const shown = names.slice(0, 5).join(', ') + (names.length > 5 ? ` and ${names.length - 5} more` : '');
  const choice = await vscode.window.showWarningMessage(
    `Download the data of ${names.length === 1 ? 'an MTEB task' : `${names.length} MTEB tasks`} (${shown}) from the Hugging Face hub?`,
    { modal: true, detail: 'The worker fetches each task’s dataset into your Hugging Face datasets cache, so later evaluations run offline. Large retrieval corpora can take gigabytes.' },
    download,
  );
  return choice === download;
}

export async function evaluateVariant(s: Services, arg: unknown): Promise<void> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  const chosen = await chooseVariant(s, arg, 'evaluate');
  if (!chosen) return;
  const python = await workerPython(s, chosen.variant);
  if (!python) return;
  const picked = await askTasks(s, python);
  if (!picked) return;
  const allowDownload = await allowTaskDownload(picked.toDownload);
  if (picked.toDownload.length && !allowDownload) return;
  const conditions = await askConditions(s, chosen.variant.model);
  if (!conditions) return;
  const maxExamples = picked.tasks.length
    ? await askMaxExamples(s, { python, model: chosen.variant.model, layers: chosen.variant.keep, tasks: picked.tasks, remembered: conditions.maxExamples })
    : undefined;
  if (maxExamples === null) return;
  const trust = await s.consent.decide(variantModelFolders(chosen.variant));
  if (trust === 'refused') return refusedCode(chosen.variant.model);
  await rememberConditions(s, chosen.variant.model, { ...conditions, maxExamples: maxExamples ?? null });
  const runDir = await newRunDir(runsRoot(s.globalStorageUri), 'evaluate');
  s.log.info(`evaluate ${chosen.label} → ${runDir}`);
  let tasks = 0;
  let scored = 0;
  const outcome = await runWithProgress({
    title: `Evaluating ${chosen.label}`,
    what: 'Evaluation',
    start: (onEvent, token) =>
      runEvaluate({
        python, runDir, variant: chosen.variant, tasks: picked.tasks, mtebTasks: picked.mtebTasks, allowDownload, maxExamples,
        maxLength: conditions.maxLength, batchSize: conditions.batchSize, device: conditions.device,
        dataDir: evaluationDataDir(), trustRemoteCode: trust === 'trusted', env: allowDownload ? { ...ONLINE_ENV } : undefined,
      }, onEvent, token),
    progressOf: (event) => {
      if (event.event === 'started') tasks = taskCount(event.spec);
      if (event.event === 'model_loaded') return { message: 'model loaded' };
      // Batches count the texts of every task, so they measure the whole run; the task says where it is.
      if (event.event === 'progress' && typeof event.batch === 'number' && typeof event.batches === 'number' && event.batches > 0) {
        return { done: event.batch / event.batches, message: typeof event.task === 'string' ? `embedding ${event.task}` : undefined };
      }
      if (event.event === 'task_result') {
        scored++;
        const score = `${event.task}: ${typeof event.mainScore === 'number' ? event.mainScore.toFixed(4) : '—'}`;
        // After the last task the worker times the encoder, which on a CPU can take as long as a task.
        return { message: scored >= tasks ? `${score}; timing the encoder` : score };
      }
      return undefined;
    },
  });
  void s.store.refresh();
  if (!outcome) return;
  const { result } = outcome;
  await notifyFinished(
    { verb: 'evaluate', status: 'succeeded', runDir: outcome.runDir },
    `${chosen.label}: average score ${result.averageScore?.toFixed(4) ?? '—'} over ${Object.keys(result.scores).length} tasks, ` +
      `${result.latencyMsPerBatch.toFixed(1)} ms per batch of ${result.batchSize} (${result.device}).`,
  );
}

const PRECISION_DETAILS: Record<ExportPrecision, string> = {
  fp32: 'float32 weights; ONNX Runtime matches torch to a cosine of 0.9999',
  fp16: 'float16 weights and matmuls, half the bytes, for serving on a GPU; float32 input and output; parity to a cosine of 0.999',
  int8: 'int8 matmul weights (onnxruntime dynamic quantization), for serving on a CPU; float32 input and output; parity to a mean cosine of 0.99, min 0.98',
};

/** fp32 (the worker's default, first, so Enter takes it), fp16 or int8. */
async function askExportPrecision(): Promise<ExportPrecision | undefined> {
  const items = (['fp32', 'fp16', 'int8'] as const).map((precision) => ({
    label: precision,
    description: precision === EXPORT_ONNX_DEFAULTS.precision ? 'default' : undefined,
    detail: PRECISION_DETAILS[precision],
    precision,
  }));
  const picked = await vscode.window.showQuickPick(items, { title: 'Precision of the ONNX export' });
  return picked?.precision;
}

export async function exportVariantOnnx(s: Services, arg: unknown): Promise<void> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  const chosen = await chooseVariant(s, arg, 'export');
  if (!chosen) return;
  const precision = await askExportPrecision();
  if (!precision) return;
  const label = precision === 'fp32' ? chosen.label : `${chosen.label} · ${precision}`;
  const python = await workerPython(s, chosen.variant);
  if (!python) return;
  const trust = await s.consent.decide(variantModelFolders(chosen.variant));
  if (trust === 'refused') return refusedCode(chosen.variant.model);
  const runDir = await newRunDir(runsRoot(s.globalStorageUri), 'export-onnx');
  s.log.info(`export-onnx ${label} → ${runDir}`);
  const outcome = await runWithProgress({
    title: `Exporting ${label} to ONNX`,
    what: 'ONNX export',
    start: (onEvent, token) => runExportOnnx({ python, runDir, variant: chosen.variant, precision, trustRemoteCode: trust === 'trusted' }, onEvent, token),
    progressOf: (event) => {
      if (event.event === 'model_loaded') return { message: 'model loaded' };
      if (event.event === 'progress' && typeof event.batch === 'number' && typeof event.batches === 'number' && event.batches > 0) {
        const stage = typeof event.stage === 'string' ? STAGES[event.stage] ?? event.stage : `step ${event.batch} of ${event.batches}`;
        return { done: event.batch / event.batches, message: stage };
      }
      return undefined;
    },
  });
  void s.store.refresh();
  if (!outcome) return;
  const { result } = outcome;
  await notifyFinished(
    { verb: 'export-onnx', status: 'succeeded', runDir: outcome.runDir, outDir: result.outDir },
    `Exported ${label}: ${formatBytes(result.bytes)}, opset ${result.opset}, ${result.numLayers} layers; ` +
      `ONNX Runtime matches torch to a cosine of at least ${result.parityMinCosine.toFixed(5)}.`,
    // Short labels: after Try Encoder, four buttons share the toast's width.
    [
      { title: 'Evaluate…', run: () => evaluateExport(s, python, result.outDir, label, chosen.variant.model, result.numLayers) },
      { title: 'Open Model', run: () => vscode.commands.executeCommand('l3prune.openOnnxModel', result.path) },
      { title: 'Reveal', run: () => revealPath(result.path) },
    ],
  );
}

/**
 * evaluate --onnx on an export: the graph scored in onnxruntime on the same tasks as a torch evaluation, so the
 * Compare view shows it beside its float variant with the score change (and its onnxruntime-node speed).
 */
async function evaluateExport(s: Services, python: string, folder: string, label: string, model: string, layers: number): Promise<void> {
  // The graph is scored under its model's conditions (the CPU aside), so its row compares with its float variant.
  const { conditions } = modelConditions(s, model);
  const maxExamples = await askMaxExamples(s, { python, model, layers, tasks: EVALUATE_DEFAULTS.tasks, remembered: conditions.maxExamples });
  if (maxExamples === null) return;
  const runDir = await newRunDir(runsRoot(s.globalStorageUri), 'evaluate');
  s.log.info(`evaluate --onnx ${folder} → ${runDir}`);
  const outcome = await runWithProgress({
    title: `Evaluating ${label} (ONNX)`,
    what: 'Evaluation',
    start: (onEvent, token) =>
      runEvaluate({ python, runDir, variant: { kind: 'onnx', folder }, maxExamples, maxLength: conditions.maxLength, batchSize: conditions.batchSize, dataDir: evaluationDataDir() }, onEvent, token),
    progressOf: (event) => {
      if (event.event === 'progress' && typeof event.batch === 'number' && typeof event.batches === 'number' && event.batches > 0) {
        return { done: event.batch / event.batches, message: typeof event.task === 'string' ? `embedding ${event.task}` : undefined };
      }
      if (event.event === 'task_result') return { message: `${event.task}: ${typeof event.mainScore === 'number' ? event.mainScore.toFixed(4) : '—'}` };
      return undefined;
    },
  });
  void s.store.refresh();
  if (outcome) await vscode.commands.executeCommand('l3prune.compareVariants', outcome.runDir);
}

const STAGES: Record<string, string> = {
  reference: 'torch reference embeddings',
  export: 'tracing the graph',
  save: 'checking and writing the graph',
  parity: 'parity check in ONNX Runtime',
};

/** The comparison panel; opened on an evaluate run (tree item or its folder), that run's row is selected. */
export function compareVariants(s: Services, arg: unknown): ComparePanel {
  const run = runFromArg(s, arg);
  return ComparePanel.show(
    s.extensionUri,
    s.store,
    {
      log: (line) => s.log.warn(line),
      openRun: (chosen) => showRun(s, chosen),
      reevaluate: (flagged) => reevaluateToMatch(s, flagged),
      exportFolder: () => vscode.workspace.workspaceFolders?.[0]?.uri,
      ortNodeSpeeds: () => new OrtNodeSpeeds((line) => s.log.warn(line)),
    },
    run?.verb === 'evaluate' ? run : undefined,
  );
}

/**
 * A run the Compare detail links to. An evaluation's own page is this panel (Open Run on it shows its row here), so it is
 * shown in the Runs view, selected, with its actions; a training run opens its page (loss, learning rate, recipe).
 */
async function showRun(s: Services, run: RunSummary): Promise<void> {
  await s.runsView.reveal(run, { select: true, focus: run.verb === 'evaluate' }).then(undefined, () => undefined);
  if (run.verb !== 'evaluate') await vscode.commands.executeCommand('l3prune.openRun', run);
}

/** The variant an evaluate run scored, read back from its resolved spec (run.json): a train run, a cut model, or an export. */
function variantOfEvaluation(s: Services, run: RunSummary, row: VariantRow): Variant | OnnxTarget | undefined {
  const spec = run.record.spec as { onnx?: unknown; fromRun?: unknown; model?: unknown; keep?: unknown };
  if (typeof spec.onnx === 'string') return { kind: 'onnx', folder: spec.onnx };
  if (typeof spec.fromRun === 'string') return { kind: 'trained', model: row.model, keep: row.layers, fromRun: spec.fromRun };
  if (typeof spec.model === 'string') return { kind: 'base', model: spec.model, keep: row.layers, numLayers: row.originalLayers ?? row.layers };
  return undefined;
}

/**
 * Compare's "Re-evaluate to match": each flagged variant evaluated again on the tasks it was scored on, under its
 * model's reference conditions, one after the other; each new run becomes a row that matches the others.
 */
async function reevaluateToMatch(s: Services, flagged: ReadonlyArray<{ row: VariantRow; reference: EvalConditions }>): Promise<void> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  if (!flagged.length) return;
  const go = 'Re-evaluate';
  const lines = flagged.map(({ row, reference }) => `${row.label}: max length ${reference.maxLength}, batch size ${reference.batchSize}, examples per task ${reference.maxExamples ?? 'all'}, device ${row.onnx ? 'cpu' : reference.device}`);
  const choice = await vscode.window.showInformationMessage(
    `Re-evaluate ${flagged.length === 1 ? 'this variant' : `these ${flagged.length} variants`} under the conditions of the other variants of ${flagged.length === 1 ? 'its' : 'their'} model?`,
    { modal: true, detail: lines.join('\n') },
    go,
  );
  if (choice !== go) return;
  for (const { row, reference } of flagged) {
    const run = s.store.get(row.id);
    const variant = run && variantOfEvaluation(s, run, row);
    if (!run || !variant) {
      void vscode.window.showErrorMessage(`${row.runId}: its run.json names no model, training run or export to evaluate again; evaluate that variant with Evaluate… instead.`);
      continue;
    }
    const python = variant.kind === 'onnx'
      ? await findPython(vscode.Uri.file(variant.folder)).then(async (p) => ((await ensureWorkerPackage(p.executable, s.extensionUri, s.log)) ? p.executable : undefined))
      : await workerPython(s, variant);
    if (!python) return;
    const trust = variant.kind === 'onnx' ? 'untrusted' : await s.consent.decide(variantModelFolders(variant));
    if (trust === 'refused') return refusedCode(row.model);
    const spec = run.record.spec as { dataDir?: unknown };
    const runDir = await newRunDir(runsRoot(s.globalStorageUri), 'evaluate');
    s.log.info(`evaluate ${row.label} again under its model's conditions → ${runDir}`);
    const outcome = await runWithProgress({
      title: `Re-evaluating ${row.label}`,
      what: 'Evaluation',
      start: (onEvent, token) =>
        runEvaluate({
          python, runDir, variant, tasks: row.spec?.tasks ?? [...EVALUATE_DEFAULTS.tasks], mtebTasks: row.spec?.mtebTasks ?? [],
          maxExamples: reference.maxExamples ?? undefined, maxLength: reference.maxLength, batchSize: reference.batchSize,
          device: reference.device, dataDir: typeof spec.dataDir === 'string' ? spec.dataDir : evaluationDataDir(), trustRemoteCode: trust === 'trusted',
        }, onEvent, token),
      progressOf: (event) => {
        if (event.event === 'progress' && typeof event.batch === 'number' && typeof event.batches === 'number' && event.batches > 0) {
          return { done: event.batch / event.batches, message: typeof event.task === 'string' ? `embedding ${event.task}` : undefined };
        }
        return undefined;
      },
    });
    await s.store.refresh();
    if (!outcome) return;
  }
}
