import * as path from 'node:path';
import * as vscode from 'vscode';
import type { RemoteCodeConsent } from '../worker/remoteCode';
import { cancelRun, launchTrain } from './trainLauncher';
import { confirmCancel } from './cancelConfirm';
import { runName } from '../views/runsTree';
import type { DevicesReport } from '../shared/protocol/generated/devices-report';
import { checkDefinition, consentFieldsIn, rendezvousOf, specFromDefinition, taskName, TASK_TYPE, type TrainTaskDefinition } from './trainDefinition';
import { checkDevices, launchLine, parseDevices } from './trainDevices';
import { readRunRecord } from './runFolder';
import { newRunDir } from './runLocation';
import type { RunStore, RunSummary } from './runStore';

export { TASK_TYPE, type TrainTaskDefinition };

/** How long a closed task terminal waits before it treats the close as the user's cancel (see close()). */
const CLOSE_GRACE_MS = 1500;

export interface TrainTaskDeps {
  /** The worker's interpreter, resolved for a resource (the model) so folder-scoped settings apply. */
  python: (resource: vscode.Uri | undefined) => Promise<string>;
  runsRoot: () => string;
  store: RunStore;
  /** The user's answer on a model folder's own code (a dialog), never a file's. */
  consent: RemoteCodeConsent;
  log: (line: string) => void;
  onLaunched?: (runDir: string) => void;
  isShuttingDown: () => boolean;
  /** The worker's devices report for an interpreter (undefined when it cannot be had): GPUs are checked against it. */
  devices?: (python: string) => Promise<DevicesReport | undefined>;
}

export function createTrainTask(definition: TrainTaskDefinition, deps: TrainTaskDeps, scope: vscode.TaskScope | vscode.WorkspaceFolder = vscode.TaskScope.Workspace): vscode.Task {
  const task = new vscode.Task(
    definition,
    scope,
    taskName(definition),
    'L³Prune',
    new vscode.CustomExecution(async (resolved) => new TrainTerminal(resolved as TrainTaskDefinition, deps)),
  );
  task.presentationOptions = { reveal: vscode.TaskRevealKind.Silent, panel: vscode.TaskPanelKind.Dedicated, clear: true };
  task.isBackground = false;
  return task;
}

/** Runs defined in tasks.json resolve here; the provider itself offers none (a run needs a model and data). */
export class TrainTaskProvider implements vscode.TaskProvider {
  constructor(private readonly deps: TrainTaskDeps) {}

  provideTasks(): vscode.Task[] {
    return [];
  }

  /** An invalid definition still resolves: its terminal says what is wrong instead of the task vanishing. */
  resolveTask(task: vscode.Task): vscode.Task {
    return createTrainTask(task.definition as TrainTaskDefinition, this.deps, task.scope ?? vscode.TaskScope.Workspace);
  }
}

/**
 * The task's terminal launches the detached worker and then only follows the run folder. Terminating the
 * task cancels the run (a clean checkpoint first); a window reload does not, since the worker is detached
 * and this terminal is only a view of it.
 */
class TrainTerminal implements vscode.Pseudoterminal {
  private readonly write = new vscode.EventEmitter<string>();
  private readonly closeEmitter = new vscode.EventEmitter<number>();
  readonly onDidWrite = this.write.event;
  readonly onDidClose = this.closeEmitter.event;
  private runDir: string | undefined;
  private lastStep = -1;
  private subscription: vscode.Disposable | undefined;
  private finished = false;
  private cancelAsked = false;

  constructor(
    private readonly definition: TrainTaskDefinition,
    private readonly deps: TrainTaskDeps,
  ) {}

