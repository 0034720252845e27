import { readdir, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { parseRunEvent, type EvaluationFinishedEvent, type EvaluationResult, type ExportedEvent, type ExportResult, type RunRecord, type RunStatus } from '../shared/protocol/workerEvents';
import { effectiveStatus, freshTail, processIsAlive, readNewEvents, readRunRecord, type TailState } from './runFolder';

export interface LossPoint {
  step: number;
  loss: number;
  /** Milliseconds since the run started. */
  elapsedMs: number;
}

export interface TaskScore {
  task: string;
  taskType: string;
  metric: string;
  mainScore: number | null;
  seconds: number;
}

/** An evaluate run: its task scores as they arrive, and the whole result once it has finished. */
export interface EvaluationSummary {
  tasks: TaskScore[];
  /** Layers of the model before the cut (model_loaded), to tell a full model from a cut one. */
  originalNumLayers?: number;
  result?: EvaluationResult;
}

export interface RunSummary {
  id: string;
  runDir: string;
  verb: string;
  status: RunStatus;
  record: RunRecord;
  model?: string;
  keep?: number;
  step?: number;
  totalSteps?: number;
  lastLoss?: number;
  tokensPerSecond?: number;
  error?: string;
  checkpoints: number;
  losses: LossPoint[];
  /** Wall-clock ms of the latest step event, for an ETA. */
  lastStepAt?: number;
  /** evaluate / export-onnx of a trained variant: the train run it came from. */
  fromRun?: string;
  evaluation?: EvaluationSummary;
  exported?: ExportResult;
}

interface Tracked {
  summary: RunSummary;
  tail: TailState;
}

/**
 * Every run folder under the runs root, kept current by polling: run.json for status, events.jsonl tailed
 * from where it was last read. Polling (not fs.watch) works the same on local disks, network mounts and
 * Remote-SSH. A "running" run whose pid or heartbeat is gone is reported as failed: its worker died.
 */
export class RunStore {
  private readonly runs = new Map<string, Tracked>();
  private readonly listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly root: () => string,
    private readonly isAlive: (pid: number) => boolean = processIsAlive,
  ) {}

  /**
   * VS Code's event shape without the vscode module (the store is unit-tested under plain mocha): subscribing
   * returns the disposable that unsubscribes, so a listener ends with whatever owns it.
   */
  readonly onDidChange = (listener: () => void): { dispose(): void } => {
    this.listeners.add(listener);
    return { dispose: () => void this.listeners.delete(listener) };
  };

  private fireChange(): void {
    // A copy: a listener may dispose itself (a run it followed has ended) while the others are called.
    for (const listener of [...this.listeners]) listener();
  }

  list(): RunSummary[] {
    return [...this.runs.values()].map((t) => t.summary).sort((a, b) => b.record.startedAt.localeCompare(a.record.startedAt));
  }

  get(runDir: string): RunSummary | undefined {
    return this.runs.get(path.resolve(runDir))?.summary;
  }

  /** Polls quickly while a run is live, slowly otherwise (to notice runs started elsewhere). */
  start(liveMs = 1000, idleMs = 5000): void {
    this.polling = true;
    const tick = async () => {
      await this.refresh();
      // stop() may come while a refresh is in flight; the tick must not re-arm the timer after it.
      if (!this.polling) return;
      const live = this.list().some((r) => r.status === 'running');
      this.timer = setTimeout(tick, live ? liveMs : idleMs);
    };
    void tick();
  }

  stop(): void {
    this.polling = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  dispose(): void {
    this.stop();
    this.listeners.clear();
  }

  refresh(): Promise<void> {
    // One refresh at a time: overlapping reads would tail the same bytes twice.
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  async delete(runDir: string): Promise<void> {
    const key = path.resolve(runDir);
    await rm(key, { recursive: true, force: true });
    this.runs.delete(key);
    this.fireChange();
  }

  private async doRefresh(): Promise<void> {
    const root = this.root();
    let names: string[];
    try {
      names = await readdir(root);
    } catch {
      names = [];
    }
    let changed = false;
    const present = new Set<string>();
    for (const name of names) {
      const runDir = path.resolve(root, name);
      const record = await readRunRecord(runDir);
      if (!record) continue;
      present.add(runDir);
      changed = (await this.update(runDir, record)) || changed;
    }
    for (const key of [...this.runs.keys()]) {
      if (!present.has(key)) {
        this.runs.delete(key);
        changed = true;
      }
    }
    if (changed) this.fireChange();
  }

  private async update(runDir: string, record: RunRecord): Promise<boolean> {
    let tracked = this.runs.get(runDir);
    const spec = record.spec as Record<string, unknown>;
    if (!tracked) {
      tracked = {
        tail: freshTail(),
        summary: {
          id: path.basename(runDir),
          runDir,
          verb: record.verb,
          status: record.status,
          record,
          model: typeof spec.model === 'string' ? spec.model : undefined,
          keep: typeof spec.keep === 'number' ? spec.keep : undefined,
          totalSteps: typeof spec.steps === 'number' ? spec.steps : undefined,
          fromRun: typeof spec.fromRun === 'string' ? spec.fromRun : undefined,
          checkpoints: 0,
          losses: [],
        },
      };
      this.runs.set(runDir, tracked);
    }
    const summary = tracked.summary;
    const before = `${summary.status}|${summary.step}|${summary.record.heartbeatAt}|${summary.checkpoints}`;
    summary.record = record;
    const { events, state } = await readNewEvents(runDir, tracked.tail);
    tracked.tail = state;
    const started = Date.parse(record.startedAt);
    for (const event of events) {
      switch (event.event) {
        case 'step': {
          const step = Number(event.step);
          const loss = Number(event.loss);
          if (!Number.isFinite(step) || !Number.isFinite(loss)) break;
          // A resumed run repeats steps after its checkpoint: the later value replaces the earlier one.
          while (summary.losses.length && summary.losses[summary.losses.length - 1].step >= step) summary.losses.pop();
          const at = Date.parse(event.time);
          summary.losses.push({ step, loss, elapsedMs: Number.isFinite(at) ? at - started : 0 });
          summary.step = step;
          summary.lastLoss = loss;
          summary.lastStepAt = at;
          if (typeof event.totalSteps === 'number') summary.totalSteps = event.totalSteps;
          if (typeof event.tokensPerSecond === 'number') summary.tokensPerSecond = event.tokensPerSecond;
          break;
        }
        case 'checkpoint':
          summary.checkpoints++;
          break;
        case 'model_loaded':
          if (record.verb === 'evaluate' && typeof event.originalNumLayers === 'number') {
            summary.evaluation = { ...(summary.evaluation ?? { tasks: [] }), originalNumLayers: event.originalNumLayers };
          }
          break;
        case 'error':
          if (typeof event.message === 'string') summary.error = event.message;
          break;
        case 'task_result': {
          const { task, taskType, metric, mainScore, seconds } = event as TaskScore & { event: string };
          summary.evaluation ??= { tasks: [] };
          // A task evaluated twice (a rerun into the same folder) keeps its latest score.
          summary.evaluation.tasks = [...summary.evaluation.tasks.filter((t) => t.task !== task), { task, taskType, metric, mainScore, seconds }];
          break;
        }
        case 'evaluation_finished':
          summary.evaluation = { ...(summary.evaluation ?? { tasks: [] }), result: evaluationOf(event as EvaluationFinishedEvent) };
          break;
        case 'exported':
          summary.exported = exportOf(event as ExportedEvent);
          break;
      }
    }
    if (record.status === 'succeeded' && record.result) fillFromResult(summary, record);
    summary.status = effectiveStatus(record, Date.now(), this.isAlive);
    if (summary.status === 'failed' && !summary.error) {
      summary.error = record.error?.message ?? (record.status === 'running' ? 'the worker stopped without a word (killed or crashed)' : undefined);
    }
    return events.length > 0 || before !== `${summary.status}|${summary.step}|${summary.record.heartbeatAt}|${summary.checkpoints}`;
  }
}

/**
 * run.json's result repeats a finished run's closing event; it stands in when events.jsonl is gone or cut
 * short (copied run folders, a disk that filled up), and is checked exactly as the event would be.
 */
function fillFromResult(summary: RunSummary, record: RunRecord): void {
  const asEvent = (kind: string) => parseRunEvent({ ...record.result, event: kind, time: record.endedAt ?? record.heartbeatAt });
  if (record.verb === 'evaluate' && !summary.evaluation?.result) {
    const event = asEvent('evaluation_finished');
    if (event) summary.evaluation = { ...(summary.evaluation ?? { tasks: [] }), result: evaluationOf(event as EvaluationFinishedEvent) };
  } else if (record.verb === 'export-onnx' && !summary.exported) {
    const event = asEvent('exported');
    if (event) summary.exported = exportOf(event as ExportedEvent);
  }
}

// The fields the extension shows, picked by name: whatever else a newer worker adds stays in the folder.
const evaluationOf = (e: EvaluationResult): EvaluationResult => ({
  numLayers: e.numLayers,
  params: e.params,
  bytes: e.bytes,
  averageScore: e.averageScore,
  scores: { ...e.scores },
  latencyMsPerBatch: e.latencyMsPerBatch,
  textsPerSecond: e.textsPerSecond,
  batchSize: e.batchSize,
  maxLength: e.maxLength,
  device: e.device,
});

const exportOf = (e: ExportResult): ExportResult => ({
  path: e.path,
  outDir: e.outDir,
  bytes: e.bytes,
  opset: e.opset,
  parityMinCosine: e.parityMinCosine,
  parityMeanCosine: e.parityMeanCosine,
  numLayers: e.numLayers,
  seconds: e.seconds,
});

/**
 * A failed or cancelled training run can be resumed in its own folder: from its newest complete checkpoint,
 * or from step 0 when it died before the first one (the worker decides; a torn checkpoint is never used).
 */
export function isResumable(run: RunSummary): boolean {
  return run.verb === 'train' && (run.status === 'failed' || run.status === 'cancelled');
}

/** Seconds left at the current pace, from the last 20 steps. */
export function etaSeconds(run: RunSummary): number | undefined {
  const points = run.losses.slice(-20);
  if (!run.totalSteps || points.length < 2 || run.step === undefined) return undefined;
  const first = points[0];
  const last = points[points.length - 1];
  const msPerStep = (last.elapsedMs - first.elapsedMs) / Math.max(1, last.step - first.step);
  return msPerStep > 0 ? ((run.totalSteps - run.step) * msPerStep) / 1000 : undefined;
}
