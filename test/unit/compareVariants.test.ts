import * as assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { csvField, expectedCosts, paretoFront, paretoPlotData, paretoRows, taskColumns, toCsv, toJson, variantRows, type VariantRow } from '../../src/shared/compare/variants';
import { evaluateArgs, exportOnnxArgs } from '../../src/compare/variantRuns';
import { EXPORT_ONNX_DEFAULTS } from '../../src/shared/protocol/generated/defaults';
import { parseRunEvent } from '../../src/shared/protocol/workerEvents';
import { RunStore } from '../../src/runs/runStore';
import { subdir, useTempDir } from '../fixtures/tmp';

const iso = (ms: number) => new Date(ms).toISOString();

interface FakeEvaluation {
  keep: number;
  params: number;
  bytes?: number;
  scores: Record<string, number>;
  latencyMsPerBatch: number;
  fromRun?: string;
  model?: string;
  startedAt?: number;
}

/** An evaluate run folder as the worker writes it: run.json plus events.jsonl, one task_result per task. */
function writeEvaluateRun(root: string, id: string, e: FakeEvaluation, options: { status?: string; withFinishedEvent?: boolean } = {}): string {
  const runDir = path.join(root, id);
  mkdirSync(path.join(runDir, 'results'), { recursive: true });
  const started = e.startedAt ?? Date.now() - 60_000;
  const values = Object.values(e.scores);
  const summary = {
    numLayers: e.keep,
    params: e.params,
    bytes: e.bytes ?? e.params * 4,
    averageScore: values.reduce((a, b) => a + b, 0) / values.length,
    scores: e.scores,
    latencyMsPerBatch: e.latencyMsPerBatch,
    textsPerSecond: (32 * 1000) / e.latencyMsPerBatch,
    batchSize: 32,
    maxLength: 128,
    device: 'cpu',
  };
  const status = options.status ?? 'succeeded';
  const spec = { model: e.model ?? '/models/smollm2-135m', keep: e.fromRun ? null : e.keep, fromRun: e.fromRun ?? null, adapter: null, tasks: Object.keys(e.scores), maxExamples: 16 };
  writeFileSync(
    path.join(runDir, 'run.json'),
    JSON.stringify({
      schemaVersion: 1, runId: id, verb: 'evaluate', spec, status, pid: 1, startedAt: iso(started), heartbeatAt: iso(started + 30_000),
      endedAt: status === 'running' ? null : iso(started + 30_000), error: status === 'failed' ? { message: 'out of memory' } : null,
      result: status === 'succeeded' ? summary : null,
    }),
  );
  const events: Array<Record<string, unknown>> = [
    { event: 'started', verb: 'evaluate', pid: 1, spec },
    { event: 'model_loaded', numLayers: e.keep, originalNumLayers: 30, modelType: 'llama', hiddenSize: 576, finalNorm: 'LlamaRMSNorm', loadSeconds: 1, totalParams: e.params, device: 'cpu', precision: 'fp32' },
  ];
  for (const [task, mainScore] of Object.entries(e.scores)) {
    events.push({ event: 'task_result', task, taskType: 'STS', metric: 'cosine_spearman', mainScore, scores: { cosine_spearman: mainScore }, seconds: 1.5 });
  }
  if (status === 'succeeded' && options.withFinishedEvent !== false) events.push({ event: 'evaluation_finished', ...summary });
  writeFileSync(path.join(runDir, 'events.jsonl'), events.map((ev) => `${JSON.stringify({ time: iso(started + 1000), ...ev })}\n`).join(''));
  return runDir;
}

function writeTrainRun(root: string, id: string, model: string, keep: number): string {
  const runDir = path.join(root, id);
  mkdirSync(runDir, { recursive: true });
  const now = Date.now();
  writeFileSync(
    path.join(runDir, 'run.json'),
    JSON.stringify({
      schemaVersion: 1, runId: id, verb: 'train', spec: { model, keep, data: '/d.jsonl', steps: 10 }, status: 'succeeded', pid: 1,
      startedAt: iso(now - 120_000), heartbeatAt: iso(now - 100_000), endedAt: iso(now - 100_000), error: null,
      result: { step: 10, finalLoss: 0.5, adapterPath: `${runDir}/adapter`, mergedPath: `${runDir}/model`, seconds: 20 },
    }),
  );
  writeFileSync(path.join(runDir, 'events.jsonl'), '');
  return runDir;
}

