import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, linkSync, lstatSync, mkdirSync, readFileSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync, chmodSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { evaluateArgs, exportOnnxArgs, variantModelFolders, type Variant } from '../../src/compare/variantRuns';
import { effectiveStatus, markCancelledIfRunning, UNKNOWN_STATE_TEXT } from '../../src/runs/runFolder';
import { ensureRunsRoot, GITIGNORE_TEXT, newRunDir } from '../../src/runs/runDirs';
import { isResumable, MAX_POINTS_PER_SERIES, RunStore } from '../../src/runs/runStore';
import { createExclusive, linksInRunFolder, openAppend, runFolderLinkProblem } from '../../src/runs/safeFiles';
import { consentFieldsIn, specFromDefinition, type TrainTaskDefinition } from '../../src/runs/trainDefinition';
import { cancelRun, launchTrain } from '../../src/runs/trainLauncher';
import type { RunRecord } from '../../src/shared/protocol/workerEvents';
import { escapeMarkdown } from '../../src/views/markdownText';
import { isWellFormedPid, OwnProcesses, readProcLinux, workerCommand, type Kill, type StateStore } from '../../src/worker/ownProcesses';
import { RemoteCodeConsent, reviewModelCode, TRUSTED_CODE_KEY, type CodeReview } from '../../src/worker/remoteCode';
import { pipInstallArgs, workerCwd, workerEnv } from '../../src/worker/workerEnv';
import { iso, writeRunFolder as writeRun } from '../fixtures/runFolders';
import { subdir, useTempDir } from '../fixtures/tmp';

/**
 * A cloned repository can ship run folders, model folders and tasks.json entries. Each test here builds the
 * hostile fixture and shows the attack fails: no process is signalled, no code runs without the dialog's
 * yes, no write follows a link, no read is unbounded. docs/reliability.md ("Hostile workspace") lists them.
 */

const linux = process.platform === 'linux';


/** A kill(2) that only records: what an attack would have signalled. */
function recordingKill(): { kill: Kill; signalled: Array<[number, NodeJS.Signals | 0]> } {
  const signalled: Array<[number, NodeJS.Signals | 0]> = [];
  return {
    signalled,
    kill: (pid, signal) => {
      signalled.push([pid, signal]);
      if (signal === 0) process.kill(pid, 0);
    },
  };
}

async function started(child: ChildProcess): Promise<number> {
  await new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  return child.pid!;
}

/** A process whose /proc cmdline is the worker's for `runDir`: node, with argv shaped like `python -m l3prune train`. */
function workerLike(runDir: string, detached: boolean): ChildProcess {
  return spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', '--', '-m', 'l3prune', 'train', '--run-dir', runDir], { detached, stdio: 'ignore' });
}

class MemoryState implements StateStore {
  readonly values = new Map<string, unknown>();
  get<T>(key: string): T | undefined {
    return this.values.get(key) as T | undefined;
  }
  async update(key: string, value: unknown): Promise<void> {
    this.values.set(key, value);
  }
}

