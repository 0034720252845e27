import * as path from 'node:path';
import * as vscode from 'vscode';
import type { LayerStack } from './shared/model/stack';
import { planKeep } from './shared/prune/plan';
import { profileFromReport } from './shared/prune/resources';
import { compareVariants, evaluateVariant, exportVariantOnnx } from './compare/variantCommands';
import { encodeTexts, exportSentenceTransformers } from './compare/encoderOutCommands';
import { runAnalyze } from './runs/analyzeRun';
import { newRunDir, runsRoot } from './runs/runLocation';
import { formatBytes, formatParams, formatShare, formatGiB } from './shared/format/units';
import { cachedRepoOf, findCachedSnapshot, hubCacheDir, parseRepoRef } from './model/hfCache';
import { LayerStackPanel } from './views/layerStackPanel';
import type { ModelsNode } from './views/modelsTree';
import { findPython, WorkspaceNotTrustedError } from './worker/python';
import { refusedCode } from './worker/remoteCodeDialog';
import { convertPickleWeights } from './worker/convertWeights';
import { downloadIntoCache } from './worker/modelDownloadDialog';
import { ensureWorkerPackage } from './worker/workerPackage';
import { runWithProgress } from './worker/workerProgress';
import { notifyFinished } from './workspace/nextStepsHost';
import { tryEncoder } from './inference/tryEncoderCommand';
import { DataPreviewPanel } from './views/dataPreviewPanel';
import { revealPath } from './views/reveal';
import { PREVIEW_DATA_DEFAULTS } from './shared/protocol/generated/defaults';
import { cancelRuns, chooseRuns, deleteRuns, openRuns, resumeRun, startTraining, type RunPurpose } from './runs/runCommands';
import { openRunPages, renameRun } from './views/runPlots';
import { isResumable } from './runs/runStore';
import { refusedDataOf, stillRefused } from './runs/dataCheck';
import type { Services } from './services';
import type { CommandId } from './commandIds';

/** The cut the user chose last, for the step after it (prune and finetune). */
export const PENDING_PRUNE_KEY = 'l3prune.pendingPrune';
const LAST_DATA_KEY = 'l3prune.lastDataFile';

type Handler = (services: Services, ...args: unknown[]) => unknown;

const ANY_RUN = (action: string, many: boolean): RunPurpose => ({ action, applies: () => true, many });

/**
 * Command ids → handlers, one table. Keyed by CommandId, so the type checker refuses a handler without an
 * id or an id without a handler; test/unit/commandTable.test.ts checks the ids against package.json.
 */
/**
 * The runs a tree command was invoked on: VS Code passes the clicked row and the view's selection, and the
 * selection can be empty or not hold the clicked row (a right-click on an unselected row); then the row alone.
 */
function invokedOn(arg: unknown, many: unknown): unknown {
  if (!Array.isArray(many) || many.length === 0) return arg;
  const dir = (r: unknown) => (r as { runDir?: unknown } | undefined)?.runDir;
  return arg === undefined || many.some((r) => dir(r) === dir(arg)) ? many : arg;
}