  async open(): Promise<void> {
    const problem = checkDefinition(this.definition);
    if (problem) return this.fail(problem);
    if (!vscode.workspace.isTrusted) return this.fail('this workspace is not trusted, so L³Prune starts no worker here');
    try {
      const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
      const anchor = this.definition.resumeRunDir ?? this.definition.model;
      const python = await this.deps.python(anchor ? vscode.Uri.file(path.resolve(root ?? '', anchor)) : undefined);
      const resume = !!this.definition.resumeRunDir;
      const resumeDir = resume ? path.resolve(root ?? '', this.definition.resumeRunDir!) : undefined;
      const dropped = resume ? [] : consentFieldsIn(this.definition);
      if (dropped.length) {
        const note = `${dropped.join(', ')} in the task's recipe is ignored: running a model's own code needs your answer in L³Prune's dialog, not a setting in tasks.json`;
        this.line(note);
        this.deps.log(note);
      }
      const spec = resume ? undefined : specFromDefinition(this.definition, root);
      // The model a resumed run loads is the one its run.json names; either way it is the user who decides.
      const model = spec?.model ?? (resumeDir ? stringField((await readRunRecord(resumeDir))?.spec, 'model') : undefined);
      const trust = await this.deps.consent.decide([model]);
      if (trust === 'refused') return this.fail(`the model ${model} needs its own Python code, which was not allowed; nothing was started`);
      // Devices are checked before anything is spawned: a GPU that is not there is one sentence here, not a worker log.
      const stored = resumeDir ? stringField((await readRunRecord(resumeDir))?.spec, 'devices') : undefined;
      const devices = this.definition.devices ?? spec?.devices ?? stored ?? 'auto';
      const choice = parseDevices(devices);
      const report = choice && (choice.kind === 'cuda' || choice.kind === 'all') ? await this.deps.devices?.(python) : undefined;
      const rendezvous = rendezvousOf(this.definition);
      const deviceProblem = checkDevices(devices, report, rendezvous);
      if (deviceProblem) return this.fail(`${deviceProblem}; nothing was started`);
      this.runDir = resumeDir ?? (await newRunDir(this.deps.runsRoot(), 'train'));
      this.line(`L³Prune ${resume ? 'resuming' : 'training'} → ${this.runDir}`);
      if (spec) this.line(`model ${spec.model}, keep ${spec.keep} layers, ${spec.steps} steps, batch ${spec.batchSize}, lr ${spec.learningRate}`);
      if (trust === 'trusted') this.line(`the model's own code is allowed (your answer in the dialog)`);
      const launch = { resume, trustRemoteCode: trust === 'trusted', devices, changeDevices: resume && devices !== (stored ?? 'auto'), report, rendezvous };
      const where = launchLine([], devices, report, rendezvous);
      if (where.worldSize > 1) {
        const node = rendezvous ? `node ${rendezvous.nodeRank} of ${rendezvous.nnodes}, ` : '';
        // A resume keeps the run's global batch whatever the count (the worker splits it), so only a new run says it.
        this.line(`${node}${where.processes} process(es) here on ${devices}, ${where.worldSize} in all` +
          (spec ? `: global batch ${where.worldSize} × ${spec.batchSize} = ${where.worldSize * spec.batchSize}` : ''));
      }
      const pid = await launchTrain(python, this.runDir, spec, launch);
      this.line(`${where.worldSize > 1 ? 'launcher (torchrun)' : 'worker'} pid ${pid} (detached: it keeps running if this window closes)`);
      this.deps.onLaunched?.(this.runDir);
      this.subscription = this.deps.store.onDidChange(() => this.follow());
      await this.deps.store.refresh();
    } catch (e) {
      this.fail((e as Error).message);
    }
  }

  private follow(): void {
    const run = this.runDir ? this.deps.store.get(this.runDir) : undefined;
    if (!run) return;
    for (const point of run.losses) {
      if (point.step <= this.lastStep) continue;
      this.lastStep = point.step;
      this.line(`step ${point.step}/${run.totalSteps ?? '?'}  loss ${point.loss.toFixed(4)}`);
    }
    if (run.status !== 'running' && !this.finished) this.end(run);
  }

  /**
   * A cancel is the user's own choice (confirmed), so the task ends without the failure mark: exit code 0 and a
   * line that says how to go on. Only a failure ends with 1.
   */
  private end(run: RunSummary): void {
    this.finished = true;
    if (run.status === 'cancelled') {
      this.line(`cancelled at step ${run.step ?? 0}${run.totalSteps ? `/${run.totalSteps}` : ''} — resume with “L³Prune: Resume Run” on ${run.id}` +
        (run.checkpoints ? ' (it goes on from its last checkpoint)' : ''));
    } else {
      this.line(`run ${run.status}${run.error ? `: ${run.error}` : ''}`);
    }
    this.dispose();
    this.closeEmitter.fire(run.status === 'failed' ? 1 : 0);
  }

  handleInput(data: string): void {
    if (data === '\x03') void this.cancel();
  }

  /**
   * VS Code closes this terminal both when the user terminates the task and when the window reloads or
   * closes; only the first may cancel the run. On a reload the extension host exits within milliseconds
   * of closing its terminals (before our deactivate runs), so the cancel waits a moment: if the host is
   * still alive and not shutting down by then, the user meant it.
   */
  close(): void {
    this.dispose();
    if (this.finished) return;
    setTimeout(() => {
      if (!this.deps.isShuttingDown()) void this.cancel();
    }, CLOSE_GRACE_MS);
  }

  /** Asks first: a closed terminal or a stray Ctrl+C is not always meant to stop hours of training. */
  private async cancel(): Promise<void> {
    const run = this.runDir ? this.deps.store.get(this.runDir) : undefined;
    if (run?.status !== 'running' || this.cancelAsked) return;
    this.cancelAsked = true;
    try {
      if (!(await confirmCancel([runName(this.deps.store, run)]))) return;
    } finally {
      this.cancelAsked = false;
    }
    const current = this.deps.store.get(run.runDir);
    if (current?.status === 'running' && cancelRun(current)) {
      this.line('cancelling: the worker finishes its step and writes a checkpoint…');
    }
  }

  private fail(message: string): void {
    this.line(`error: ${message}`);
    this.finished = true;
    this.closeEmitter.fire(1);
  }

  private line(text: string): void {
    this.write.fire(`${text}\r\n`);
  }

  private dispose(): void {
    this.subscription?.dispose();
    this.subscription = undefined;
  }
}

function stringField(spec: unknown, field: string): string | undefined {
  const value = spec && typeof spec === 'object' ? (spec as Record<string, unknown>)[field] : undefined;
  return typeof value === 'string' ? value : undefined;
}
