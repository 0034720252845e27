import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { OrtNodeSpeeds, SPEED_TEXTS } from '../../src/compare/ortNodeSpeeds';
import { evaluateArgs } from '../../src/compare/variantRuns';
import { OnnxEncoder, cosine } from '../../src/inference/encoder';
import { RunStore } from '../../src/runs/runStore';
import { toCsv, unmeasuredExports, variantRows, withOrtNodeSpeeds } from '../../src/shared/compare/variants';
import { parseRunEvent } from '../../src/shared/protocol/workerEvents';
import { DEMO, requireWorkerEnvironment } from '../fixtures/demo';
import { subdir, useTempDir } from '../fixtures/tmp';

const iso = (ms: number) => new Date(ms).toISOString();
const MODEL = '/models/smollm2-135m';

interface Evaluation {
  keep: number;
  scores: Record<string, number>;
  onnx?: { folder: string; precision: 'fp32' | 'fp16' | 'int8' };
  startedAt: number;
}

/** An evaluate run folder as the worker writes it (evaluate --onnx adds result.onnx and the manifest's variant). */
function writeEvaluateRun(root: string, id: string, e: Evaluation): string {
  const runDir = path.join(root, id);
  mkdirSync(path.join(runDir, 'results'), { recursive: true });
  const values = Object.values(e.scores);
  const result = {
    numLayers: e.keep, params: 50_000_000, bytes: e.onnx?.precision === 'int8' ? 60_000_000 : 200_000_000,
    averageScore: values.reduce((a, b) => a + b, 0) / values.length, scores: e.scores, latencyMsPerBatch: 100, textsPerSecond: 160,
    batchSize: 16, maxLength: 512, device: 'cpu', seconds: 30, resultsDir: path.join(runDir, 'results'),
    ...(e.onnx ? { onnx: { ...e.onnx, provider: 'CPUExecutionProvider', onnxruntime: '1.32.0' } } : {}),
  };
  const spec = { model: MODEL, keep: e.keep, fromRun: null, adapter: null, onnx: e.onnx?.folder ?? null, tasks: Object.keys(e.scores) };
  writeFileSync(
    path.join(runDir, 'run.json'),
    JSON.stringify({ schemaVersion: 1, runId: id, verb: 'evaluate', spec, status: 'succeeded', pid: 1, startedAt: iso(e.startedAt), heartbeatAt: iso(e.startedAt + 30_000), endedAt: iso(e.startedAt + 30_000), error: null, result }),
  );
  const events = [
    { event: 'started', verb: 'evaluate', pid: 1, spec },
    { event: 'model_loaded', numLayers: e.keep, originalNumLayers: 30, modelType: 'llama', hiddenSize: 576, finalNorm: null, loadSeconds: 1, totalParams: 50_000_000, device: 'cpu', precision: e.onnx?.precision ?? 'fp32' },
    { event: 'evaluation_finished', ...result },
  ];
  writeFileSync(path.join(runDir, 'events.jsonl'), events.map((ev) => `${JSON.stringify({ time: iso(e.startedAt + 1000), ...ev })}\n`).join(''));
  return runDir;
}