export const COMMANDS: Record<CommandId, Handler> = {
  'l3prune.openWalkthrough': () => vscode.commands.executeCommand('workbench.action.openWalkthrough', 'l3prune.l3prune-studio#firstUse', false),
  // Only a path or a Uri names the model to open: the Models view's title button passes the selected row,
  // which would reopen that row's model instead of showing the dialog the user asked for.
  'l3prune.openModelFolder': (s, arg) => openModel(s, pathOrUri(arg), 'folder'),
  'l3prune.openOnnxModel': (s, arg) => openModel(s, pathOrUri(arg), 'onnx'),
  'l3prune.openHuggingFaceModel': (s, arg) => openHuggingFaceModel(s, arg),
  'l3prune.showLayerStack': (s, arg) => showLayerStack(s, arg),
  'l3prune.removeModel': (s, arg) => removeModel(s, arg),
  'l3prune.computeInitialLoss': (s, arg) => computeInitialLoss(s, arg),
  'l3prune.pruneAtSmallCut': (s, arg) => pruneAtCut(s, arg, 'small'),
  'l3prune.pruneAtLargeCut': (s, arg) => pruneAtCut(s, arg, 'large'),
  'l3prune.pruneAndFinetune': (s, arg) => pruneAndFinetune(s, arg),
  'l3prune.openRun': async (s, arg, many) => openRunPages(s, await chooseRuns(s, invokedOn(arg, many), s.runsView.selection, ANY_RUN('open', true))),
  'l3prune.compareRuns': async (s, arg, many) => openRuns(s, await chooseRuns(s, invokedOn(arg, many), s.runsView.selection, ANY_RUN('compare', true))),
  'l3prune.cancelRun': async (s, arg, many) =>
    cancelRuns(s.store, await chooseRuns(s, invokedOn(arg, many), s.runsView.selection, { action: 'cancel', applies: (r) => r.status === 'running', many: true })),
  'l3prune.resumeRun': async (s, arg) =>
    resumeRun(s, (await chooseRuns(s, arg, s.runsView.selection, { action: 'resume', applies: isResumable, many: false }))[0]),
  'l3prune.deleteRun': async (s, arg, many) =>
    deleteRuns(s, await chooseRuns(s, invokedOn(arg, many), s.runsView.selection, { action: 'delete', applies: (r) => r.status !== 'running', many: true })),
  'l3prune.evaluate': (s, arg) => evaluateVariant(s, arg),
  'l3prune.exportOnnx': (s, arg) => exportVariantOnnx(s, arg),
  'l3prune.exportSentenceTransformers': (s, arg) => exportSentenceTransformers(s, arg),
  'l3prune.encodeTexts': (s, arg) => encodeTexts(s, arg),
  'l3prune.compareVariants': (s, arg) => {
    compareVariants(s, arg);
    if (s.store.list().some((r) => r.verb === 'evaluate' && r.status === 'succeeded')) void s.guide.note('compared');
  },
  'l3prune.revealRun': async (s, arg) => {
    const run = (await chooseRuns(s, arg, s.runsView.selection, ANY_RUN('reveal', false)))[0];
    if (run) await revealPath(run.runDir);
  },
  'l3prune.renameRun': async (s, arg) => renameRun(s, (await chooseRuns(s, arg, s.runsView.selection, ANY_RUN('rename', false)))[0]),
  'l3prune.tryEncoder': (s, arg, texts) => tryEncoder(s, arg, texts),
  'l3prune.showDevices': (s) => showDevices(s),
  'l3prune.previewData': (s, arg) => previewData(s, arg),
  'l3prune.convertPickleWeights': async (s, arg) => {
    const folder = pathFromArg(arg) ?? (await pickFolder('Convert a model folder that holds only pickle (.bin) weights'));
    if (folder && (await convertPickleWeights(folder, s.extensionUri, s.log))) return openModel(s, folder, 'folder');
    return undefined;
  },
};

export function registerCommands(services: Services): vscode.Disposable[] {
  return Object.entries(COMMANDS).map(([id, handler]) =>
    vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      try {
        return await handler(services, ...args);
      } catch (e) {
        const message = (e as Error).message ?? String(e);
        services.log.error(`${id}: ${message}`);
        void vscode.window.showErrorMessage(message);
        return undefined;
      }
    }),
  );
}

function pathOrUri(arg: unknown): string | vscode.Uri | undefined {
  return typeof arg === 'string' || arg instanceof vscode.Uri ? arg : undefined;
}

