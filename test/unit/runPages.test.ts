import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { readRunName, RUN_NAME_FILE, runNameProblem, writeRunName } from '../../src/runs/runName';
import { runDisplayName, RunStore } from '../../src/runs/runStore';
import { DEFAULT_RUN_PAGE_PREFS, prefsFrom } from '../../src/shared/protocol/runPlotMessages';
import { integerTicks } from '../../webview/runPlot/smoothing';
import { iso, writeRunFolder as writeRun } from '../fixtures/runFolders';
import { protocolValidator } from '../fixtures/schemas';
import { subdir, useTempDir } from '../fixtures/tmp';

describe('run pages: names, metrics, prefs', () => {
  const dir = useTempDir();
  const nameSchema = protocolValidator().validatorFor('protocol/run-name.schema.json');

  it('writes a name file that protocol/run-name.schema.json accepts (Ajv), and reads it back', () => {
    const runDir = subdir(dir, 'named');
    assert.equal(writeRunName(runDir, '  first try  '), 'first try');
    const stored = JSON.parse(readFileSync(path.join(runDir, RUN_NAME_FILE), 'utf8'));
    assert.ok(nameSchema(stored), JSON.stringify(nameSchema.errors));
    assert.equal(readRunName(runDir), 'first try');
    writeRunName(runDir, 'second');
    assert.equal(readRunName(runDir), 'second', 'a rename replaces the file');
  });

  it('agrees with the schema on every name it would accept or refuse', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 140 }), (name) => {
        const trimmed = name.trim();
        const accepted = runNameProblem(name) === undefined;
        assert.equal(accepted, nameSchema({ schemaVersion: 1, name: trimmed }) as boolean, JSON.stringify(name));
      }),
      { numRuns: 2000, seed: 14 },
    );
  });

  it('replaces a shipped name.json link instead of writing through it', () => {
    const runDir = subdir(dir, 'linked');
    const target = path.join(dir(), 'victim.txt');
    writeFileSync(target, 'keep me');
    symlinkSync(target, path.join(runDir, RUN_NAME_FILE));
    assert.equal(readRunName(runDir), undefined, 'a link is never read');
    writeRunName(runDir, 'mine');
    assert.equal(readFileSync(target, 'utf8'), 'keep me');
    assert.equal(readRunName(runDir), 'mine');
  });

  it('ignores name files that break the schema, are too large, or are no regular file', () => {
    const cases: Array<[string, (file: string) => void]> = [
      ['wrong version', (f) => writeFileSync(f, JSON.stringify({ schemaVersion: 2, name: 'x' }))],
      ['extra field', (f) => writeFileSync(f, JSON.stringify({ schemaVersion: 1, name: 'x', html: '<b>' }))],
      ['control characters', (f) => writeFileSync(f, JSON.stringify({ schemaVersion: 1, name: 'a\nb' }))],
      ['too long', (f) => writeFileSync(f, JSON.stringify({ schemaVersion: 1, name: 'x'.repeat(121) }))],
      ['huge', (f) => writeFileSync(f, JSON.stringify({ schemaVersion: 1, name: 'x', pad: ' '.repeat(10_000) }))],
      ['not JSON', (f) => writeFileSync(f, '{')],
      ['folder', (f) => mkdirSync(f)],
      ['fifo', (f) => execFileSync('mkfifo', [f])],
    ];
    for (const [what, make] of cases) {
      const runDir = subdir(dir, `bad-${what.replace(/\W/g, '-')}`);
      make(path.join(runDir, RUN_NAME_FILE));
      assert.equal(readRunName(runDir), undefined, what);
    }
  });

  it('names runs "<model> · keep n · HH:MM" until renamed, and the store shows a rename at once', async () => {
    const r = subdir(dir, 'store');
    const startedAt = iso(Date.UTC(2026, 11, 1, 14, 2, 0));
    const runDir = writeRun(r, 'train-x', { startedAt, spec: { model: '/models/smollm2-135m', keep: 21, steps: 4 } }, [
      { event: 'model_loaded', numLayers: 21, originalNumLayers: 30, device: 'cpu', precision: 'fp32', modelType: 'llama', hiddenSize: 8, finalNorm: null, loadSeconds: 1 },
      { event: 'step', step: 1, totalSteps: 4, loss: 2, learningRate: 1e-4, tokensPerSecond: 900, gpuMemoryBytes: null, rssBytes: 300_000_000 },
      { event: 'step', step: 2, totalSteps: 4, loss: 1.5, learningRate: 2e-4, tokensPerSecond: 950, gpuMemoryBytes: null, rssBytes: 310_000_000 },
    ]);
    const store = new RunStore(() => r, () => true);
    await store.refresh();
    const run = store.get(runDir)!;
    const at = new Date(startedAt);
    const hhmm = `${String(at.getHours()).padStart(2, '0')}:${String(at.getMinutes()).padStart(2, '0')}`;
    assert.equal(runDisplayName(run, 'smollm2-135m'), `smollm2-135m · keep 21 · ${hhmm}`);
    assert.deepEqual(run.losses.map((p) => [p.learningRate, p.tokensPerSecond, p.memoryBytes]), [[1e-4, 900, 300_000_000], [2e-4, 950, 310_000_000]]);
    assert.equal(run.memoryKind, 'process RSS');
    assert.equal(run.originalNumLayers, 30);
    store.rename(runDir, 'baseline');
    assert.equal(store.get(runDir)!.name, 'baseline');
    const fresh = new RunStore(() => r, () => true);
    await fresh.refresh();
    assert.equal(runDisplayName(fresh.get(runDir)!, 'smollm2-135m'), 'baseline', 'another window reads the name from the folder');
  });

  it('keeps only valid page choices from storage', () => {
    assert.deepEqual(prefsFrom(undefined), DEFAULT_RUN_PAGE_PREFS);
    assert.deepEqual(prefsFrom({ smoothing: 0.9, xAxis: 'time', raw: false, junk: 1 }), { ...DEFAULT_RUN_PAGE_PREFS, smoothing: 0.9, xAxis: 'time', raw: false });
    assert.deepEqual(prefsFrom({ smoothing: 5, xAxis: 'sideways', memory: 'yes' }), DEFAULT_RUN_PAGE_PREFS);
  });

  it('offers uPlot only whole-number spacings for a step axis', () => {
    const incrs = integerTicks();
    assert.ok(incrs.every((v) => Number.isInteger(v) && v >= 1));
    assert.deepEqual(incrs.slice(0, 6), [1, 2, 5, 10, 20, 50]);
  });
});
