import * as path from 'node:path';
import * as vscode from 'vscode';
import { inspectModel } from '../model/inspect';
import type { Services } from '../services';
import { formatGiB } from '../shared/format/units';
import type { LayerStack } from '../shared/model/stack';
import type { DevicesReport } from '../shared/protocol/generated/devices-report';
import type { ResourcePlan } from '../shared/prune/resources';
import { parseTrainFormMessage, TRAIN_FORM_FIELDS, type TrainFormFieldName, type TrainFormPlan, type TrainFormToWebview } from '../shared/protocol/trainFormMessages';
import { checkTrainingData, refusedDataOf, stillRefused } from '../runs/dataCheck';
import { devicePlansSummary, planLaunch } from '../runs/devicePlans';
import { edit, initialState, remembered, toDefinition, type RememberedForm, type TrainFormState } from '../runs/trainForm';
import type { TrainRecipe } from '../runs/trainDefinition';
import { createTrainTask } from '../runs/trainTask';
import { onValidatedMessage, renderPage, webviewOptions } from './webviewHost';

export const TRAIN_FORM_VIEW_TYPE = 'l3prune.trainForm';
/** workspaceState: the last values of the form, per model path. */
export const TRAIN_FORM_KEY = 'l3prune.trainForm';
/** The data file analyze and train were last given (commands.ts's pick uses the same key). */
const LAST_DATA_KEY = 'l3prune.lastDataFile';

export type TrainFormServices = Pick<Services, 'extensionUri' | 'store' | 'trainTasks' | 'log' | 'devices' | 'workspaceState'>;

export interface TrainFormChoice {
  model: string;
  keep: number;
  numLayers: number;
  /** A data file chosen before the form (a command's argument); else the remembered one. */
  data?: string;
}

const DATA_FILTERS = { 'Triples (JSONL, CSV, Parquet)': ['jsonl', 'json', 'csv', 'tsv', 'parquet', 'pq'] };

/**
 * Prune and Finetune as one form: every recipe field, grouped, with defaults sized to the device the run will
 * use, the resource plan following each change, and the data file checked here before anything is spawned.
 * The page only sends text; this host parses and checks it (trainForm.ts) and launches the same task a
 * tasks.json entry would.
 */
export class TrainFormPanel implements vscode.Disposable {
  private static current: TrainFormPanel | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private readonly panel: vscode.WebviewPanel;
  private state: TrainFormState | undefined;
  private stack: LayerStack | undefined;
  private report: DevicesReport | undefined;
  private dataProblem: string | undefined;
  private checkedData: string | undefined;
  private status = '';
  private wasRemembered = false;
  private ready = false;
  private disposed = false;
  private choice: TrainFormChoice;

  static async show(s: TrainFormServices, choice: TrainFormChoice): Promise<TrainFormPanel> {
    const panel = TrainFormPanel.current ?? new TrainFormPanel(s, choice);
    TrainFormPanel.current = panel;
    panel.panel.reveal();
    await panel.load(choice);
    return panel;
  }

  private constructor(private readonly s: TrainFormServices, choice: TrainFormChoice) {
    this.choice = choice;
    this.panel = vscode.window.createWebviewPanel(TRAIN_FORM_VIEW_TYPE, 'Prune and Finetune', vscode.ViewColumn.Active, {
      ...webviewOptions(s.extensionUri),
      // The form keeps what the user typed while its tab is in the background.
      retainContextWhenHidden: true,
    });
    this.panel.webview.html = renderPage(this.panel.webview, s.extensionUri, {
      title: 'Prune and Finetune',
      script: 'trainForm.js',
      styles: [
        { folder: 'media', file: 'webview.css' },
        { folder: 'media', file: 'trainForm.css' },
      ],
      body: '<main id="app" aria-live="polite"><p class="hint">Reading the model and the machine…</p></main>',
    });
    this.disposables.push(
      onValidatedMessage(this.panel.webview, parseTrainFormMessage, (m) => this.onMessage(m), (line) => s.log.warn(line)),
      this.panel.onDidDispose(() => this.dispose()),
    );
  }

  private memory(): Record<string, RememberedForm> {
    const all = this.s.workspaceState.get<unknown>(TRAIN_FORM_KEY);
    return all && typeof all === 'object' && !Array.isArray(all) ? (all as Record<string, RememberedForm>) : {};
  }

  private async load(choice: TrainFormChoice): Promise<void> {
    this.choice = choice;
    this.panel.title = `Prune and Finetune: ${path.basename(choice.model)}`;
    [this.stack, this.report] = await Promise.all([inspectModel(choice.model).catch(() => undefined), this.s.devices(vscode.Uri.file(choice.model))]);
    const memory = this.memory()[choice.model];
    this.wasRemembered = memory !== undefined;
    this.state = initialState(choice.model, choice.numLayers, choice.keep, choice.data ?? this.rememberedData(memory), memory, this.report);
    this.status = '';
    await this.checkData();
    this.postInit();
    this.postState();
  }

  /** The remembered, configured or last data file, unless a run refused it and it has not changed since. */
  private rememberedData(memory: RememberedForm | undefined): string {
    const refused = refusedDataOf(this.s.store.list());
    const configured = vscode.workspace.getConfiguration('l3prune').get<string>('dataFile')?.trim();
    const candidates = [memory?.raw.data, configured, this.s.workspaceState.get<string>(LAST_DATA_KEY)];
    return candidates.find((file): file is string => !!file && !stillRefused(file, refused)) ?? '';
  }