/** A command may get a path, a Uri (explorer, scripts, tests) or a tree node (context menus). */
function pathFromArg(arg: unknown): string | undefined {
  if (typeof arg === 'string' && arg.trim()) return arg;
  if (arg instanceof vscode.Uri) return arg.fsPath;
  const node = arg as ModelsNode | undefined;
  if (node?.kind === 'model') return node.model.path;
  if (node?.kind === 'group' || node?.kind === 'cut') return node.modelPath;
  if (node?.kind === 'hfModel') return node.model.snapshotDir;
  return undefined;
}

async function openModel(s: Services, arg: unknown, kind: 'folder' | 'onnx'): Promise<LayerStack | undefined> {
  let target = pathFromArg(arg);
  if (!target) {
    const picked = await vscode.window.showOpenDialog({
      canSelectFolders: kind === 'folder',
      canSelectFiles: kind === 'onnx',
      canSelectMany: false,
      openLabel: 'Open Model',
      title: kind === 'folder' ? 'Open a Hugging Face model folder (config.json + safetensors)' : 'Open an ONNX model',
      filters: kind === 'onnx' ? { 'ONNX models': ['onnx'] } : undefined,
    });
    target = picked?.[0]?.fsPath;
    if (!target) return undefined;
  }
  let stack: LayerStack;
  try {
    stack = await s.registry.open(target);
  } catch (e) {
    // Pickle-only weights are refused; converting them is the user's explicit choice, offered here.
    const message = e instanceof Error ? e.message : String(e);
    if (!/pickle weights/.test(message)) throw e;
    s.log.warn(message);
    const choice = await vscode.window.showErrorMessage(message, 'Convert to Safetensors…');
    if (choice) await vscode.commands.executeCommand('l3prune.convertPickleWeights', target);
    return undefined;
  }
  s.log.info(`opened ${stack.path}: ${stack.family}, ${stack.numLayers} layers, ${stack.totalParams} params`);
  const node = s.registry.get(stack.path);
  if (node) await s.modelsView.reveal({ kind: 'model', model: node }, { expand: true, select: true }).then(undefined, () => undefined);
  for (const warning of stack.warnings) s.log.warn(`${stack.name}: ${warning}`);
  return stack;
}

/**
 * A model by its Hugging Face repo id: the cache's snapshot opens at once; a model the cache lacks is
 * downloaded first if the user says yes in a modal dialog (the only place that consent comes from).
 */
async function openHuggingFaceModel(s: Services, arg: unknown): Promise<LayerStack | undefined> {
  const repoIdProblem = (text: string): string | undefined => {
    try {
      return parseRepoRef(text.trim()) ? undefined : 'a repo id: org/name, or org/name@revision (a branch, tag or commit)';
    } catch (e) {
      return (e as Error).message;
    }
  };
  const text =
    typeof arg === 'string' && arg.trim()
      ? arg.trim()
      : (
          await vscode.window.showInputBox({
            title: 'Open a Hugging Face model',
            prompt: `org/name or org/name@revision; a model in ${hubCacheDir()} opens at once, any other can be downloaded`,
            placeHolder: 'HuggingFaceTB/SmolLM2-135M',
            validateInput: repoIdProblem,
          })
        )?.trim();
  if (!text) return undefined;
  const problem = repoIdProblem(text);
  if (problem) throw new Error(`${text}: ${problem}.`);
  const ref = parseRepoRef(text)!;
  const snapshot = (await findCachedSnapshot(ref)) ?? (await downloadIntoCache(ref, s.extensionUri, s.log));
  return snapshot ? openModel(s, snapshot, 'folder') : undefined;
}

async function pickFolder(title: string): Promise<string | undefined> {
  const picked = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, canSelectMany: false, openLabel: 'Select', title });
  return picked?.[0]?.fsPath;
}

