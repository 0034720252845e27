import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { conditionFlags, expectedCosts, flagText, paretoRows, type VariantRow } from '../../src/shared/compare/variants';
import { countTaskExamples, estimateSeconds, workerDataDir } from '../../src/compare/evaluationEstimate';
import { evaluateArgs } from '../../src/compare/variantRuns';
import { parseCompareMessage } from '../../src/shared/protocol/compareMessages';
import { ROOT } from '../fixtures/demo';

const row = (fields: Partial<VariantRow> & { id: string; layers: number }): VariantRow => ({
  runId: fields.id,
  label: fields.id,
  model: '/models/m',
  modelName: 'm',
  params: fields.layers * 1000,
  bytes: fields.layers * 4000,
  scores: { A: 0.5 },
  averageScore: 0.5,
  latencyMsPerBatch: 10,
  textsPerSecond: 100,
  batchSize: 16,
  maxLength: 512,
  maxExamples: 8,
  device: 'cpu',
  evaluatedAt: '2026-12-01T10:00:00.000Z',
  ...fields,
});

describe('honest comparisons: evaluation conditions', () => {
  it('flags the row of a model evaluated under other conditions, naming the condition and the majority value', () => {
    const flags = conditionFlags([
      row({ id: 'full', layers: 30 }),
      row({ id: 'keep4', layers: 4 }),
      row({ id: 'trained', layers: 14, fromRun: '/runs/train-1', maxLength: 48 }),
      // Another model's rows are judged among themselves only.
      row({ id: 'other', layers: 12, model: '/models/o', maxLength: 128, device: 'cuda' }),
    ]);
    assert.deepEqual(flags.map((f) => f?.differences.map((d) => [d.name, d.value, d.reference])), [undefined, undefined, [['maxLength', '48', '512']], undefined]);
    assert.equal(flags[2]!.reference.maxLength, 512);
    assert.match(flagText(flags[2]!), /max length 48 \(others: 512\)/);
  });

  it('a tie goes to the deepest variant (the model the cuts are measured against); an unrecorded cap differs from any cap', () => {
    const flags = conditionFlags([row({ id: 'full', layers: 30, batchSize: 32 }), row({ id: 'cut', layers: 4 }), row({ id: 'old', layers: 8, batchSize: 32, maxExamples: undefined })]);
    assert.deepEqual(flags.map((f) => f?.differences.map((d) => d.name)), [undefined, ['batchSize'], ['maxExamples']]);
    assert.equal(flags[1]!.reference.batchSize, 32);
  });

  it('a flagged row whose variant was evaluated again under the reference is marked rematched, not offered again', () => {
    const flags = conditionFlags([
      row({ id: 'full', layers: 30 }),
      row({ id: 'old4', layers: 4, maxLength: 32 }),
      row({ id: 'new4', layers: 4 }),
      row({ id: 'old8', layers: 8, maxLength: 32 }),
    ]);
    assert.deepEqual(flags.map((f) => f && f.rematched), [undefined, true, undefined, false]);
    assert.match(flagText(flags[1]!), /Another evaluation of this variant matches them/);
  });

  it('an ONNX row runs on the CPU by design: its device is not held against it, its max length is', () => {
    const onnx = { folder: '/x/onnx', precision: 'int8' as const };
    const flags = conditionFlags([row({ id: 'gpu', layers: 30, device: 'cuda' }), row({ id: 'gpu4', layers: 4, device: 'cuda' }), row({ id: 'onnx', layers: 4, onnx }), row({ id: 'onnx2', layers: 4, onnx, maxLength: 64 })]);
    assert.deepEqual(flags.map((f) => f?.differences.map((d) => d.name)), [undefined, undefined, undefined, ['maxLength']]);
  });

  it('Evaluate… puts the chosen conditions on the worker command line, and the worker reads them back as its spec', function () {
    this.timeout(60_000);
    const args = evaluateArgs({ python: 'python', runDir: '/r', variant: { kind: 'base', model: path.join(ROOT, '.demo/models/smollm2-135m'), keep: 4, numLayers: 30 }, maxExamples: 8, maxLength: 48, batchSize: 4, device: 'cpu' });
    assert.deepEqual(args.slice(args.indexOf('--max-examples')), ['--max-examples', '8', '--max-length', '48', '--batch-size', '4', '--device', 'cpu']);
    const onnxArgs = evaluateArgs({ python: 'python', runDir: '/r', variant: { kind: 'onnx', folder: '/x' }, device: 'cuda', maxLength: 64 });
    assert.ok(!onnxArgs.includes('--device'), 'an ONNX graph runs on the CPU: no device flag');
    const python = path.join(ROOT, '.venv/bin/python');
    if (!fs.existsSync(python)) this.skip();
    // The worker's own argument parser and spec resolution (argparse + JSON Schema), not ours.
    if (!fs.existsSync(path.join(ROOT, '.demo/models/smollm2-135m/config.json'))) this.skip();
    const code = [
      'import sys, json',
      'from l3prune.__main__ import build_parser',
      'from l3prune import evaluate',
      's = evaluate.spec_from_args(build_parser().parse_args(["evaluate", "--run-dir", "/tmp/unused", *sys.argv[1:]]))',
      'print(json.dumps({k: getattr(s, k) for k in ("maxLength", "batchSize", "maxExamples", "device")}))',
    ].join('\n');
    const out = execFileSync(python, ['-c', code, ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
    assert.deepEqual(JSON.parse(out), { maxLength: 48, batchSize: 4, maxExamples: 8, device: 'cpu' });
  });
});

describe('honest comparisons: the throughput axis', () => {
  it('more texts per second is better: the front and the proportional guide turn around', () => {
    const rows = [
      row({ id: 'full', layers: 30, textsPerSecond: 10, averageScore: 0.8 }),
      row({ id: 'keep4', layers: 4, textsPerSecond: 60, averageScore: 0.7 }),
      row({ id: 'keep8', layers: 8, textsPerSecond: 40, averageScore: 0.6 }),
    ];
    assert.deepEqual(paretoRows(rows, 'throughput'), [true, true, false]);
    assert.deepEqual(expectedCosts(rows, 'throughput'), [10, 75, 37.5]);
  });
});

describe('honest comparisons: the examples prompt', () => {
  const dataDir = path.join(ROOT, '.demo/data');

  it('counts each built-in task’s examples as the datasets library reads the same files', async function () {
    this.timeout(120_000);
    const python = path.join(ROOT, '.venv/bin/python');
    if (!fs.existsSync(path.join(dataDir, 'sts.jsonl')) || !fs.existsSync(python)) this.skip();
    const counts = await countTaskExamples(dataDir, ['sts', 'retrieval', 'classification', 'clustering', 'pair_classification']);
    const code = [
      'import json, sys, datasets',
      'datasets.disable_progress_bars()',
      'd = sys.argv[1]',
      'load = lambda f: datasets.load_dataset("json", data_files=f, split="train", cache_dir=sys.argv[2])',
      'cls = load(d + "/eval/classification.jsonl")',
      'print(json.dumps({"sts": load(d + "/sts.jsonl").num_rows, "retrieval": load(d + "/eval/retrieval/queries.jsonl").num_rows,',
      '  "classification": sum(1 for s in cls["split"] if s == "test"), "clustering": load(d + "/eval/clustering.jsonl").num_rows,',
      '  "pair_classification": load(d + "/eval/pair_classification.jsonl").num_rows}))',
    ].join('\n');
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'l3prune-ds-'));
    const reference = JSON.parse(execFileSync(python, ['-c', code, dataDir, cache], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1', HF_DATASETS_OFFLINE: '1' } })) as Record<string, number>;
    fs.rmSync(cache, { recursive: true, force: true });
    assert.deepEqual(Object.fromEntries(counts.map((c) => [c.task, c.examples])), reference);
  });

  it('counts the folder the worker itself reads when none is set (its checkout’s .demo/data here)', async function () {
    this.timeout(60_000);
    const python = path.join(ROOT, '.venv/bin/python');
    if (!fs.existsSync(python) || process.env.L3PRUNE_DEMO_DATA) this.skip();
    assert.equal(await workerDataDir(python), dataDir);
    assert.equal(await workerDataDir('/nonexistent/python'), undefined);
  });

  it('a missing data folder gives no counts rather than an error', async () => {
    assert.deepEqual(await countTaskExamples('/nonexistent/l3prune-data', ['sts', 'retrieval']), []);
  });

  it('estimates from the model’s last evaluation: time per example scaled by the examples kept and the layers', () => {
    const counts = [{ task: 'sts', examples: 1000, unit: 'pairs' }, { task: 'clustering', examples: 200, unit: 'texts' }];
    const measured = { runId: 'evaluate-1', layers: 30, tasks: { LeeDocumentSTS: { seconds: 8, examples: 8 } } };
    // sts: 1 s per example; clustering unmeasured takes the mean (1 s); a cap of 10 keeps 10 of each; 15 of 30 layers halves it.
    assert.equal(estimateSeconds(counts, 10, 15, measured), 10);
    assert.equal(estimateSeconds(counts, undefined, 30, measured), 1200);
    assert.equal(estimateSeconds(counts, 10, 15, undefined), undefined, 'no measurement, no estimate');
  });
});

describe('honest comparisons: panel messages', () => {
  const shown = new Set(['/runs/evaluate-a', '/runs/evaluate-b']);
  it('re-evaluate names shown rows only, at least one; a detail link names a shown row', () => {
    assert.deepEqual(parseCompareMessage({ type: 'reevaluate', ids: ['/runs/evaluate-a'] }, shown), { type: 'reevaluate', ids: ['/runs/evaluate-a'] });
    assert.deepEqual(parseCompareMessage({ type: 'openTraining', id: '/runs/evaluate-b' }, shown), { type: 'openTraining', id: '/runs/evaluate-b' });
    for (const bad of [{ type: 'reevaluate', ids: [] }, { type: 'reevaluate', ids: ['/etc/passwd'] }, { type: 'reevaluate', ids: '/runs/evaluate-a' }, { type: 'reevaluate', ids: ['/runs/evaluate-a'], conditions: { maxLength: 2 } }, { type: 'openTraining', id: '/runs/train-1' }]) {
      assert.equal(parseCompareMessage(bad, shown), undefined, JSON.stringify(bad));
    }
  });
});