  private async onMessage(m: NonNullable<ReturnType<typeof parseTrainFormMessage>>): Promise<void> {
    // The page can be ready before the model and the devices report are read: load() posts once they are.
    if (m.type === 'ready') {
      this.ready = true;
      this.postInit();
      this.postState();
      return;
    }
    if (!this.state) return;
    switch (m.type) {
      case 'edit':
        this.state = edit(this.state, m.field, m.value, this.report);
        this.status = '';
        if (m.field === 'data' || m.field === 'dataColumns') await this.checkData();
        this.postState();
        return;
      case 'browseData': {
        const picked = await vscode.window.showOpenDialog({ canSelectMany: false, canSelectFiles: true, canSelectFolders: false, filters: DATA_FILTERS, openLabel: 'Use Triples' });
        const file = picked?.[0]?.fsPath;
        if (!file || !this.state) return;
        this.state = edit(this.state, 'data', file, this.report);
        await this.checkData();
        this.postState();
        return;
      }
      case 'previewData':
        if (this.state.raw.data.trim()) await vscode.commands.executeCommand('l3prune.previewData', this.state.raw.data.trim());
        return;
      case 'reset':
        this.state = initialState(this.state.model, this.state.numLayers, this.choice.keep, this.state.raw.data, undefined, this.report);
        this.status = 'Every field is back at its default for this machine.';
        this.postState();
        return;
      case 'start':
        return this.start();
      case 'cancel':
        this.dispose();
        return;
    }
  }

  private async checkData(): Promise<void> {
    if (!this.state) return;
    const data = this.state.raw.data.trim();
    this.checkedData = data;
    if (!data) {
      this.dataProblem = 'Choose the training triples (Browse…).';
      return;
    }
    const outcome = toDefinition(this.state, this.report);
    const columns = (outcome.recipe.dataColumns ?? null) as Record<string, string> | null;
    const problem = await checkTrainingData(data, columns);
    // A newer edit checked another file meanwhile.
    if (this.checkedData === data) this.dataProblem = problem;
  }

  private plan(): TrainFormPlan | undefined {
    if (!this.state || !this.stack || !this.report) return undefined;
    const outcome = toDefinition(this.state, this.report);
    if (outcome.problems.keep || outcome.problems.devices) return undefined;
    const plans = planLaunch(this.stack, outcome.recipe, outcome.keep, outcome.devices, this.report);
    if (!plans) return undefined;
    const p = plans.plan;
    return { summary: devicePlansSummary(plans), fits: p.fits, detail: `${planDevice(p)}: ${p.terms.map((t) => `${t.name} ${formatGiB(t.bytes)}`).join(', ')}` };
  }

  private async start(): Promise<void> {
    if (!this.state) return;
    const outcome = toDefinition(this.state, this.report);
    if (!outcome.definition) {
      this.status = `Not started: ${Object.values(outcome.problems)[0]}`;
      return this.postState();
    }
    await this.checkData();
    if (this.dataProblem) {
      // Nothing is spawned and nothing remembered: the next form does not offer this file as it is.
      this.status = `Not started: ${this.dataProblem}`;
      this.s.log.warn(`train form: refused ${outcome.definition.data}: ${this.dataProblem}`);
      return this.postState();
    }
    const plans = this.stack && this.report ? planLaunch(this.stack, outcome.recipe, outcome.keep, outcome.devices, this.report) : undefined;
    if (plans?.plan.fits === false) {
      const fix = await confirmWontFit(plans.plan);
      if (!fix) return;
      if (fix !== 'anyway') {
        for (const [field, value] of Object.entries(fix)) {
          if (TRAIN_FORM_FIELDS.some((f) => f.name === field)) this.state = edit(this.state, field as TrainFormFieldName, value === null ? '' : String(value), this.report);
        }
        this.status = 'Changed to fit; check the plan and start again.';
        return this.postState();
      }
    }
    const definition = outcome.definition;
    await this.s.workspaceState.update(TRAIN_FORM_KEY, { ...this.memory(), [this.state.model]: remembered(this.state) });
    await this.s.workspaceState.update(LAST_DATA_KEY, definition.data);
    if (plans) this.s.log.info(`plan for ${path.basename(definition.model)} keep ${definition.keep}: ${devicePlansSummary(plans)}`);
    this.s.log.info(`train form: ${JSON.stringify(definition)}`);
    this.dispose();
    await vscode.tasks.executeTask(createTrainTask(definition, this.s.trainTasks));
  }

  private postInit(): void {
    if (!this.ready || !this.state) return;
    const cuda = this.report?.cuda ?? [];
    const machine = !this.report
      ? 'The worker could not report its devices; the defaults are the paper’s (a GPU).'
      : cuda.length
        ? `This machine: ${cuda.map((g) => `cuda:${g.index} ${g.name} (${formatGiB(g.freeMemoryBytes)} free)`).join(', ')}; the defaults are the paper’s.`
        : 'This machine: no CUDA device, so the run trains on the CPU; the defaults are sized for it (batch 8, 64 tokens, 200 steps).';
    void this.post({ type: 'init', model: this.state.model, modelName: path.basename(this.state.model), numLayers: this.state.numLayers, fields: TRAIN_FORM_FIELDS, machine });
  }

  private postState(): void {
    if (!this.ready || !this.state) return;
    const outcome = toDefinition(this.state, this.report);
    void this.post({
      type: 'state',
      raw: this.state.raw,
      set: this.state.set,
      problems: outcome.problems,
      plan: this.plan(),
      dataProblem: this.dataProblem,
      remembered: this.wasRemembered,
      status: this.status,
    });
  }

  private post(message: TrainFormToWebview): Thenable<boolean> {
    return this.panel.webview.postMessage(message);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (TrainFormPanel.current === this) TrainFormPanel.current = undefined;
    while (this.disposables.length) this.disposables.pop()?.dispose();
    this.panel.dispose();
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