async function pickModel(s: Services, arg: unknown): Promise<string | undefined> {
  const given = pathFromArg(arg) ?? pathFromArg(s.modelsView.selection[0]);
  if (given) return given;
  const models = s.registry.list();
  if (models.length === 1) return models[0].path;
  if (!models.length) {
    const choice = await vscode.window.showInformationMessage('No model is open yet.', 'Open Model Folder…', 'Open ONNX Model…');
    if (choice === 'Open Model Folder…') return (await openModel(s, undefined, 'folder'))?.path;
    if (choice === 'Open ONNX Model…') return (await openModel(s, undefined, 'onnx'))?.path;
    return undefined;
  }
  const picked = await vscode.window.showQuickPick(
    models.map((m) => ({ label: cachedRepoOf(m.path)?.repoId ?? path.basename(m.path), description: m.path, modelPath: m.path })),
    { title: 'Pick a model' },
  );
  return picked?.modelPath;
}

async function showLayerStack(s: Services, arg: unknown): Promise<void> {
  const modelPath = await pickModel(s, arg);
  if (!modelPath) return;
  const entry = s.registry.get(modelPath);
  const stack = entry?.state === 'ready' ? entry.stack : await s.registry.open(modelPath);
  showPanel(s, stack);
}

function showPanel(s: Services, stack: LayerStack, keep?: number): LayerStackPanel {
  const panel = LayerStackPanel.show(s.extensionUri, stack, {
    initialLoss: s.analyses.get(stack.path),
    keep,
    log: (line) => s.log.warn(line),
    onTrainAt: (picked, k) => void trainAtCut(s, picked, k),
  });
  // The training plan next to each cut is for the device the worker would use: asked once, in the background.
  void s.devices(vscode.Uri.file(stack.path)).then((report) => report && panel.setDevice(profileFromReport(report)));
  return panel;
}

async function readyStack(s: Services, modelPath: string): Promise<LayerStack> {
  const entry = s.registry.get(modelPath);
  return entry?.state === 'ready' ? entry.stack : s.registry.open(modelPath);
}

/** What analyze and train read (datasource.py): these files, or a datasets save_to_disk / E5 folder. */
const DATA_FILE_FILTERS = { 'Triples (JSONL, CSV, Parquet)': ['jsonl', 'json', 'csv', 'tsv', 'parquet', 'pq'] };

/**
 * The training triples: the configured or last file, or one browsed to (a file, or a datasets / E5 folder).
 * Each candidate has a Preview button (the data as the model will see it); the pick stays open meanwhile.
 */
async function pickDataFile(s: Services, title = 'Training triples for the initial loss'): Promise<string | undefined> {
  const configured = vscode.workspace.getConfiguration('l3prune').get<string>('dataFile')?.trim();
  const last = s.workspaceState.get<string>(LAST_DATA_KEY);
  // A file a training run refused as bad data, unchanged since, is not offered again.
  const refused = refusedDataOf(s.store.list());
  const candidates = [...new Set([configured, last].filter((p): p is string => !!p && !stillRefused(p, refused)))];
  type Item = vscode.QuickPickItem & { file?: string; browse?: 'file' | 'folder' };
  const preview: vscode.QuickInputButton = { iconPath: new vscode.ThemeIcon('preview'), tooltip: 'Preview this data (rows, tasks, samples, token lengths)' };
  const items: Item[] = [
    ...candidates.map((file): Item => ({ label: path.basename(file), detail: file, file, buttons: [preview] })),
    { label: '$(folder-opened) Browse File…', detail: 'JSONL, CSV or Parquet triples: query/positive/negative (or anchor/positive/negative)', browse: 'file' },
    { label: '$(folder-library) Browse Folder…', detail: 'a datasets save_to_disk folder, or an E5 folder of per-dataset .jsonl files', browse: 'folder' },
  ];
  const quickPick = vscode.window.createQuickPick<Item>();
  quickPick.title = title;
  quickPick.items = items;
  quickPick.ignoreFocusOut = true;
  const picked = await new Promise<Item | undefined>((resolve) => {
    quickPick.onDidAccept(() => resolve(quickPick.selectedItems[0]));
    quickPick.onDidHide(() => resolve(undefined));
    quickPick.onDidTriggerItemButton((e) => e.item.file && void vscode.commands.executeCommand('l3prune.previewData', e.item.file));
    quickPick.show();
  });
  quickPick.dispose();
  if (!picked) return undefined;
  let file = picked.file;
  if (!file) {
    const uri = await vscode.window.showOpenDialog({
      canSelectMany: false,
      canSelectFiles: picked.browse === 'file',
      canSelectFolders: picked.browse === 'folder',
      filters: picked.browse === 'file' ? DATA_FILE_FILTERS : undefined,
      openLabel: 'Use Triples',
    });
    file = uri?.[0]?.fsPath;
  }
  if (file) await s.workspaceState.update(LAST_DATA_KEY, file);
  return file;
}