async function waitFor(file: string, ms = 10_000): Promise<string> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (existsSync(file)) {
      const text = readFileSync(file, 'utf8');
      if (text.includes('END')) return text;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${file} did not appear`);
}

/** A stand-in interpreter that writes its argv, working directory and PYTHONSAFEPATH to $L3_ARGS_OUT. */
function fakePython(dir: string): string {
  const file = path.join(dir, 'python');
  writeFileSync(file, '#!/bin/sh\n{ printf "%s\\n" "$@"; echo "CWD=$(pwd)"; echo "SAFE=$PYTHONSAFEPATH"; echo END; } > "$L3_ARGS_OUT"\n');
  chmodSync(file, 0o755);
  return file;
}

describe('hostile workspace: only our own processes are signalled', function () {
  this.timeout(30_000);
  const dir = useTempDir('l3prune-hostile-pids-');
  const children: ChildProcess[] = [];
  after(() => {
    for (const child of children) {
      try {
        child.kill('SIGKILL');
      } catch {
        // gone already
      }
    }
  });

  it('a shipped run with pid 1, pid 0, an unrelated live pid or a heartbeat in 2999 is "unknown": nothing is signalled, delete is allowed', async function () {
    if (!linux) this.skip();
    const root = subdir(dir, 'shipped');
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    const selfLike = workerLike(path.join(root, 'future'), true);
    children.push(sleeper, selfLike);
    const [sleepPid, selfLikePid] = await Promise.all([started(sleeper), started(selfLike)]);
    const runs = {
      pid1: writeRun(root, 'pid1', { pid: 1, heartbeatAt: '2999-01-01T00:00:00Z' }),
      pid0: writeRun(root, 'pid0', { pid: 0 }),
      unrelated: writeRun(root, 'unrelated', { pid: sleepPid }),
      // Even the pid of a real worker of this very folder does not make a heartbeat from the future live.
      future: writeRun(root, 'future', { pid: selfLikePid, heartbeatAt: '2999-01-01T00:00:00Z' }),
    };
    const { kill, signalled } = recordingKill();
    const own = new OwnProcesses(kill);
    const store = new RunStore(() => root, (pid, runDir) => own.liveness(pid, runDir));
    await store.refresh();
    for (const [name, runDir] of Object.entries(runs)) {
      const run = store.get(runDir)!;
      assert.ok(run, name);
      assert.equal(run.status, 'unknown', `${name} shows as ${UNKNOWN_STATE_TEXT}`);
      assert.notEqual(run.status, 'running', `${name}: Delete Run applies (it refuses only running runs) and Cancel is not offered`);
      assert.equal(isResumable(run), false);
      assert.equal(cancelRun(run, own), false, `${name}: cancel refuses`);
    }
    assert.deepEqual(signalled.filter(([, signal]) => signal !== 0), [], 'no process was signalled');
    assert.deepEqual(signalled.filter(([pid]) => pid <= 1), [], 'not even signal 0 reached pid 0, 1 or a group');
    assert.equal(sleeper.exitCode, null, 'the unrelated process still runs');
    for (const runDir of Object.values(runs)) await store.delete(runDir);
    assert.equal(store.list().length, 0);
  });

  it('refuses malformed pids outright (≤ 1, negative, fractional, strings, NaN)', () => {
    const { kill, signalled } = recordingKill();
    const own = new OwnProcesses(kill, () => null);
    for (const pid of [1, 0, -1, -4242, 1.5, '4242', NaN, Infinity, null, undefined]) {
      assert.equal(isWellFormedPid(pid), false, String(pid));
      assert.equal(own.signalRun(pid, '/runs/x'), false, String(pid));
    }
    assert.deepEqual(signalled, []);
    const record = { status: 'running', pid: 1, heartbeatAt: iso(Date.now()) } as RunRecord;
    assert.equal(effectiveStatus(record, Date.now(), () => true), 'unknown', 'pid 1 is never a live worker, whatever liveness says');
    assert.equal(effectiveStatus({ ...record, pid: 4242, heartbeatAt: iso(Date.now() + 61_000) }, Date.now(), () => true), 'unknown', 'a heartbeat over a minute ahead');
    assert.equal(effectiveStatus({ ...record, pid: 4242, heartbeatAt: iso(Date.now() + 30_000) }, Date.now(), () => true), 'running', 'a little clock skew is fine');
  });

  it('recognises a real worker of the run folder that leads its process group, and signals only its group', async function () {
    if (!linux) this.skip();
    const root = subdir(dir, 'real');
    const runDir = path.join(root, 'train-real');
    const worker = workerLike(runDir, true);
    children.push(worker);
    const pid = await started(worker);
    writeRun(root, 'train-real', { pid });
    const info = readProcLinux(pid)!;
    assert.equal(info.pgid, pid, 'a detached launch leads its group');
    assert.deepEqual(workerCommand(info.argv), { verb: 'train', runDir });
    const { kill, signalled } = recordingKill();
    const own = new OwnProcesses(kill);
    const store = new RunStore(() => root, (p, d) => own.liveness(p, d));
    await store.refresh();
    const run = store.get(runDir)!;
    assert.equal(run.status, 'running');
    assert.equal(cancelRun(run, own), true);
    assert.deepEqual(signalled.filter(([, s]) => s !== 0), [[-pid, 'SIGTERM']]);
  });

  it('the same command line for another run folder, or one that does not lead its group, is not ours', async function () {
    if (!linux) this.skip();
    const root = subdir(dir, 'impostors');
    const runDir = path.join(root, 'train-x');
    const elsewhere = workerLike(path.join(root, 'train-other'), true);
    const grouped = workerLike(runDir, false);
    children.push(elsewhere, grouped);
    const { kill, signalled } = recordingKill();
    const own = new OwnProcesses(kill);
    for (const pid of await Promise.all([started(elsewhere), started(grouped)])) {
      assert.equal(own.liveness(pid, runDir), 'foreign');
      assert.equal(own.signalRun(pid, runDir), false);
    }
    assert.deepEqual(signalled.filter(([, s]) => s !== 0), []);
  });

  it('without /proc, only a pid this extension launched for that folder counts, kept in its own state', async () => {
    const { kill, signalled } = recordingKill();
    const state = new MemoryState();
    const own = new OwnProcesses(kill, () => null);
    own.attach(state);
    own.remember(process.pid, '/runs/ours');
    const reloaded = new OwnProcesses(kill, () => null);
    reloaded.attach(state);
    assert.equal(reloaded.launchedHere('/runs/ours'), true, 'the record survives a reload in global state');
    assert.equal(reloaded.workerGroup(process.pid, '/runs/elsewhere'), undefined, 'not for another folder');
    assert.equal(new OwnProcesses(kill, () => null).workerGroup(process.pid, '/runs/ours'), undefined, 'nothing launched, nothing ours');
    assert.equal(reloaded.workerGroup(process.pid, '/runs/ours'), process.pid);
    assert.deepEqual(signalled.filter(([, s]) => s !== 0), []);
    assert.equal(own.signalChild(4242, 'SIGTERM'), false, 'a pid that is not our live child is never signalled');
  });
});

describe('hostile workspace: consent is never data', function () {
  this.timeout(30_000);
  const dir = useTempDir('l3prune-hostile-consent-');

  function codeModel(name: string, autoMap = true): string {
    const folder = subdir(dir, name);
    writeFileSync(path.join(folder, 'config.json'), JSON.stringify({ model_type: 'evil', num_hidden_layers: 2, ...(autoMap ? { auto_map: { AutoModel: 'modeling_evil.EvilModel' } } : {}) }));
    writeFileSync(path.join(folder, 'modeling_evil.py'), 'import os\nos.system("touch /tmp/pwned")\n');
    // What a merged model of a hostile train run would say: not consent either.
    writeFileSync(path.join(folder, 'l3prune_encoder.json'), JSON.stringify({ pooling: 'mean', maxLength: 32, trustRemoteCode: true }));
    return folder;
  }

  it('a tasks.json recipe with trustRemoteCode: true is dropped, and the spec says false', () => {
    const d: TrainTaskDefinition = { type: 'l3prune', verb: 'train', model: 'm', keep: 2, data: 'd.jsonl', recipe: { trustRemoteCode: true } };
    assert.deepEqual(consentFieldsIn(d), ['trustRemoteCode']);
    assert.equal(specFromDefinition(d, '/ws').trustRemoteCode, false);
    assert.deepEqual(consentFieldsIn({ recipe: { learningRate: 1e-4 } }), []);
  });

  it('asks once per model folder, naming it and its .py files; remembers the answer until the code changes', async () => {
    const folder = codeModel('evil');
    const state = new MemoryState();
    const asked: CodeReview[] = [];
    let answer = true;
    const consent = new RemoteCodeConsent(state, async (review) => {
      asked.push(review);
      return answer;
    });
    assert.equal(await consent.decide([folder]), 'trusted');
    assert.equal(asked.length, 1);
    assert.equal(asked[0].folder, folder);
    assert.deepEqual(asked[0].pyFiles, ['modeling_evil.py']);
    assert.match(asked[0].hash, /^[0-9a-f]{64}$/);
    assert.equal(await consent.decide([folder]), 'trusted');
    assert.equal(asked.length, 1, 'the same code is not asked about again');
    writeFileSync(path.join(folder, 'modeling_evil.py'), 'print("changed")\n');
    answer = false;
    assert.equal(await consent.decide([folder]), 'refused', 'changed code is a new question; no is no');
    assert.equal(asked.length, 2);
    writeFileSync(path.join(folder, 'helper.py'), 'x = 1\n');
    assert.notEqual((await reviewModelCode(folder)).hash, asked[1].hash, 'a new .py file changes the hash');
  });

  it('never asks, and never passes the flag, for a folder without auto_map, whatever its files say', async () => {
    const plain = codeModel('plain', false);
    const state = new MemoryState();
    let asked = 0;
    const consent = new RemoteCodeConsent(state, async () => {
      asked++;
      return true;
    });
    assert.equal(await consent.decide([plain]), 'none');
    assert.equal(asked, 0);
    assert.equal(state.get(TRUSTED_CODE_KEY), undefined);
  });

  it('a trained variant from a shipped train run (spec trustRemoteCode: true) gets no flag without consent; its merged model/ is reviewed too', async () => {
    const runDir = subdir(dir, 'train-shipped');
    const merged = codeModel(path.join('train-shipped', 'model'));
    const variant: Variant = { kind: 'trained', model: '/models/base', keep: 2, fromRun: runDir };
    assert.deepEqual(variantModelFolders(variant), [merged, '/models/base']);
    assert.ok(!evaluateArgs({ python: 'p', runDir: '/r', variant }).includes('--trust-remote-code'));
    assert.ok(!exportOnnxArgs({ python: 'p', runDir: '/r', variant }).includes('--trust-remote-code'));
    assert.ok(evaluateArgs({ python: 'p', runDir: '/r', variant, trustRemoteCode: true }).includes('--trust-remote-code'));
    let asked = 0;
    const refused = new RemoteCodeConsent(new MemoryState(), async () => (asked++, false));
    assert.equal(await refused.decide(variantModelFolders(variant)), 'refused');
    assert.equal(asked, 1);
  });

  it('launchTrain writes trustRemoteCode: false into spec.json and passes --trust-remote-code only for consent', async () => {
    const root = subdir(dir, 'launch');
    const python = fakePython(root);
    const spec = { ...specFromDefinition({ type: 'l3prune', verb: 'train', model: '/m', keep: 2, data: '/d' }), trustRemoteCode: true };
    for (const consent of [false, true]) {
      const runDir = path.join(root, `train-${consent}`);
      const out = path.join(root, `args-${consent}`);
      await launchTrain(python, runDir, spec, { trustRemoteCode: consent, env: { L3_ARGS_OUT: out } });
      const args = (await waitFor(out)).split('\n');
      assert.equal(JSON.parse(readFileSync(path.join(runDir, 'spec.json'), 'utf8')).trustRemoteCode, false);
      assert.equal(args.includes('--trust-remote-code'), consent);
    }
  });
});

describe('hostile workspace: no write follows a link we did not make', function () {
  this.timeout(30_000);
  const dir = useTempDir('l3prune-hostile-links-');

  it('resuming a shipped run whose worker.log links to ~/.bashrc is refused before anything is spawned; the victim is unchanged', async () => {
    const root = subdir(dir, 'resume');
    const victim = path.join(root, 'bashrc');
    writeFileSync(victim, 'export PATH=/usr/bin\n');
    const runDir = writeRun(root, 'train-shipped', { status: 'failed', pid: 4242 });
    symlinkSync(victim, path.join(runDir, 'worker.log'));
    const out = path.join(root, 'args');
    await assert.rejects(launchTrain(fakePython(root), runDir, undefined, { resume: true, env: { L3_ARGS_OUT: out } }), /symbolic links \(worker\.log\)/);
    assert.equal(readFileSync(victim, 'utf8'), 'export PATH=/usr/bin\n');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(existsSync(out), false, 'the worker never started');
  });

  it('finds links in a run folder one level down and in checkpoints/', async () => {
    const root = subdir(dir, 'scan');
    const runDir = writeRun(root, 'train-links', { status: 'failed' });
    mkdirSync(path.join(runDir, 'checkpoints', 'step-1'), { recursive: true });
    symlinkSync('/etc/passwd', path.join(runDir, 'checkpoints', 'step-1', 'state.json'));
    symlinkSync('/tmp', path.join(runDir, 'checkpoints', 'step-2'));
    assert.deepEqual(linksInRunFolder(runDir).sort(), ['checkpoints/step-1/state.json', 'checkpoints/step-2']);
    assert.match(runFolderLinkProblem(runDir)!, /symbolic links/);
    assert.equal(runFolderLinkProblem(writeRun(root, 'train-clean', { status: 'failed' })), undefined);
    const linked = path.join(root, 'train-linked');
    symlinkSync(path.join(root, 'train-clean'), linked);
    assert.deepEqual(linksInRunFolder(linked), ['.'], 'a run folder that is itself a link');
    const store = new RunStore(() => root, () => false);
    await store.refresh();
    assert.equal(store.get(linked), undefined, 'and it is not listed');
    assert.ok(store.get(path.join(root, 'train-clean')));
  });

  it('creates files exclusively and appends only to a regular file with one name', () => {
    const root = subdir(dir, 'files');
    const victim = path.join(root, 'victim');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, path.join(root, 'spec.json'));
    symlinkSync(path.join(root, 'nowhere'), path.join(root, 'dangling'));
    assert.throws(() => createExclusive(path.join(root, 'spec.json'), '{}'), /EEXIST/);
    assert.throws(() => createExclusive(path.join(root, 'dangling'), '{}'), /EEXIST/);
    assert.equal(existsSync(path.join(root, 'nowhere')), false, 'a dangling link is not followed to create its target');
    assert.throws(() => openAppend(path.join(root, 'spec.json')), /symbolic link/);
    linkSync(victim, path.join(root, 'hard.log'));
    assert.throws(() => openAppend(path.join(root, 'hard.log')), /hard link/);
    assert.equal(readFileSync(victim, 'utf8'), 'precious');
    const log = path.join(root, 'worker.log');
    writeFileSync(log, 'a\n');
    const fd = openAppend(log);
    writeFileSync(fd, 'b\n');
    closeSync(fd);
    assert.equal(readFileSync(log, 'utf8'), 'a\nb\n');
  });

  it('marking a run cancelled replaces run.json, never what a planted temp-file link points to', async () => {
    const root = subdir(dir, 'cancel');
    const runDir = writeRun(root, 'train-c');
    const victim = path.join(root, 'victim');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, path.join(runDir, 'run.json.ext.tmp'));
    await markCancelledIfRunning(runDir);
    assert.equal(readFileSync(victim, 'utf8'), 'precious');
    assert.equal(JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')).status, 'cancelled');
  });

  it('the first run writes .l3prune/.gitignore exclusively; shipped links for it or for runs/ are not followed', async () => {
    const ws = subdir(dir, 'ws');
    const root = path.join(ws, '.l3prune', 'runs');
    const runDir = await newRunDir(root, 'train');
    assert.equal(path.dirname(runDir), root);
    assert.equal(readFileSync(path.join(ws, '.l3prune', '.gitignore'), 'utf8'), GITIGNORE_TEXT);
    assert.match(GITIGNORE_TEXT, /^#.*\n\*\n$/);
    writeFileSync(path.join(ws, '.l3prune', '.gitignore'), 'mine\n');
    await ensureRunsRoot(root);
    assert.equal(readFileSync(path.join(ws, '.l3prune', '.gitignore'), 'utf8'), 'mine\n', "the user's own file is kept");

    const hostile = subdir(dir, 'hostile-ws');
    const victim = path.join(hostile, 'bashrc');
    writeFileSync(victim, 'precious');
    mkdirSync(path.join(hostile, '.l3prune'));
    symlinkSync(victim, path.join(hostile, '.l3prune', '.gitignore'));
    symlinkSync(subdir(dir, 'elsewhere'), path.join(hostile, '.l3prune', 'runs'));
    await assert.rejects(newRunDir(path.join(hostile, '.l3prune', 'runs'), 'train'), /symbolic link/);
    assert.equal(readFileSync(victim, 'utf8'), 'precious');
  });
});

describe('hostile workspace: bounded reading', function () {
  this.timeout(60_000);
  const dir = useTempDir('l3prune-hostile-reads-');

  it('20 shipped 15 MB run.json files and a fake live run: refreshes stay fast, nothing is re-parsed, the poll stays slow', async () => {
    const root = subdir(dir, 'big');
    const big = 15 * 1024 * 1024;
    for (let i = 0; i < 20; i++) {
      const runDir = subdir(dir, path.join('big', `train-big-${i}`));
      const file = path.join(runDir, 'run.json');
      if (i === 0) {
        // One with real content, a valid record padded out; the rest sparse files of the same size.
        writeFileSync(file, JSON.stringify({ schemaVersion: 1, runId: 'x', verb: 'train', spec: { pad: 'x'.repeat(big) }, status: 'running', pid: process.pid, startedAt: iso(0), heartbeatAt: iso(Date.now()), endedAt: null, error: null, result: null }));
      } else {
        writeFileSync(file, '');
        truncateSync(file, big);
      }
    }
    const live = writeRun(root, 'train-live-foreign');
    const store = new RunStore(() => root, () => true, { launchedHere: () => false });
    const heapBefore = process.memoryUsage().heapUsed;
    await store.refresh();
    assert.equal(store.stats.parses, 1, 'only the small run.json was parsed');
    const started = performance.now();
    await store.refresh();
    const ms = performance.now() - started;
    assert.ok(ms < 300, `a refresh after the first took ${ms.toFixed(0)} ms`);
    assert.equal(store.stats.parses, 1, 'an unchanged run.json is not parsed again');
    const runs = store.list();
    assert.equal(runs.length, 21);
    const unreadable = runs.filter((r) => r.id.startsWith('train-big-'));
    assert.equal(unreadable.length, 20);
    for (const run of unreadable) {
      assert.equal(run.status, 'unknown');
      assert.match(run.error ?? '', /run\.json is 15\.0 MB, over the 1 MB/);
    }
    assert.ok(process.memoryUsage().heapUsed - heapBefore < 64 * 1024 * 1024, 'no 15 MB string is held');
    assert.equal(store.get(live)?.status, 'running');
    assert.equal(store.wantsFastPoll(), false, 'a live run this window did not launch keeps the idle pace');
    const ours = new RunStore(() => root, () => true, { launchedHere: (runDir) => runDir === live });
    await ours.refresh();
    assert.equal(ours.wantsFastPoll(), true);
  });

  it('lists at most maxRuns, the newest by folder time', async () => {
    const root = subdir(dir, 'many');
    for (let i = 0; i < 6; i++) {
      const runDir = writeRun(root, `run-${i}`, { status: 'succeeded', startedAt: iso(i * 1000) });
      utimesSync(runDir, new Date(1_000_000 + i * 1000), new Date(1_000_000 + i * 1000));
    }
    const store = new RunStore(() => root, () => false, { maxRuns: () => 3 });
    await store.refresh();
    assert.deepEqual(store.list().map((r) => r.id).sort(), ['run-3', 'run-4', 'run-5']);
  });

  it('keeps at most MAX_POINTS_PER_SERIES loss points per run, the first and the recent ones among them', async () => {
    const root = subdir(dir, 'points');
    const steps = 12_000;
    const now = Date.now();
    const lines: string[] = [];
    for (let step = 1; step <= steps; step++) lines.push(JSON.stringify({ event: 'step', time: iso(now), step, loss: 1 / step }));
    const runDir = writeRun(root, 'train-long', { status: 'succeeded' }, `${lines.join('\n')}\n`);
    const store = new RunStore(() => root, () => false);
    await store.refresh();
    const run = store.get(runDir)!;
    assert.ok(run.losses.length <= MAX_POINTS_PER_SERIES, `${run.losses.length} points kept`);
    assert.equal(run.losses[0].step, 1);
    assert.deepEqual(run.losses.slice(-3).map((p) => p.step), [steps - 2, steps - 1, steps]);
    assert.equal(run.step, steps);
    assert.ok(run.losses.every((p, i) => i === 0 || p.step > run.losses[i - 1].step), 'still in step order');
    assert.ok((run.lossesEpoch ?? 0) > 0, 'thinning tells the plot feed to resend the series');
  });
});

describe('hostile workspace: smaller holes', function () {
  this.timeout(30_000);
  const dir = useTempDir('l3prune-hostile-misc-');

  it('the worker starts outside the workspace, with PYTHONSAFEPATH=1 that no caller can unset', async () => {
    const env = workerEnv({ PYTHONSAFEPATH: '' });
    assert.equal(env.PYTHONSAFEPATH, '1');
    const cwd = workerCwd();
    assert.notEqual(path.resolve(cwd), path.resolve(process.cwd()));
    assert.equal(lstatSync(cwd).isDirectory(), true);
    if (process.platform !== 'win32') assert.equal(statSync(cwd).mode & 0o077, 0, 'no one else can plant a package there');
    // A workspace with its own l3prune/ package: the launched worker does not start next to it.
    const root = subdir(dir, 'ws');
    mkdirSync(path.join(root, 'l3prune'));
    writeFileSync(path.join(root, 'l3prune', '__init__.py'), 'raise SystemExit("shadowed")\n');
    const out = path.join(root, 'args');
    await launchTrain(fakePython(root), path.join(root, 'train-cwd'), undefined, { env: { L3_ARGS_OUT: out } });
    const text = await waitFor(out);
    assert.ok(text.includes(`CWD=${cwd}`), text);
    assert.ok(text.includes('SAFE=1'));
  });

  it('pip installs the worker with its constraints file when there is one', () => {
    assert.deepEqual(pipInstallArgs('/ext/worker', () => false), ['-m', 'pip', 'install', '/ext/worker']);
    assert.deepEqual(pipInstallArgs('/ext/worker', (f) => f === path.join('/ext/worker', 'constraints.txt')), [
      '-m', 'pip', 'install', '-c', path.join('/ext/worker', 'constraints.txt'), '/ext/worker',
    ]);
  });

  it('tooltip text from a hostile run or model renders as text: no link, command, image or HTML', () => {
    const markdownIt = createRequire(__filename)('markdown-it') as (options: object) => { render(text: string): string };
    const md = markdownIt({ html: true, linkify: true });
    const hostile = [
      '[click me](command:workbench.action.terminal.new)',
      '![](https://evil.example/pixel.png?u=me)',
      '<img src="https://evil.example/x.png"><a href="command:x">a</a>',
      'https://evil.example/phish and www.evil.example',
      'name\n\n# Heading\n\n* list [x]: https://evil.example',
      '[ref]\n\n[ref]: https://evil.example',
      '**bold** _em_ `code` ~~strike~~ \\[escaped\\]',
    ];
    for (const text of hostile) {
      const html = md.render(`model: ${escapeMarkdown(text)}`);
      assert.doesNotMatch(html, /<(a|img|h1|li|strong|em|code|s|del)\b/, `${text} → ${html}`);
    }
  });
});
