import { readFileSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';

/**
 * The only module that signals processes. A pid comes from run.json, and run.json is workspace data: a cloned
 * repository can ship `"pid": 1` (kill(-1) reaches every process the user owns), `"pid": 0` (the extension
 * host's own group) or the pid of anything else the user runs. So a pid is acted on only when it is, by
 * evidence this module gathers itself, a worker of that very run folder: on Linux its /proc cmdline is
 * `… -m l3prune <verb> … --run-dir <the run folder>` and it leads its process group (our detached launch
 * makes it do so) or its group is one we launched for that folder; where there is no /proc, only a pid this
 * extension launched for that folder (kept in the extension's state, never in a workspace file) counts.
 */

/** The kill(2) call, injectable so tests can record what would have been signalled. */
export type Kill = (pid: number, signal: NodeJS.Signals | 0) => void;

export interface ProcInfo {
  argv: string[];
  /** Process group id, from /proc/<pid>/stat. */
  pgid: number;
  /** The process's working directory, to resolve a relative --run-dir (undefined where unreadable). */
  cwd?: string;
}

/** What /proc says about a pid: its info, `undefined` if there is no such process, `null` if /proc is not there. */
export type ReadProc = (pid: number) => ProcInfo | undefined | null;

/** Where a pid stands for a run: our worker of it, some other live process, or nothing. */
export type Liveness = 'ours' | 'foreign' | 'gone';

/** The part of VS Code's Memento used here, structurally, so the registry is tested without VS Code. */
export interface StateStore {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): PromiseLike<void>;
}

interface Launched {
  pid: number;
  runDir: string;
  at: number;
}

const STATE_KEY = 'l3prune.launchedWorkers';
/** Launches kept across reloads; older ones cannot still be running a run anyone follows. */
const MAX_KEPT = 100;
const KEEP_MS = 30 * 24 * 3600 * 1000;

/** pid 0 and 1 and anything not a positive integer would reach a group or every process: never a worker's. */
export function isWellFormedPid(pid: unknown): pid is number {
  return typeof pid === 'number' && Number.isSafeInteger(pid) && pid > 1;
}

/** The verb and run folder of a worker command line (`… -m l3prune VERB … --run-dir DIR`), else undefined. */
export function workerCommand(argv: readonly string[], cwd?: string): { verb: string; runDir: string } | undefined {
  const at = argv.findIndex((arg, i) => arg === '-m' && argv[i + 1] === 'l3prune');
  if (at < 0) return undefined;
  const verb = argv[at + 2];
  if (!verb || verb.startsWith('-')) return undefined;
  let runDir: string | undefined;
  for (let i = at + 3; i < argv.length; i++) {
    if (argv[i] === '--run-dir' && i + 1 < argv.length) runDir = argv[i + 1];
    else if (argv[i].startsWith('--run-dir=')) runDir = argv[i].slice('--run-dir='.length);
  }
  if (!runDir) return undefined;
  if (!path.isAbsolute(runDir)) {
    if (!cwd) return undefined;
    runDir = path.resolve(cwd, runDir);
  }
  return { verb, runDir: path.resolve(runDir) };
}

/** /proc/<pid>: argv from cmdline, the group from stat (after the last ')', since comm may hold spaces and parens). */
export function readProcLinux(pid: number): ProcInfo | undefined | null {
  if (process.platform !== 'linux') return null;
  let cmdline: string;
  let stat: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // No such process; or /proc is hidden from us (hidepid), in which case nothing can be proved.
    return code === 'ENOENT' || code === 'ESRCH' ? undefined : null;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const pgid = Number(fields[2]);
  if (!Number.isSafeInteger(pgid)) return undefined;
  let cwd: string | undefined;
  try {
    cwd = readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    cwd = undefined;
  }
  return { argv: cmdline.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1), pgid, cwd };
}

const defaultKill: Kill = (pid, signal) => void process.kill(pid, signal);

export class OwnProcesses {
  private readonly launched = new Map<number, Launched>();
  /** Children spawned by this extension host and not yet exited: their pids cannot have been reused. */
  private readonly children = new Set<number>();
  private state: StateStore | undefined;

  constructor(
    private readonly kill: Kill = defaultKill,
    private readonly readProc: ReadProc = readProcLinux,
  ) {}