/**
 * The data as analyze and train will read it, counted with the tokenizer of a model (the one opened, or picked):
 * the worker's preview-data report in its panel. `arg`: the data file or folder (explorer, the data pick's button).
 */
async function previewData(s: Services, arg: unknown): Promise<void> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  const given = typeof arg === 'string' && arg.trim() ? arg : arg instanceof vscode.Uri ? arg.fsPath : undefined;
  const data = given ?? (await pickDataFile(s, 'Training data to preview'));
  if (!data) return;
  const modelPath = await pickModel(s, undefined);
  if (!modelPath) return;
  const stack = await readyStack(s, modelPath);
  if (stack.source !== 'safetensors' || stack.path.endsWith('.safetensors')) {
    throw new Error(`${stack.name}: the preview counts tokens with a Hugging Face model folder's tokenizer, not an ${stack.source} file; open the model folder.`);
  }
  const python = await findPython(vscode.Uri.file(modelPath));
  if (!(await ensureWorkerPackage(python.executable, s.extensionUri, s.log))) return;
  const trust = await s.consent.decide([stack.path]);
  if (trust === 'refused') return refusedCode(stack.path);
  DataPreviewPanel.show(
    s.extensionUri,
    { python: python.executable, data, model: stack.path, maxLength: PREVIEW_DATA_DEFAULTS.maxLength, trustRemoteCode: trust === 'trusted' },
    (line) => s.log.info(line),
  );
}

async function computeInitialLoss(s: Services, arg: unknown): Promise<void> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  const modelPath = await pickModel(s, arg);
  if (!modelPath) return;
  const stack = await readyStack(s, modelPath);
  if (stack.source !== 'safetensors' || stack.path.endsWith('.safetensors')) {
    throw new Error(`${stack.name}: the initial loss needs a Hugging Face model folder (config.json, tokenizer and safetensors), not an ${stack.source} file.`);
  }
  const data = await pickDataFile(s);
  if (!data) return;
  const sample = await pickAnalysisSample();
  if (!sample) return;
  const python = await findPython(vscode.Uri.file(modelPath));
  s.log.info(`worker interpreter: ${python.executable} (${python.source})`);
  if (!(await ensureWorkerPackage(python.executable, s.extensionUri, s.log))) return;
  const trust = await s.consent.decide([stack.path]);
  if (trust === 'refused') return refusedCode(stack.path);
  const runDir = await newRunDir(runsRoot(s.globalStorageUri), 'analyze');
  s.log.info(`analyze ${stack.path} on ${data} → ${runDir}; sample: ${sample.label}`);
  const outcome = await runWithProgress({
    title: `Initial loss of ${stack.name}`,
    what: 'Initial loss',
    start: (onEvent, token) =>
      runAnalyze({ python: python.executable, model: stack.path, data, runDir, ...sample.request, trustRemoteCode: trust === 'trusted' }, onEvent, token),
    progressOf: (event) => {
      if (event.event === 'progress' && typeof event.batch === 'number' && typeof event.batches === 'number' && event.batches > 0) {
        return { done: event.batch / event.batches, message: `batch ${event.batch} of ${event.batches}, all ${stack.numLayers} depths at once` };
      }
      return event.event === 'model_loaded' ? { message: 'model loaded' } : undefined;
    },
  });
  if (!outcome) return;
  const { result } = outcome;
  await s.analyses.set(stack.path, { ...result, runDir: outcome.runDir });
  showPanel(s, stack, result.small);
  const small = planKeep(stack, result.small);
  const large = planKeep(stack, result.large);
  void notifyFinished(
    { verb: 'analyze', status: 'succeeded', runDir: outcome.runDir, model: stack.path, cuts: { small: result.small, large: result.large } },
    `L³Prune cuts for ${stack.name}: small keeps ${result.small} layers (−${formatShare(small.paramsRemovedShare)} params), ` +
      `large keeps ${result.large} (−${formatShare(large.paramsRemovedShare)}); loss from ${result.samples} sampled triples (${sample.label}).`,
  );
}