const row = (fields: Partial<VariantRow> & { id: string; layers: number; params: number; averageScore: number | null; latencyMsPerBatch?: number }): VariantRow => ({
  runId: path.basename(fields.id),
  label: fields.id,
  model: '/models/m',
  modelName: 'm',
  bytes: fields.params * 2,
  scores: { A: fields.averageScore },
  latencyMsPerBatch: 10,
  textsPerSecond: 100,
  batchSize: 32,
  maxLength: 128,
  device: 'cpu',
  evaluatedAt: iso(0),
  ...fields,
});

describe('variant comparison', () => {
  const dir = useTempDir('l3prune-compare-');

  describe('rows gathered from evaluate run folders', () => {
    it('one row per succeeded evaluation, with every task score, size and speed; running and failed runs left out', async () => {
      const root = subdir(dir, 'gather');
      writeEvaluateRun(root, 'evaluate-full', { keep: 30, params: 134_515_008, scores: { STSBenchmark: 0.61, SciFact: 0.32 }, latencyMsPerBatch: 80 });
      writeEvaluateRun(root, 'evaluate-keep4', { keep: 4, params: 42_000_000, scores: { STSBenchmark: 0.41, SciFact: 0.12 }, latencyMsPerBatch: 14 });
      writeEvaluateRun(root, 'evaluate-live', { keep: 8, params: 50_000_000, scores: { STSBenchmark: 0.5 }, latencyMsPerBatch: 20 }, { status: 'running' });
      writeEvaluateRun(root, 'evaluate-oom', { keep: 2, params: 30_000_000, scores: { STSBenchmark: 0.2 }, latencyMsPerBatch: 5 }, { status: 'failed' });
      const store = new RunStore(() => root, () => true);
      await store.refresh();
      const rows = variantRows(store.list());
      assert.deepEqual(rows.map((r) => [r.runId, r.layers]), [['evaluate-full', 30], ['evaluate-keep4', 4]]);
      const [full, keep4] = rows;
      assert.deepEqual(full.scores, { STSBenchmark: 0.61, SciFact: 0.32 });
      assert.ok(Math.abs(full.averageScore! - 0.465) < 1e-12);
      assert.equal(keep4.params, 42_000_000);
      assert.equal(keep4.latencyMsPerBatch, 14);
      assert.equal(keep4.modelName, 'smollm2-135m');
      assert.deepEqual([full.label, keep4.label], ['smollm2-135m · full (30 layers)', 'smollm2-135m · keep 4 of 30']);
      assert.deepEqual(taskColumns(rows), ['SciFact', 'STSBenchmark']);
      // The live run's scores so far are in its summary even though it is no row yet.
      assert.deepEqual(store.get(path.join(root, 'evaluate-live'))?.evaluation?.tasks.map((t) => t.task), ['STSBenchmark']);
    });

    it('takes run.json’s result when events.jsonl lacks the closing event', async () => {
      const root = subdir(dir, 'result-only');
      writeEvaluateRun(root, 'evaluate-copied', { keep: 12, params: 70_000_000, scores: { STSBenchmark: 0.55 }, latencyMsPerBatch: 30 }, { withFinishedEvent: false });
      const store = new RunStore(() => root, () => true);
      await store.refresh();
      const rows = variantRows(store.list());
      assert.equal(rows.length, 1);
      assert.equal(rows[0].layers, 12);
      assert.equal(rows[0].averageScore, 0.55);
    });

    it('files a trained variant under its base model and says which run trained it', async () => {
      const root = subdir(dir, 'trained');
      const trainDir = writeTrainRun(root, 'train-a', '/models/smollm2-135m', 4);
      writeEvaluateRun(root, 'evaluate-trained', { keep: 4, params: 42_000_000, scores: { STSBenchmark: 0.7 }, latencyMsPerBatch: 14, fromRun: trainDir, model: path.join(trainDir, 'model') });
      writeEvaluateRun(root, 'evaluate-base', { keep: 4, params: 42_000_000, scores: { STSBenchmark: 0.4 }, latencyMsPerBatch: 14 });
      const store = new RunStore(() => root, () => true);
      await store.refresh();
      const rows = variantRows(store.list());
      assert.deepEqual(rows.map((r) => [r.runId, r.modelName, r.fromRun]), [
        ['evaluate-base', 'smollm2-135m', undefined],
        ['evaluate-trained', 'smollm2-135m', trainDir],
      ]);
      assert.match(rows[1].label, /trained \(train-a\)/);
    });
  });

  describe('Pareto front (cheaper is better, higher score is better)', () => {
    it('keeps exactly the points nothing beats', () => {
      const points = [
        { x: 1, y: 0.2 }, // cheapest
        { x: 2, y: 0.5 },
        { x: 3, y: 0.4 }, // beaten by (2, 0.5)
        { x: 4, y: 0.7 }, // best
        { x: 4, y: 0.6 }, // same cost, lower score
        { x: Number.NaN, y: 1 },
      ];
      assert.deepEqual(paretoFront(points), [true, true, false, true, false, false]);
    });

    it('keeps equal points together and no point is beaten by itself', () => {
      assert.deepEqual(paretoFront([{ x: 1, y: 1 }, { x: 1, y: 1 }]), [true, true]);
      assert.deepEqual(paretoFront([]), []);
    });

    it('agrees with the definition on random sets (property)', () => {
      fc.assert(
        fc.property(fc.array(fc.record({ x: fc.integer({ min: 0, max: 20 }), y: fc.integer({ min: 0, max: 20 }) }), { maxLength: 40 }), (points) => {
          const front = paretoFront(points);
          points.forEach((p, i) => {
            const beaten = points.some((q) => q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y));
            assert.equal(front[i], !beaten);
          });
          if (points.length) assert.ok(front.some(Boolean), 'a non-empty set has a front');
        }),
        { numRuns: 500, seed: 7 },
      );
    });

    it('depends on the cost axis: a cheap-in-params but slow variant is on one front only', () => {
      const rows = [
        row({ id: 'big', layers: 30, params: 100, averageScore: 0.6, latencyMsPerBatch: 50 }),
        row({ id: 'small-slow', layers: 4, params: 20, averageScore: 0.3, latencyMsPerBatch: 60 }),
      ];
      assert.deepEqual(paretoRows(rows, 'params'), [true, true]);
      assert.deepEqual(paretoRows(rows, 'latency'), [true, false]);
    });
  });

  describe('the expected-cost guide', () => {
    it('scales the deepest variant’s cost by the layers kept, per model', () => {
      const rows = [
        row({ id: 'a30', layers: 30, params: 135, averageScore: 0.6, latencyMsPerBatch: 90 }),
        row({ id: 'a15', layers: 15, params: 80, averageScore: 0.5, latencyMsPerBatch: 50 }),
        row({ id: 'b6', layers: 6, params: 22, averageScore: 0.55, latencyMsPerBatch: 6, model: '/models/b' }),
        row({ id: 'b3', layers: 3, params: 15, averageScore: 0.45, latencyMsPerBatch: 4, model: '/models/b' }),
      ];
      assert.deepEqual(expectedCosts(rows, 'params'), [135, 67.5, 22, 11]);
      assert.deepEqual(expectedCosts(rows, 'latency'), [90, 45, 6, 3]);
    });

    it('lays out measured points, the front and the guide on one ascending x for uPlot', () => {
      const rows = [
        row({ id: 'full', layers: 4, params: 400, averageScore: 0.8 }),
        row({ id: 'half', layers: 2, params: 300, averageScore: 0.6 }),
      ];
      const { x, series, rowAt } = paretoPlotData(rows, 'params');
      assert.deepEqual(x, [200, 300, 400, 400]);
      const byKind = Object.fromEntries(series.map((s) => [s.kind, s.values]));
      // x: half's predicted cost (400 × 2/4), half measured, full measured, full predicted (its own cost).
      assert.deepEqual(rowAt, [null, 1, 0, null]);
      assert.deepEqual(byKind.variants, [null, 0.6, 0.8, null]);
      assert.deepEqual(byKind.front, byKind.variants, 'both variants are Pareto-optimal');
      assert.deepEqual(byKind.expected, [0.6, null, null, 0.8]);
      assert.ok(series.every((s) => s.values.length === x.length));
      for (let i = 1; i < x.length; i++) assert.ok(x[i - 1] <= x[i]);
    });
  });

  it('a variant without an average (no task scored) stays in the table but off the plot and the front', () => {
    const rows = [row({ id: 'scored', layers: 4, params: 40, averageScore: 0.5 }), row({ id: 'unscored', layers: 2, params: 20, averageScore: null, scores: { A: null } })];
    assert.deepEqual(paretoRows(rows, 'params'), [true, false]);
    const { rowAt } = paretoPlotData(rows, 'params');
    assert.deepEqual(rowAt.filter((r) => r !== null), [0]);
    assert.match(toCsv(rows).split('\r\n')[2], /,,/, 'its empty scores are empty CSV fields');
  });

  describe('exports', () => {
    it('quotes CSV fields with commas, quotes and line breaks (RFC 4180) and defuses formulas', () => {
      assert.equal(csvField('plain'), 'plain');
      assert.equal(csvField('a,b'), '"a,b"');
      assert.equal(csvField('say "hi"'), '"say ""hi"""');
      assert.equal(csvField('two\nlines'), '"two\nlines"');
      assert.equal(csvField('=HYPERLINK("x")'), `"'=HYPERLINK(""x"")"`);
      assert.equal(csvField('@SUM(A1)'), "'@SUM(A1)");
      assert.equal(csvField(-0.25), '-0.25', 'numbers are written as numbers');
      assert.equal(csvField(undefined), '');
      assert.equal(csvField(true), 'true');
    });

    it('writes one CSV line per variant, task columns aligned, and parses back', () => {
      const rows = [
        row({ id: '/runs/evaluate-1', layers: 30, params: 135, averageScore: 0.5, scores: { 'Task, with comma': 0.4, STS: 0.6 }, model: '/models/my "odd", model' }),
        row({ id: '/runs/evaluate-2', layers: 4, params: 40, averageScore: 0.3, scores: { STS: 0.3 } }),
      ];
      const csv = toCsv(rows);
      assert.ok(csv.endsWith('\r\n'));
      const parsed = parseCsv(csv);
      assert.equal(parsed.length, 3);
      const [header, first, second] = parsed;
      assert.deepEqual(header.slice(0, 9), ['run', 'model', 'from_run', 'layers_kept', 'layers_total', 'params', 'bytes', 'STS', 'Task, with comma']);
      assert.equal(first[1], '/models/my "odd", model');
      assert.deepEqual([first[7], first[8]], ['0.6', '0.4']);
      assert.deepEqual([second[7], second[8]], ['0.3', ''], 'a task a variant was not scored on stays empty');
      assert.ok(parsed.every((line) => line.length === header.length));
      assert.deepEqual([first[header.indexOf('pareto_by_params')], second[header.indexOf('pareto_by_params')]], ['true', 'true']);
    });

    it('writes JSON with the tasks and every variant with its Pareto flags', () => {
      const rows = [row({ id: '/runs/e1', layers: 30, params: 135, averageScore: 0.5 }), row({ id: '/runs/e2', layers: 4, params: 140, averageScore: 0.3 })];
      const json = JSON.parse(toJson(rows));
      assert.deepEqual(json.tasks, ['A']);
      assert.deepEqual(json.variants.map((v: { id: string; paretoByParams: boolean }) => [v.id, v.paretoByParams]), [['/runs/e1', true], ['/runs/e2', false]]);
      assert.equal(json.variants[0].label, undefined, 'display-only fields stay out');
    });
  });

  describe('worker events of evaluate and export-onnx', () => {
    const time = '2026-11-29T01:58:33.547Z';
    it('accepts the events in the protocol’s shape', () => {
      assert.ok(parseRunEvent({ event: 'task_result', time, task: 'STSBenchmark', taskType: 'STS', metric: 'cosine_spearman', mainScore: 0.6, scores: {}, seconds: 2 }));
      assert.ok(
        parseRunEvent({
          event: 'evaluation_finished', time, numLayers: 4, params: 1, bytes: 4, averageScore: 0.5, scores: { A: 0.5 }, latencyMsPerBatch: 3,
          textsPerSecond: 10, batchSize: 8, maxLength: 64, device: 'cpu',
        }),
      );
      assert.ok(parseRunEvent({ event: 'task_result', time, task: 'A', taskType: 'STS', metric: 'm', mainScore: null, scores: {}, seconds: 0 }), 'an undefined score is null');
      assert.ok(
        parseRunEvent({
          event: 'evaluation_finished', time, numLayers: 4, params: 1, bytes: 4, averageScore: null, scores: { A: null }, latencyMsPerBatch: 3,
          textsPerSecond: 10, batchSize: 8, maxLength: 64, device: 'cpu',
        }),
        'no task scored: a null average',
      );
      assert.ok(parseRunEvent({ event: 'exported', time, path: '/o/model.onnx', outDir: '/o', bytes: 10, opset: 17, parityMinCosine: 0.99999, parityMeanCosine: 1, numLayers: 4, seconds: 3 }));
    });
    it('rejects them when a field the extension relies on is missing or wrong', () => {
      const bad = [
        { event: 'task_result', time, task: '', taskType: 'STS', metric: 'm', mainScore: 0.6, scores: {}, seconds: 2 },
        { event: 'task_result', time, task: 'A', taskType: 'STS', metric: 'm', mainScore: 'high', scores: {}, seconds: 2 },
        { event: 'task_result', time, task: 'A', taskType: 'STS', metric: 'm', mainScore: Number.NaN, scores: {}, seconds: 2 },
        { event: 'evaluation_finished', time, numLayers: 0, params: 1, bytes: 4, averageScore: 0.5, scores: {}, latencyMsPerBatch: 3, textsPerSecond: 1, batchSize: 8, maxLength: 64, device: 'cpu' },
        { event: 'evaluation_finished', time, numLayers: 4, params: 1, bytes: 4, averageScore: 0.5, scores: { A: 'x' }, latencyMsPerBatch: 3, textsPerSecond: 1, batchSize: 8, maxLength: 64, device: 'cpu' },
        { event: 'exported', time, path: '/o/model.onnx', bytes: 10, opset: 17, parityMinCosine: 1, parityMeanCosine: 1, numLayers: 4, seconds: 3 },
      ];
      for (const event of bad) assert.equal(parseRunEvent(event), undefined, JSON.stringify(event));
    });
  });

  describe('worker arguments', () => {
    it('names a base variant by model and keep, a trained one by its run', () => {
      assert.deepEqual(evaluateArgs({ python: 'p', runDir: '/r', variant: { kind: 'base', model: '/m', keep: 4, numLayers: 30 }, maxExamples: 8 }), ['--model', '/m', '--keep', '4', '--max-examples', '8']);
      assert.deepEqual(evaluateArgs({ python: 'p', runDir: '/r', variant: { kind: 'trained', model: '/m', keep: 4, fromRun: '/runs/train-a' }, tasks: ['sts', 'retrieval'] }), ['--from-run', '/runs/train-a', '--tasks', 'sts,retrieval']);
      assert.deepEqual(exportOnnxArgs({ python: 'p', runDir: '/r', variant: { kind: 'base', model: '/m', keep: 30, numLayers: 30 } }), ['--model', '/m', '--keep', '30']);
    });

    it('asks the worker for an fp16 export by its flag, and leaves fp32 to the default', () => {
      const variant = { kind: 'trained', model: '/m', keep: 4, fromRun: '/runs/train-a' } as const;
      assert.deepEqual(exportOnnxArgs({ python: 'p', runDir: '/r', variant, precision: 'fp16' }), ['--from-run', '/runs/train-a', '--precision', 'fp16']);
      assert.deepEqual(exportOnnxArgs({ python: 'p', runDir: '/r', variant, precision: 'fp32' }), ['--from-run', '/runs/train-a', '--precision', 'fp32']);
      assert.equal(EXPORT_ONNX_DEFAULTS.precision, 'fp32');
    });
  });
});

/** A strict RFC 4180 reader, independent of the writer under test. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let field = '';
  let fields: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      fields.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      fields.push(field);
      rows.push(fields);
      fields = [];
      field = '';
      i++;
    } else field += c;
  }
  return rows;
}
