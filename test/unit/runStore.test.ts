import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { TRAIN_DEFAULTS } from '../../src/shared/protocol/generated/defaults';
import { checkDefinition, specFromDefinition, type TrainTaskDefinition } from '../../src/runs/trainDefinition';
import { etaSeconds, exportPrecision, isResumable, RunStore } from '../../src/runs/runStore';
import { iso, writeRunFolder as writeRun } from '../fixtures/runFolders';
import { subdir, useTempDir } from '../fixtures/tmp';



describe('run store', () => {
  const dir = useTempDir();
  const root = (name: string) => subdir(dir, name);

  it('lists runs newest first with model, cut, step, total and last loss', async () => {
    const r = root('list');
    writeRun(r, 'train-a', { startedAt: iso(1000) }, [{ event: 'step', step: 1, totalSteps: 100, loss: 2.5 }]);
    writeRun(r, 'train-b', { startedAt: iso(2000) }, [{ event: 'step', step: 1, loss: 3 }, { event: 'step', step: 2, loss: 2.75 }]);
    mkdirSync(path.join(r, 'not-a-run'));
    const store = new RunStore(() => r, () => true);
    await store.refresh();
    const runs = store.list();
    assert.deepEqual(runs.map((x) => x.id), ['train-b', 'train-a']);
    assert.deepEqual([runs[0].model, runs[0].keep, runs[0].step, runs[0].totalSteps, runs[0].lastLoss], ['/models/m', 10, 2, 100, 2.75]);
  });

  it('follows a live run as events are appended, and fires change only when something changed', async () => {
    const r = root('live');
    const runDir = writeRun(r, 'train-live', {}, [{ event: 'started' }]);
    const store = new RunStore(() => r, () => true);
    let changes = 0;
    const subscription = store.onDidChange(() => changes++);
    await store.refresh();
    assert.equal(changes, 1);
    await store.refresh();
    assert.equal(changes, 1, 'nothing new, no change');
    appendFileSync(path.join(runDir, 'events.jsonl'), `${JSON.stringify({ event: 'step', time: iso(Date.now()), step: 5, loss: 1.5 })}\n`);
    await store.refresh();
    assert.equal(changes, 2);
    assert.equal(store.get(runDir)?.step, 5);
    subscription.dispose();
    appendFileSync(path.join(runDir, 'events.jsonl'), `${JSON.stringify({ event: 'step', time: iso(Date.now()), step: 6, loss: 1.4 })}\n`);
    await store.refresh();
    assert.equal(changes, 2, 'a disposed listener hears nothing more');
  });

  it('reattaches to a live worker after a reload and shows a dead one as failed', async function () {
    // Liveness is read from /proc (the worker's command line and process group); elsewhere it needs a launch record.
    if (process.platform !== 'linux') this.skip();
    const r = root('reattach');
    const runDir = path.join(r, 'train-detached');
    // A detached process whose command line is a worker's for this run folder, as our launch makes it.
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', '--', '-m', 'l3prune', 'train', '--run-dir', runDir], { detached: true, stdio: 'ignore' });
    await new Promise((resolve) => sleeper.once('spawn', resolve));
    writeRun(r, 'train-detached', { pid: sleeper.pid }, [{ event: 'step', step: 3, loss: 2 }]);
    // A new store is what a reloaded window builds: it knows nothing but the folder.
    const store = new RunStore(() => r);
    await store.refresh();
    assert.equal(store.get(runDir)?.status, 'running');
    sleeper.kill('SIGKILL');
    await new Promise((resolve) => sleeper.once('exit', resolve));
    await store.refresh();
    const run = store.get(runDir)!;
    assert.equal(run.status, 'failed');
    assert.match(run.error ?? '', /stopped without a word/);
  });

  it('takes the last error event as a failed run’s reason and knows when it can resume', async () => {
    const r = root('failed');
    const runDir = writeRun(r, 'train-f', { status: 'failed', error: { message: 'disk full' } }, [
      { event: 'step', step: 100, loss: 1 },
      { event: 'checkpoint', step: 100, path: 'checkpoints/step-00000100' },
      { event: 'error', message: 'No space left on device while writing a checkpoint' },
    ]);
    const store = new RunStore(() => r, () => false);
    await store.refresh();
    const run = store.get(runDir)!;
    assert.equal(run.error, 'No space left on device while writing a checkpoint');
    assert.equal(isResumable(run), true);
    // Died before its first checkpoint: resuming restarts it from step 0 in the same folder.
    assert.equal(isResumable({ ...run, checkpoints: 0 }), true);
    assert.equal(isResumable({ ...run, status: 'succeeded' }), false);
    assert.equal(isResumable({ ...run, status: 'running' }), false);
    assert.equal(isResumable({ ...run, verb: 'analyze' }), false);
  });

  it('a resumed run’s repeated steps replace the ones after its checkpoint', async () => {
    const r = root('resumed');
    const runDir = writeRun(r, 'train-r', {}, [
      { event: 'step', step: 1, loss: 3 }, { event: 'step', step: 2, loss: 2.9 }, { event: 'step', step: 3, loss: 2.8 },
      { event: 'resumed', step: 2, checkpoint: 'x' }, { event: 'step', step: 3, loss: 2.7 }, { event: 'step', step: 4, loss: 2.6 },
    ]);
    const store = new RunStore(() => r, () => true);
    await store.refresh();
    assert.deepEqual(store.get(runDir)!.losses.map((p) => [p.step, p.loss]), [[1, 3], [2, 2.9], [3, 2.7], [4, 2.6]]);
  });

  it('reads an export’s precision from its spec: fp16 only when it says so, fp32 for older runs and anything else', async () => {
    const r = root('precision');
    const spec = (precision?: unknown) => ({ verb: 'export-onnx', spec: { model: '/models/m', keep: 2, ...(precision === undefined ? {} : { precision }) } });
    const half = writeRun(r, 'export-16', spec('fp16'));
    const old = writeRun(r, 'export-old', spec());
    const odd = writeRun(r, 'export-odd', spec({ toString: 'fp16' }));
    const train = writeRun(r, 'train-t', { spec: { model: '/models/m', keep: 2, data: '/d.jsonl', precision: 'bf16' } });
    const store = new RunStore(() => r, () => true);
    await store.refresh();
    assert.deepEqual([half, old, odd, train].map((d) => exportPrecision(store.get(d)!)), ['fp16', 'fp32', 'fp32', undefined]);
  });

  it('estimates the time left from the recent pace', () => {
    const losses = Array.from({ length: 11 }, (_, i) => ({ step: i, loss: 1, elapsedMs: i * 500 }));
    assert.equal(etaSeconds({ losses, step: 10, totalSteps: 110 } as never), 50);
    assert.equal(etaSeconds({ losses: [], step: 0, totalSteps: 10 } as never), undefined);
  });

  it('deletes a run folder and forgets it', async () => {
    const r = root('delete');
    const runDir = writeRun(r, 'train-d', { status: 'succeeded' });
    const store = new RunStore(() => r);
    await store.refresh();
    await store.delete(runDir);
    await store.refresh();
    assert.equal(store.list().length, 0);
  });
});