/** The analysis sample, said in words: the worker's default (which depends on its device), the paper's, or a small one. */
async function pickAnalysisSample(): Promise<{ label: string; request: { samples?: number; batchSize?: number } } | undefined> {
  const items = [
    {
      label: 'Worker default',
      description: 'the paper’s 6400 triples (64 × 100) on a GPU, 256 (16 batches of 16) on a CPU',
      detail: 'Batches mix tasks in sampled order, short batches are dropped; the run records the numbers used.',
      request: {},
    },
    { label: 'The paper’s sample', description: '6400 triples in 100 batches of 64 (slow on a CPU)', request: { samples: 6400, batchSize: 64 } },
    { label: 'Small sample', description: '256 triples in 16 batches of 16 (minutes on a CPU)', request: { samples: 256, batchSize: 16 } },
    { label: 'Custom…', description: 'choose the number of triples and the batch size', request: undefined },
  ];
  const picked = await vscode.window.showQuickPick(items, { title: 'Initial loss: which sample of the training triples' });
  if (!picked) return undefined;
  if (picked.request) return { label: `${picked.label.toLowerCase()}: ${picked.description}`, request: picked.request };
  const whole = (v: string) => (/^\d+$/.test(v.trim()) && Number(v) >= 1 && Number(v) <= 1_000_000 ? undefined : 'a whole number from 1 to 1,000,000');
  const samplesText = await vscode.window.showInputBox({ title: 'Triples to sample', value: '6400', validateInput: whole });
  if (!samplesText) return undefined;
  const batchText = await vscode.window.showInputBox({
    title: 'Triples per batch',
    prompt: 'Every batch has exactly this many triples (a short last batch is dropped); the paper uses 64.',
    value: '64',
    validateInput: whole,
  });
  if (!batchText) return undefined;
  const samples = Number(samplesText);
  const batchSize = Number(batchText);
  return { label: `${samples} triples in batches of ${batchSize}`, request: { samples, batchSize } };
}

async function pruneAtCut(s: Services, arg: unknown, variant: 'small' | 'large'): Promise<void> {
  const modelPath = await pickModel(s, arg);
  if (!modelPath) return;
  const analysis = s.analyses.get(modelPath);
  if (!analysis) {
    const compute = 'Compute Initial Loss…';
    const choice = await vscode.window.showInformationMessage(`No initial loss has been computed for ${path.basename(modelPath)} yet.`, compute);
    if (choice) await vscode.commands.executeCommand('l3prune.computeInitialLoss', modelPath);
    return;
  }
  const stack = await readyStack(s, modelPath);
  const keep = variant === 'small' ? analysis.small : analysis.large;
  showPanel(s, stack, keep);
  await rememberCut(s, stack, keep);
}

interface PendingPrune {
  model: string;
  keep: number;
}