  /** Loads the launches of earlier sessions (a reload reattaches to a run still going). */
  attach(state: StateStore): void {
    this.state = state;
    const now = Date.now();
    const kept = state.get<Launched[]>(STATE_KEY);
    if (!Array.isArray(kept)) return;
    for (const entry of kept) {
      if (entry && isWellFormedPid(entry.pid) && typeof entry.runDir === 'string' && typeof entry.at === 'number' && now - entry.at < KEEP_MS) {
        this.launched.set(entry.pid, { pid: entry.pid, runDir: path.resolve(entry.runDir), at: entry.at });
      }
    }
  }

  /** Records a worker this extension just spawned for a run folder (and, while it runs, as our child). */
  remember(pid: number | undefined, runDir: string | undefined, onExit?: (listener: () => void) => void): void {
    if (!isWellFormedPid(pid)) return;
    this.children.add(pid);
    onExit?.(() => this.children.delete(pid));
    if (!runDir) return;
    this.launched.set(pid, { pid, runDir: path.resolve(runDir), at: Date.now() });
    void this.persist();
  }

  /** Whether this extension launched a worker for the run folder (a run it may follow closely). */
  launchedHere(runDir: string): boolean {
    const key = path.resolve(runDir);
    for (const entry of this.launched.values()) if (entry.runDir === key) return true;
    return false;
  }

  /**
   * The process group to signal for the run's worker, or undefined when `pid` is not provably it. On Linux the
   * launch record alone is not enough: a worker that exited long ago may have left its pid to another process.
   */
  workerGroup(pid: unknown, runDir: string): number | undefined {
    if (!isWellFormedPid(pid)) return undefined;
    const key = path.resolve(runDir);
    const info = this.readProc(pid);
    if (info === null) {
      const entry = this.launched.get(pid);
      return entry?.runDir === key && this.exists(pid) ? pid : undefined;
    }
    if (!info || workerCommand(info.argv, info.cwd)?.runDir !== key) return undefined;
    if (info.pgid === pid) return pid;
    // A launcher that did not exec python (a shell wrapper) leads the group the worker runs in.
    const leader = this.launched.get(info.pgid);
    return leader?.runDir === key && isWellFormedPid(info.pgid) ? info.pgid : undefined;
  }

  liveness(pid: unknown, runDir: string): Liveness {
    if (!isWellFormedPid(pid)) return 'gone';
    if (this.workerGroup(pid, runDir) !== undefined) return 'ours';
    return this.exists(pid) ? 'foreign' : 'gone';
  }

  /**
   * Cancel: SIGTERM to the run's worker group, which finishes its step, checkpoints and exits "cancelled".
   * Returns false, signalling nothing, when the pid is not the run's worker.
   */
  signalRun(pid: unknown, runDir: string, signal: NodeJS.Signals = 'SIGTERM'): boolean {
    const group = this.workerGroup(pid, runDir);
    if (group === undefined) return false;
    return this.signalGroup(group, signal);
  }

  /** A signal to the group of a child this host spawned and still holds (not exited, so its pid is its own). */
  signalChild(pid: number | undefined, signal: NodeJS.Signals): boolean {
    if (!isWellFormedPid(pid) || !this.children.has(pid)) return false;
    return this.signalGroup(pid, signal);
  }

  private signalGroup(group: number, signal: NodeJS.Signals): boolean {
    try {
      this.kill(process.platform === 'win32' ? group : -group, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** /proc where there is one; else signal 0, which only asks whether the pid exists (EPERM: someone else's). */
  private exists(pid: number): boolean {
    const info = this.readProc(pid);
    if (info !== null) return info !== undefined;
    try {
      this.kill(pid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
  }

  private async persist(): Promise<void> {
    if (!this.state) return;
    const now = Date.now();
    const kept = [...this.launched.values()].filter((e) => now - e.at < KEEP_MS).sort((a, b) => b.at - a.at).slice(0, MAX_KEPT);
    try {
      await this.state.update(STATE_KEY, kept);
    } catch {
      // The record is a convenience for reattaching; /proc still identifies our workers without it.
    }
  }
}

/** The extension host's one registry; extension.ts attaches it to globalState. */
export const ownProcesses = new OwnProcesses();
