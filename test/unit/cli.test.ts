import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { LLAMA3_8B, writeLlamaFolder } from '../fixtures/checkpoints';
import { cli } from '../fixtures/cli';
import { useTempDir } from '../fixtures/tmp';


describe('l3prune command line', () => {
  const dir = useTempDir();
  const model = () => path.join(dir(), 'llama3-8b');
  before(() => writeLlamaFolder(model(), LLAMA3_8B, 4));

  it('inspect --json prints one object with the stack’s numbers', async () => {
    const { code, stdout, stderr } = await cli('inspect', model(), '--json');
    assert.equal(code, 0, stderr);
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const summary = JSON.parse(lines[0]);
    for (const key of ['family', 'numLayers', 'hiddenSize', 'totalParams', 'totalBytes', 'embeddingParams', 'headParams', 'finalNormParams', 'layers']) {
      assert.ok(key in summary, key);
    }
    assert.equal(summary.totalParams, 8_030_261_248);
    assert.deepEqual(summary.layers[31], { index: 31, params: 218_112_000, bytes: 436_224_000, tensors: 9 });
  });

  it('plan --keep and --prune-percent print the plan', async () => {
    const keep = JSON.parse((await cli('plan', model(), '--keep', '16', '--json')).stdout);
    assert.deepEqual(
      [keep.keep, keep.prunedLayers, keep.params, keep.bytes, keep.paramsRemovedShare],
      [16, 16, 8_030_261_248 - 16 * 218_112_000, 2 * (8_030_261_248 - 16 * 218_112_000), (16 * 218_112_000) / 8_030_261_248],
    );
    const percent = JSON.parse((await cli('plan', model(), '--prune-percent', '25', '--json')).stdout);
    assert.equal(percent.keep, 24);
    // The paper's keep rule (protocol/keep-rule-vectors.json): floor(32 · 0.9) = 28, floor(32 · 0.8) = 25.
    assert.equal(JSON.parse((await cli('plan', model(), '--prune-percent', '10', '--json')).stdout).keep, 28);
    assert.equal(JSON.parse((await cli('plan', model(), '--prune-percent', '20', '--json')).stdout).keep, 25);
  });

  it('prints readable text without --json', async () => {
    const { stdout } = await cli('inspect', model());
    assert.match(stdout, /llama, 32 layers, hidden 4096/);
    assert.match(stdout, /layer 31\s+218\.11M params/);
  });

  it('reports bad input on stderr with one sentence and a non-zero exit', async () => {
    const missing = await cli('inspect', path.join(dir(), 'nowhere'));
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, '');
    assert.match(missing.stderr, /^l3prune: .*nowhere: does not exist; check the path\.\n$/);
    const badKeep = await cli('plan', model(), '--keep', '99');
    assert.equal(badKeep.code, 1);
    assert.match(badKeep.stderr, /keep must be a whole number of layers from 1 to 32/);
    const usage = await cli('plan', model());
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /exactly one of --keep N or --prune-percent P/);
    assert.equal((await cli('frobnicate', model())).code, 2);
  });

  it('run RUN_DIR --json shows a run folder as the Runs view does (a dead worker has failed)', async () => {
    const runDir = path.join(dir(), 'runs', 'train-1');
    mkdirSync(runDir, { recursive: true });
    const now = new Date().toISOString();
    const record = { schemaVersion: 1, runId: 'train-1', verb: 'train', spec: {}, status: 'running', pid: 2 ** 22 + 12345, startedAt: now, heartbeatAt: now, endedAt: null, error: null, result: null };
    writeFileSync(path.join(runDir, 'run.json'), JSON.stringify(record));
    const events = [
      { event: 'started', time: now, verb: 'train', pid: record.pid, spec: {} },
      { event: 'step', time: now, step: 1, totalSteps: 8, loss: 2.5, learningRate: 0, tokensPerSecond: 1, gpuMemoryBytes: null, elapsedSeconds: 1 },
    ];
    writeFileSync(path.join(runDir, 'events.jsonl'), `${events.map((e) => JSON.stringify(e)).join('\n')}\n{"event": "st`);
    const shown = await cli('run', runDir, '--json');
    assert.equal(shown.code, 0, shown.stderr);
    assert.deepEqual(JSON.parse(shown.stdout), {
      id: 'train-1', verb: 'train', status: 'failed', resumable: true, step: 1, totalSteps: 8, lastLoss: 2.5, checkpoints: 0,
      error: 'the worker stopped without a word (killed or crashed)',
    });
    const missing = await cli('run', path.join(dir(), 'runs', 'nothing-here'));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /is not a readable run folder/);
  });

  it('runs as `npx l3prune` from the built bundle', function () {
    this.timeout(30_000);
    if (!existsSync(path.resolve(__dirname, '../../dist/cli.js'))) {
      if (process.env.CI) assert.fail('dist/cli.js is missing: the set-up builds it');
      this.skip();
    }
    const root = path.resolve(__dirname, '../..');
    const ok = spawnSync('npx', ['--no-install', 'l3prune', 'inspect', model(), '--json'], { cwd: root, encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).numLayers, 32);
    // Quiet: nothing from npm itself (a project .npmrc key npm does not know makes it warn on every call).
    assert.equal(ok.stderr, '');
    const failed = spawnSync('npx', ['--no-install', 'l3prune', 'inspect', path.join(dir(), 'nowhere')], { cwd: root, encoding: 'utf8' });
    assert.equal(failed.status, 1);
    assert.match(failed.stderr, /does not exist/);
    assert.doesNotMatch(failed.stderr, /npm warn/i);
  });
});