/** Pre-fills the next step: the model and the cut are kept for "Prune and Finetune". */
async function rememberCut(s: Services, stack: LayerStack, keep: number): Promise<void> {
  const plan = planKeep(stack, keep);
  const pending: PendingPrune = { model: stack.path, keep };
  await s.workspaceState.update(PENDING_PRUNE_KEY, pending);
  await s.guide.note('cutChosen');
  const next = 'Prune and Finetune…';
  const choice = await vscode.window.showInformationMessage(
    `Cut chosen for ${stack.name}: keep ${keep} of ${plan.numLayers} layers, ${formatParams(plan.params)} params, ${formatBytes(plan.bytes)} (−${formatShare(plan.paramsRemovedShare)}).`,
    next,
  );
  if (choice === next) await vscode.commands.executeCommand('l3prune.pruneAndFinetune', stack.path);
}

/** The panel's "Train at this cut…": its slider's cut, straight into Prune and Finetune (no toast to chase). */
async function trainAtCut(s: Services, stack: LayerStack, keep: number): Promise<void> {
  const pending: PendingPrune = { model: stack.path, keep };
  await s.workspaceState.update(PENDING_PRUNE_KEY, pending);
  await s.guide.note('cutChosen');
  await vscode.commands.executeCommand('l3prune.pruneAndFinetune', stack.path);
}

async function pruneAndFinetune(s: Services, arg: unknown): Promise<void> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  const pending = s.workspaceState.get<PendingPrune>(PENDING_PRUNE_KEY);
  const modelPath = pathFromArg(arg) ?? pending?.model ?? (await pickModel(s, undefined));
  if (!modelPath) return;
  const stack = await readyStack(s, modelPath);
  if (stack.source !== 'safetensors' || stack.path.endsWith('.safetensors')) {
    throw new Error(`${stack.name}: training needs a Hugging Face model folder (config.json, tokenizer and safetensors).`);
  }
  const keep =
    pending && path.resolve(pending.model) === stack.path ? pending.keep : (s.analyses.get(stack.path)?.small ?? stack.layers.length);
  // The form holds the data file (remembered per model, checked before the launch): no pick before it.
  await startTraining(s, { model: stack.path, keep, numLayers: stack.layers.length });
}

/** The worker's devices report, as the resource planner plans with it. */
async function showDevices(s: Services): Promise<void> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  const report = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'Asking the worker for its devices…' }, () => s.devices());
  if (!report) throw new Error('The worker could not report its devices; see the L³Prune output for its message.');
  const lines = [
    ...report.cuda.map(
      (d) =>
        `cuda:${d.index} ${d.name}: ${formatGiB(d.freeMemoryBytes)} free of ${formatGiB(d.totalMemoryBytes)}, ${d.bf16 ? 'bf16' : 'no bf16'}, compute ${d.computeCapability}` +
        (d.calibration ? `, ${(d.calibration.flopsPerSecond / 1e12).toFixed(1)} TFLOP/s measured` : ''),
    ),
    `CPU: ${report.cpu.threads} threads${report.cpu.memoryBytes ? `, ${formatGiB(report.cpu.memoryBytes)} RAM` : ''}` +
      (report.cpu.calibration ? `, ${(report.cpu.calibration.flopsPerSecond / 1e9).toFixed(1)} GFLOP/s measured` : ''),
    `attention: ${report.attention.join(', ')}; torch ${report.torch}`,
  ];
  s.log.info(`devices:\n${lines.join('\n')}`);
  await vscode.window.showInformationMessage(report.cuda.length ? `${report.cuda.length} CUDA device(s)` : 'No CUDA device: training runs on the CPU', { modal: true, detail: lines.join('\n') });
}

async function removeModel(s: Services, arg: unknown): Promise<void> {
  const modelPath = await pickModel(s, arg);
  if (!modelPath) return;
  LayerStackPanel.forModel(path.resolve(modelPath))?.dispose();
  await s.registry.remove(modelPath);
}
