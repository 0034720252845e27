import { lstatSync } from 'node:fs';
import { lstat, opendir, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { parseRunEvent, type EvaluationFinishedEvent, type EvaluationResult, type ExportedEvent, type ExportResult, type RunRecord } from '../shared/protocol/workerEvents';
import { ownProcesses, type Liveness } from '../worker/ownProcesses';
import { clockTime, readRunName, RUN_NAME_FILE, writeRunName } from './runName';
import { effectiveStatus, freshTail, MAX_RUN_FILE_BYTES, readNewEvents, readRunFile, type RunState, type TailState } from './runFolder';

export type { RunState };

/** `l3prune.maxRuns`'s default: the newest this many run folders are listed. */
export const DEFAULT_MAX_RUNS = 200;
/**
 * Loss points kept per run in memory (and sent to a plot); a longer run keeps every point of its recent
 * stretch and thins the older ones. events.jsonl on disk keeps them all.
 */
export const MAX_POINTS_PER_SERIES = 5000;
/** The newest points are never thinned: the ETA and the terminal's echo read them. */
const RECENT_POINTS = 200;
/** Tasks kept per evaluation: MTEB's largest suites have a few hundred. */
const MAX_TASKS = 2000;
/** Folder entries looked at per refresh: a runs root with millions of names is not scanned whole every poll. */
const MAX_SCANNED = 20_000;
/** events.jsonl bytes read per run per refresh; a bigger file is read over the next polls. */
const EVENT_BYTES_PER_REFRESH = 64 * 1024 * 1024;

export interface LossPoint {
  step: number;
  loss: number;
  /** Milliseconds since the run started. */
  elapsedMs: number;
  /** The step's learning rate, tokens per second and memory (see RunSummary.memoryKind), where the event has them. */
  learningRate?: number;
  tokensPerSecond?: number;
  memoryBytes?: number;
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
  /** The name the user gave the run (name.json, src/runs/runName.ts); see runDisplayName for the one shown. */
  name?: string;
  runDir: string;
  verb: string;
  /** run.json's status as believed (see effectiveStatus); "unknown" for folders no worker of ours wrote. */
  status: RunState;
  record: RunRecord;
  model?: string;
  keep?: number;
  step?: number;
  totalSteps?: number;
  lastLoss?: number;
  tokensPerSecond?: number;
  /** The last step's model FLOPs utilisation (CUDA, bf16, a GPU of protocol/gpu-peaks.json). */
  mfu?: number;
  /** What a step's memoryBytes measures: the accelerator's peak allocation, or on a CPU the worker's resident memory. */
  memoryKind?: 'accelerator' | 'process RSS';
  /** train: the model's layers before the cut, and where it trains (model_loaded). */
  originalNumLayers?: number;
  device?: string;
  precision?: string;
  error?: string;
  checkpoints: number;
  losses: LossPoint[];
  /** Bumped whenever points already in `losses` were removed or thinned, so a reader knows to start over. */
  lossesEpoch?: number;
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
  /** run.json's identity when last parsed: an unchanged file is not read again. */
  fileKey?: string;
  /** Listed from its folder alone: run.json was too large to read. */
  unreadable?: boolean;
  /** name.json's identity when last read. */
  nameKey?: string;
}

export interface RunStoreOptions {
  /** How many runs to list at most, newest first by folder time (`l3prune.maxRuns`). */
  maxRuns?: () => number;
  /** Runs this extension launched: only those keep the poll fast while they run. */
  launchedHere?: (runDir: string) => boolean;
  /** Only these folders (the CLI's one run), whatever else the root holds. */
  include?: (runDir: string) => boolean;
}

/** Whether a pid is the run's own worker; a test passes a boolean (true: ours, false: gone). */
export type LivenessCheck = (pid: number, runDir: string) => boolean | Liveness;

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

  /** How often run.json was parsed: unchanged files must not be (a test counts). */
  readonly stats = { parses: 0 };
  private readonly maxRuns: () => number;
  private readonly launchedHere: (runDir: string) => boolean;
  private readonly include: (runDir: string) => boolean;

  constructor(
    private readonly root: () => string,
    private readonly liveness: LivenessCheck = (pid, runDir) => ownProcesses.liveness(pid, runDir),
    options: RunStoreOptions = {},
  ) {
    this.maxRuns = options.maxRuns ?? (() => DEFAULT_MAX_RUNS);
    this.launchedHere = options.launchedHere ?? ((runDir) => ownProcesses.launchedHere(runDir));
    this.include = options.include ?? (() => true);
  }

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

  /**
   * Whether the poll should be fast: a run this extension launched is live. A run folder that merely says it
   * is running (shipped, or another machine's) is followed at the idle pace.
   */
  wantsFastPoll(): boolean {
    return this.list().some((r) => r.status === 'running' && this.launchedHere(r.runDir));
  }

  /** Polls quickly while a run launched here is live, slowly otherwise (to notice runs started elsewhere). */
  start(liveMs = 1000, idleMs = 5000): void {
    this.polling = true;
    const tick = async () => {
      await this.refresh();
      // stop() may come while a refresh is in flight; the tick must not re-arm the timer after it.
      if (!this.polling) return;
      this.timer = setTimeout(tick, this.wantsFastPoll() ? liveMs : idleMs);
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

  /** Names a run (name.json in its folder) and shows the name at once; throws the sentence to show on failure. */
  rename(runDir: string, name: string): string {
    const key = path.resolve(runDir);
    const stored = writeRunName(key, name);
    const tracked = this.runs.get(key);
    if (tracked) {
      tracked.summary.name = stored;
      tracked.nameKey = undefined;
      this.readName(key);
    }
    this.fireChange();
    return stored;
  }

  /** name.json read again only when its size or time changed: one lstat per run per poll. */
  private readName(runDir: string): boolean {
    const tracked = this.runs.get(runDir);
    if (!tracked) return false;
    let key = 'none';
    try {
      const info = lstatSync(path.join(runDir, RUN_NAME_FILE));
      key = `${info.mtimeMs}|${info.size}|${info.ino}`;
    } catch {
      // No name given: the derived one.
    }
    if (key === tracked.nameKey) return false;
    tracked.nameKey = key;
    const name = key === 'none' ? undefined : readRunName(runDir);
    if (name === tracked.summary.name) return false;
    tracked.summary.name = name;
    return true;
  }

  async delete(runDir: string): Promise<void> {
    const key = path.resolve(runDir);
    await rm(key, { recursive: true, force: true });
    this.runs.delete(key);
    this.fireChange();
  }

  /** The newest run folders by folder time, at most maxRuns; links are no run folders of ours and are passed over. */
  private async runFolders(root: string): Promise<string[]> {
    const found: Array<{ runDir: string; mtimeMs: number }> = [];
    try {
      const dir = await opendir(root);
      let seen = 0;
      for await (const entry of dir) {
        if (++seen > MAX_SCANNED) break;
        if (!entry.isDirectory()) continue;
        const runDir = path.resolve(root, entry.name);
        if (!this.include(runDir)) continue;
        try {
          found.push({ runDir, mtimeMs: (await lstat(runDir)).mtimeMs });
        } catch {
          // Removed since the listing.
        }
      }
    } catch {
      return [];
    }
    const limit = Math.max(1, Math.floor(this.maxRuns()) || DEFAULT_MAX_RUNS);
    return found.sort((a, b) => b.mtimeMs - a.mtimeMs).slice(0, limit).map((f) => f.runDir);
  }

  private async doRefresh(): Promise<void> {
    const root = this.root();
    let changed = false;
    const present = new Set<string>();
    for (const runDir of await this.runFolders(root)) {
      const tracked = this.runs.get(runDir);
      const read = await readRunFile(runDir, tracked?.fileKey, () => this.stats.parses++);
      if (read.kind === 'none') continue;
      present.add(runDir);
      if (read.kind === 'too-large') {
        changed = this.unreadable(runDir, read.key, read.size) || changed;
        continue;
      }
      const record = read.kind === 'record' ? read.record : tracked!.summary.record;
      changed = (await this.update(runDir, record, read.key)) || changed;
      changed = this.readName(runDir) || changed;
    }
    for (const key of [...this.runs.keys()]) {
      if (!present.has(key)) {
        this.runs.delete(key);
        changed = true;
      }
    }
    if (changed) this.fireChange();
  }

  /** A run.json too large to be one the worker wrote: listed, so it can be seen and deleted, but not read. */
  private unreadable(runDir: string, key: string, size: number): boolean {
    const tracked = this.runs.get(runDir);
    if (tracked?.fileKey === key) return false;
    const at = new Date().toISOString();
    const record = {
      schemaVersion: 1, runId: path.basename(runDir), verb: 'unknown', spec: {}, status: 'failed', pid: 0,
      startedAt: at, heartbeatAt: at, endedAt: null, error: null, result: null,
    } as unknown as RunRecord;
    const message = `run.json is ${(size / 1024 / 1024).toFixed(1)} MB, over the ${MAX_RUN_FILE_BYTES / 1024 / 1024} MB a worker's run.json can reach, so it was not read`;
    this.runs.set(runDir, {
      fileKey: key,
      unreadable: true,
      tail: freshTail(),
      summary: { id: path.basename(runDir), runDir, verb: 'unknown', status: 'unknown', record, error: message, checkpoints: 0, losses: [] },
    });
    return true;
  }

  private async update(runDir: string, record: RunRecord, fileKey: string): Promise<boolean> {
    let tracked = this.runs.get(runDir);
    // A folder that was unreadable (too large) and now holds a real run.json starts over.
    if (tracked?.unreadable) tracked = undefined;
    const spec = record.spec as Record<string, unknown>;
    if (!tracked) {
      tracked = {
        fileKey,
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
    tracked.fileKey = fileKey;
    const { events, state } = await readNewEvents(runDir, tracked.tail, EVENT_BYTES_PER_REFRESH);
    tracked.tail = state;
    const started = Date.parse(record.startedAt);
    for (const event of events) {
      switch (event.event) {
        case 'step': {
          const step = Number(event.step);
          const loss = Number(event.loss);
          if (!Number.isFinite(step) || !Number.isFinite(loss)) break;
          // A resumed run repeats steps after its checkpoint: the later value replaces the earlier one.
          const kept = summary.losses.length;
          while (summary.losses.length && summary.losses[summary.losses.length - 1].step >= step) summary.losses.pop();
          const at = Date.parse(event.time);
          const point: LossPoint = { step, loss, elapsedMs: Number.isFinite(at) ? at - started : 0 };
          const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
          if (finite(event.learningRate)) point.learningRate = event.learningRate;
          if (finite(event.tokensPerSecond)) point.tokensPerSecond = event.tokensPerSecond;
          // A GPU run reports the accelerator's peak; a CPU run only the worker's resident memory (rssBytes).
          if (finite(event.gpuMemoryBytes)) {
            point.memoryBytes = event.gpuMemoryBytes;
            summary.memoryKind = 'accelerator';
          } else if (finite(event.rssBytes)) {
            point.memoryBytes = event.rssBytes;
            summary.memoryKind = 'process RSS';
          }
          summary.losses.push(point);
          if (summary.losses.length > MAX_POINTS_PER_SERIES) summary.losses = thinned(summary.losses);
          if (summary.losses.length <= kept) summary.lossesEpoch = (summary.lossesEpoch ?? 0) + 1;
          summary.step = step;
          summary.lastLoss = loss;
          summary.lastStepAt = at;
          if (typeof event.totalSteps === 'number') summary.totalSteps = event.totalSteps;
          if (typeof event.tokensPerSecond === 'number') summary.tokensPerSecond = event.tokensPerSecond;
          summary.mfu = typeof event.mfu === 'number' && Number.isFinite(event.mfu) ? event.mfu : undefined;
          break;
        }
        case 'checkpoint':
          summary.checkpoints++;
          break;
        case 'model_loaded':
          if (record.verb === 'evaluate' && typeof event.originalNumLayers === 'number') {
            summary.evaluation = { ...(summary.evaluation ?? { tasks: [] }), originalNumLayers: event.originalNumLayers };
          }
          if (record.verb === 'train') {
            if (Number.isSafeInteger(event.originalNumLayers)) summary.originalNumLayers = event.originalNumLayers as number;
            if (typeof event.device === 'string') summary.device = event.device.slice(0, 40);
            if (typeof event.precision === 'string') summary.precision = event.precision.slice(0, 10);
          }
          break;
        case 'error':
          if (typeof event.message === 'string') summary.error = event.message;
          break;
        case 'task_result': {
          const { task, taskType, metric, mainScore, seconds } = event as TaskScore & { event: string };
          summary.evaluation ??= { tasks: [] };
          const others = summary.evaluation.tasks.filter((t) => t.task !== task);
          if (others.length >= MAX_TASKS) break;
          // A task evaluated twice (a rerun into the same folder) keeps its latest score.
          summary.evaluation.tasks = [...others, { task, taskType, metric, mainScore, seconds }];
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
    summary.status = effectiveStatus(record, Date.now(), (pid) => this.liveness(pid, runDir));
    if (summary.status === 'failed' && !summary.error) {
      summary.error = record.error?.message ?? (record.status === 'running' ? 'the worker stopped without a word (killed or crashed)' : undefined);
    }
    return events.length > 0 || before !== `${summary.status}|${summary.step}|${summary.record.heartbeatAt}|${summary.checkpoints}`;
  }
}

/**
 * Every other point of the older part, the recent RECENT_POINTS all kept: halves the series, so thinning
 * happens once per MAX_POINTS_PER_SERIES / 2 steps and the curve keeps its shape.
 */
export function thinned(points: LossPoint[]): LossPoint[] {
  const cut = Math.max(0, points.length - RECENT_POINTS);
  const older = points.slice(0, cut).filter((_, i) => i % 2 === 0);
  return [...older, ...points.slice(cut)];
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
  // The evaluation's conditions (Compare flags rows measured differently); absent in runs of older workers.
  ...(e.maxExamples !== undefined ? { maxExamples: e.maxExamples } : {}),
  ...(e.examples ? { examples: { ...e.examples } } : {}),
  // evaluate --onnx: the exported graph that was scored (the Compare view's ONNX rows).
  ...(e.onnx ? { onnx: { folder: e.onnx.folder, precision: e.onnx.precision, provider: e.onnx.provider } } : {}),
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
  if (run.verb !== 'train') return false;
  if (run.status === 'cancelled') return true;
  // Refused input (run.json's error.resumable false: its data or model cannot be used) fails the same way
  // again: a resume reads the same spec back, so only a new run with other input can help.
  return run.status === 'failed' && run.record.error?.resumable !== false;
}

/** An export's precision as its resolved spec says (runs made before fp16 exports have none: fp32); any other value a folder holds reads as fp32. */
export function exportPrecision(run: RunSummary): 'fp32' | 'fp16' | 'int8' | undefined {
  if (run.verb !== 'export-onnx') return undefined;
  const precision = (run.record.spec as { precision?: unknown }).precision;
  return precision === 'fp16' || precision === 'int8' ? precision : 'fp32';
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

/**
 * The name a run is shown by (Runs tree, its page's title, the plot legends): the user's, else
 * "<model> · keep <n> · <HH:MM>" for a training run, "<verb> <model> · <HH:MM>" for any other.
 */
export function runDisplayName(run: RunSummary, modelName: string): string {
  if (run.name) return run.name;
  const time = clockTime(run.record.startedAt);
  return run.verb === 'train' ? `${modelName} · keep ${run.keep ?? '?'} · ${time}` : `${run.verb} ${modelName} · ${time}`;
}