describe('l3prune task definitions (tasks.json)', () => {
  const base: TrainTaskDefinition = { type: 'l3prune', verb: 'train', model: 'models/m', keep: 12, data: 'data/t.jsonl' };
  it('accepts a complete definition and a resume-only one', () => {
    assert.equal(checkDefinition(base), undefined);
    assert.equal(checkDefinition({ type: 'l3prune', verb: 'train', resumeRunDir: '.l3prune/runs/train-x' }), undefined);
  });
  it('says in one sentence what a broken definition lacks', () => {
    assert.match(checkDefinition({ ...base, verb: 'evaluate' })!, /"verb": "train"/);
    assert.match(checkDefinition({ ...base, model: undefined })!, /needs "model"/);
    assert.match(checkDefinition({ ...base, data: 3 })!, /needs "data"/);
    assert.match(checkDefinition({ ...base, keep: 0 })!, /"keep"/);
    assert.match(checkDefinition({ ...base, keep: 2.5 })!, /"keep"/);
    assert.match(checkDefinition({ ...base, steps: -4 })!, /"steps"/);
    assert.match(checkDefinition({ ...base, recipe: [] })!, /"recipe"/);
  });
  it('fills the paper’s recipe, applies overrides and resolves paths from the workspace', () => {
    const spec = specFromDefinition({ ...base, steps: 200, recipe: { batchSize: 8, learningRate: 1e-4 } }, '/ws');
    assert.equal(spec.model, '/ws/models/m');
    assert.equal(spec.data, '/ws/data/t.jsonl');
    assert.deepEqual([spec.keep, spec.steps, spec.batchSize, spec.learningRate], [12, 200, 8, 1e-4]);
    // loraAlpha null: the worker resolves it to 2 · loraR (the paper's rule) and stores the number in run.json.
    assert.deepEqual([spec.loraR, spec.loraAlpha, spec.loraDropout, spec.warmupSteps, spec.scale, spec.maxLength], [16, null, 0.05, 300, 50, 512]);
    assert.deepEqual(spec.targetModules, TRAIN_DEFAULTS.targetModules);
  });
});
