import { EventEmitter } from 'node:events';
import { readdir, rm } from 'node:fs/promises';
import * as path from 'node:path';
import type { RunRecord, RunStatus } from '../protocol/workerEvents';
import { effectiveStatus, freshTail, processIsAlive, readNewEvents, readRunRecord, type TailState } from './runFolder';

export interface LossPoint {
  step: number;
  loss: number;
  /** Milliseconds since the run started. */
  elapsedMs: number;
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
export class RunStore extends EventEmitter {
  private readonly runs = new Map<string, Tracked>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly root: () => string,
    private readonly isAlive: (pid: number) => boolean = processIsAlive,
  ) {
    super();
  }

  list(): RunSummary[] {
    return [...this.runs.values()].map((t) => t.summary).sort((a, b) => b.record.startedAt.localeCompare(a.record.startedAt));
  }

  get(runDir: string): RunSummary | undefined {
    return this.runs.get(path.resolve(runDir))?.summary;
  }

  /** Polls quickly while a run is live, slowly otherwise (to notice runs started elsewhere). */
  start(liveMs = 1000, idleMs = 5000): void {
    const tick = async () => {
      await this.refresh();
      const live = this.list().some((r) => r.status === 'running');
      this.timer = setTimeout(tick, live ? liveMs : idleMs);
    };
    void tick();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
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
    this.emit('change');
  }

  private async doRefresh(): Promise<void> {
    const root = this.root();
    let names: string[] = [];
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
    if (changed) this.emit('change');
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
        case 'error':
          if (typeof event.message === 'string') summary.error = event.message;
          break;
      }
    }
    summary.status = effectiveStatus(record, Date.now(), this.isAlive);
    if (summary.status === 'failed' && !summary.error) {
      summary.error = record.error?.message ?? (record.status === 'running' ? 'the worker stopped without a word (killed or crashed)' : undefined);
    }
    return events.length > 0 || before !== `${summary.status}|${summary.step}|${summary.record.heartbeatAt}|${summary.checkpoints}`;
  }
}

/** A failed or cancelled training run with at least one checkpoint can continue where it stopped. */
export function isResumable(run: RunSummary): boolean {
  return run.verb === 'train' && (run.status === 'failed' || run.status === 'cancelled') && run.checkpoints > 0;
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