describe('Compare view: ONNX rows', () => {
  const dir = useTempDir('l3prune-compare-onnx-');

  it('reads evaluate --onnx’s closing event, and refuses one whose onnx record is malformed', () => {
    const base = { event: 'evaluation_finished', time: iso(0), numLayers: 4, params: 1, bytes: 1, averageScore: 0.5, scores: { A: 0.5 }, latencyMsPerBatch: 1, textsPerSecond: 1, batchSize: 1, maxLength: 8, device: 'cpu', seconds: 1, resultsDir: '/r' };
    assert.ok(parseRunEvent({ ...base, onnx: { folder: '/x/onnx', precision: 'int8', provider: 'CPUExecutionProvider' } }));
    assert.equal(parseRunEvent({ ...base, onnx: { folder: '/x/onnx', precision: 'int4', provider: 'CPUExecutionProvider' } }), undefined);
    assert.equal(parseRunEvent({ ...base, onnx: { precision: 'int8', provider: 'CPUExecutionProvider' } }), undefined);
  });

  it('puts each export beside its float variant, with its score change against the latest torch evaluation of it', async () => {
    const root = subdir(dir, 'rows');
    const t = Date.now() - 3_600_000;
    writeEvaluateRun(root, 'evaluate-old-float', { keep: 15, scores: { A: 0.3, B: 0.3 }, startedAt: t });
    writeEvaluateRun(root, 'evaluate-float', { keep: 15, scores: { A: 0.4, B: 0.5 }, startedAt: t + 60_000 });
    writeEvaluateRun(root, 'evaluate-int8', { keep: 15, scores: { A: 0.39, B: 0.49 }, onnx: { folder: '/exports/k15-int8', precision: 'int8' }, startedAt: t + 120_000 });
    writeEvaluateRun(root, 'evaluate-fp32', { keep: 15, scores: { A: 0.4, B: 0.5 }, onnx: { folder: '/exports/k15-fp32', precision: 'fp32' }, startedAt: t + 180_000 });
    writeEvaluateRun(root, 'evaluate-int8-k8', { keep: 8, scores: { A: 0.2, B: 0.2 }, onnx: { folder: '/exports/k8-int8', precision: 'int8' }, startedAt: t + 240_000 });
    const store = new RunStore(() => root, () => true);
    await store.refresh();
    const rows = variantRows(store.list());
    assert.deepEqual(rows.map((r) => r.runId), ['evaluate-float', 'evaluate-old-float', 'evaluate-fp32', 'evaluate-int8', 'evaluate-int8-k8']);
    const byId = new Map(rows.map((r) => [r.runId, r]));
    const int8 = byId.get('evaluate-int8')!;
    assert.equal(int8.label, 'smollm2-135m · keep 15 of 30 · ONNX int8');
    assert.deepEqual(int8.onnx, { folder: '/exports/k15-int8', precision: 'int8' });
    // (0.39 + 0.49) / 2 - (0.4 + 0.5) / 2, against the newer of the two torch runs.
    assert.ok(Math.abs(int8.scoreChange! - -0.01) < 1e-12, String(int8.scoreChange));
    assert.equal(int8.floatRunId, 'evaluate-float');
    assert.ok(Math.abs(byId.get('evaluate-fp32')!.scoreChange!) < 1e-12);
    // No torch evaluation at 8 layers: nothing to compare with, and no invented number.
    assert.equal(byId.get('evaluate-int8-k8')!.scoreChange, null);
    assert.equal(byId.get('evaluate-float')!.scoreChange, undefined);

    // The host's onnxruntime-node speeds: each export once, the speed-up against the fp32 export of the same variant.
    assert.deepEqual(unmeasuredExports(rows, new Map()).sort(), ['/exports/k15-fp32', '/exports/k15-int8', '/exports/k8-int8']);
    const speeds = new Map([['/exports/k15-fp32', { textsPerSecond: 40 }], ['/exports/k15-int8', { textsPerSecond: 100 }], ['/exports/k8-int8', { textsPerSecond: Number.NaN }]]);
    const timed = withOrtNodeSpeeds(rows, speeds);
    const timedById = new Map(timed.map((r) => [r.runId, r]));
    assert.equal(timedById.get('evaluate-int8')!.ortNodeTextsPerSecond, 100);
    assert.equal(timedById.get('evaluate-int8')!.ortNodeSpeedup, 2.5);
    assert.equal(timedById.get('evaluate-fp32')!.ortNodeSpeedup, 1);
    assert.equal(timedById.get('evaluate-int8-k8')!.ortNodeTextsPerSecond, null, 'a failed measurement reads as none, not as a speed');
    assert.equal(timedById.get('evaluate-int8-k8')!.ortNodeSpeedup, undefined);
    assert.equal(timedById.get('evaluate-float')!.ortNodeTextsPerSecond, undefined, 'torch rows are not timed in onnxruntime-node');
    assert.deepEqual(unmeasuredExports(timed, speeds), []);

    const [header, ...lines] = toCsv(timed).trim().split('\r\n').map((l) => l.split(','));
    const col = (name: string) => header.indexOf(name);
    const int8Line = lines.find((l) => l[0] === 'evaluate-int8')!;
    assert.equal(int8Line[col('runtime')], 'onnx-int8');
    assert.equal(int8Line[col('float_run')], 'evaluate-float');
    assert.equal(int8Line[col('ort_node_speedup_vs_fp32')], '2.5');
    assert.equal(lines.find((l) => l[0] === 'evaluate-float')![col('runtime')], 'torch');
  });

  it('asks the worker to score an export with --onnx and never passes consent to code for it', () => {
    assert.deepEqual(evaluateArgs({ python: 'p', runDir: '/r', variant: { kind: 'onnx', folder: '/exports/k15-int8' }, maxExamples: 8, trustRemoteCode: true }), ['--onnx', '/exports/k15-int8', '--max-examples', '8']);
  });
});

describe('Compare view: onnxruntime-node speeds of real exports', function () {
  this.timeout(600_000);
  const tmp = useTempDir('l3prune-compare-ort-');
  const workerEnv = { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' };
  let int8 = '';

  before(function () {
    requireWorkerEnvironment(this);
    const runDir = path.join(tmp(), 'export');
    execFileSync(DEMO.python, ['-m', 'l3prune', 'export-onnx', '--run-dir', runDir, '--model', DEMO.model, '--keep', '2', '--max-length', '32', '--precision', 'int8'], {
      env: workerEnv,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    int8 = path.join(runDir, 'onnx');
  });

  it('an int8 export runs in onnxruntime-node within its parity thresholds against the worker’s torch embeddings', async () => {
    const { examples } = JSON.parse(readFileSync(path.join(int8, 'parity-examples.json'), 'utf8')) as { examples: Array<{ text: string; instruction: string | null; embedding: number[] }> };
    const encoder = await OnnxEncoder.load(int8);
    try {
      assert.equal(encoder.info.manifest.precision, 'int8');
      const vectors = await encoder.embed(examples.map((e) => (e.instruction ? { text: e.text, instruction: e.instruction } : e.text)), 8);
      const cos = vectors.map((v, i) => cosine(v, Float32Array.from(examples[i].embedding)));
      assert.ok(Math.min(...cos) >= 0.98 && cos.reduce((a, b) => a + b, 0) / cos.length >= 0.99, JSON.stringify(cos));
    } finally {
      await encoder.dispose();
    }
  });

  it('times each export once in its own thread, and reports a folder it cannot load as unmeasured', async () => {
    const speeds = new OrtNodeSpeeds(() => undefined, undefined, 1);
    const broken = subdir(tmp, 'not-an-export');
    const done = new Promise<void>((resolve) => {
      const sub = speeds.onDidChange(() => {
        if (speeds.measured.size === 2) {
          sub.dispose();
          resolve();
        }
      });
    });
    speeds.request([int8, broken], 8);
    speeds.request([int8], 8);
    await done;
    const measured = speeds.measured.get(int8)!.textsPerSecond;
    assert.ok(Number.isFinite(measured) && measured > 0, String(measured));
    assert.ok(Number.isNaN(speeds.measured.get(broken)!.textsPerSecond));
    assert.ok(SPEED_TEXTS.length >= 16);
    speeds.dispose();
  });
});
