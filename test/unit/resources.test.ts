import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { inspectModel } from '../../src/model/inspect';
import type { LayerStack } from '../../src/shared/model/stack';
import {
  GiB,
  gpuProfile,
  layerActivationBytesPerToken,
  modelShape,
  planOptions,
  planResources,
  planInputFromSpec,
  planTrain,
  profileFromReport,
  type DeviceProfile,
  type TrainRecipe,
} from '../../src/shared/prune/resources';
import { main } from '../../src/cli';
import type { DevicesReport } from '../../src/shared/protocol/generated/devices-report';
import { parseDevicesReport } from '../../src/worker/devices';
import { LLAMA3_8B, writeLlamaFolder } from '../fixtures/checkpoints';
import { DEMO, requireWorkerEnvironment, ROOT } from '../fixtures/demo';
import { useTempDir } from '../fixtures/tmp';

const run = promisify(execFile);
const H100: DeviceProfile = gpuProfile('NVIDIA H100 80GB HBM3', 80 * GiB);
const RTX4090: DeviceProfile = gpuProfile('NVIDIA GeForce RTX 4090', 24 * GiB);

describe('the resource planner', () => {
  const dir = useTempDir();
  let llama: LayerStack;
  before(async () => {
    writeLlamaFolder(path.join(dir(), 'llama3-8b'), LLAMA3_8B, 2);
    llama = await inspectModel(path.join(dir(), 'llama3-8b'));
  });

  it('counts Llama-3-8B’s LoRA parameters exactly from the projections’ shapes', () => {
    const { shape } = modelShape(llama, 32, 16, planOptions({ keep: 32, device: H100 }).train.targetModules);
    assert.equal(shape.loraParams, 41_943_040);
    assert.equal(modelShape(llama, 1, 16, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']).shape.loraParams, 1_310_720);
    assert.equal(modelShape(llama, 25, 16, ['q_proj', 'v_proj']).shape.loraParams, 25 * 16 * (4096 + 4096 + 4096 + 1024));
    assert.equal(shape.kvSize, 1024);
    assert.equal(shape.intermediateSize, 14336);
  });

  it('weights are the loaded model’s: embedding, the kept layers and the final norm, no LM head', () => {
    const p = planResources(llama, planOptions({ keep: 25, device: H100 }));
    const weights = p.train.terms.find((t) => t.name === 'weights')!;
    assert.equal(weights.bytes, 2 * (128256 * 4096 + 25 * 218_112_000 + 4096));
    // analyze scores every depth, so it holds all 32 layers.
    assert.equal(p.analyze.terms[0].bytes, 2 * (128256 * 4096 + 32 * 218_112_000 + 4096));
  });

  it('Llama-3-8B at keep 25, batch 64 × 512, bf16: checkpointing brings the step under an H100’s 80 GiB, not a 4090’s 24', () => {
    const on = planResources(llama, planOptions({ keep: 25, device: H100, gradientCheckpointing: true }));
    const off = planResources(llama, planOptions({ keep: 25, device: H100, gradientCheckpointing: false }));
    assert.equal(on.train.recipe.precision, 'bf16');
    assert.equal(on.train.fits, true, `${on.train.peakBytes / GiB} GiB`);
    assert.equal(off.train.fits, false);
    assert.ok(off.train.peakBytes > 5 * on.train.peakBytes, 'without checkpointing every layer keeps its activations');
    assert.ok(off.train.secondsPerStep! < on.train.secondsPerStep!, 'checkpointing costs one more forward');
    assert.equal(on.train.secondsPerStep! / off.train.secondsPerStep!, (on.train.flopsPerStep / off.train.flopsPerStep));
    const small = planResources(llama, planOptions({ keep: 25, device: RTX4090 }));
    assert.equal(small.train.fits, false);
  });

  it('advises changes that make a plan fit, and each advised recipe does fit when planned again', () => {
    const recipe = planOptions({ keep: 25, device: RTX4090 }).train;
    const { shape } = modelShape(llama, 25, recipe.loraR, recipe.targetModules);
    const plan = planTrain(shape, recipe, RTX4090);
    assert.equal(plan.fits, false);
    assert.ok(plan.advice.length > 0);
    for (const advice of plan.advice) {
      const again = planTrain(shape, { ...recipe, ...advice.change }, RTX4090);
      assert.equal(again.fits, true, advice.text);
      assert.equal(again.peakBytes, advice.peakBytes);
    }
    assert.ok(plan.advice[0].change.miniBatchSize, 'checkpointing is already on (CUDA default): the cache is the change');
    const fixed: TrainRecipe = { ...recipe, ...plan.advice[0].change };
    // The gradient cache keeps the activations of one chunk, whatever the batch.
    const a = planTrain(shape, { ...fixed, batchSize: 64 }, RTX4090);
    const b = planTrain(shape, { ...fixed, batchSize: 128 }, RTX4090);
    const act = (p: typeof a) => p.terms.filter((t) => t.name.startsWith('activations') || t.name.startsWith('one layer')).reduce((s, t) => s + t.bytes, 0);
    assert.equal(act(a), act(b));
  });

  it('the gradient cache costs one more forward, and torchrun multiplies the global batch', () => {
    const base = planOptions({ keep: 25, device: H100 }).train;
    const { shape } = modelShape(llama, 25, base.loraR, base.targetModules);
    const plain = planTrain(shape, base, H100);
    const cached = planTrain(shape, { ...base, miniBatchSize: 16 }, H100);
    assert.ok(cached.flopsPerStep > plain.flopsPerStep);
    assert.equal(cached.usefulFlopsPerStep, plain.usefulFlopsPerStep, 'MFU counts the FLOPs the step needs, not the recomputation');
    const four = planTrain(shape, { ...base, worldSize: 4 }, H100);
    assert.equal(four.tokensPerStep, 4 * plain.tokensPerStep);
    assert.ok(four.terms.some((t) => t.name === 'cross-device gather'));
    assert.ok(Math.abs(four.secondsPerStep! - plain.secondsPerStep!) / plain.secondsPerStep! < 1e-9, 'each device does its own batch in the same time');
  });

  it('time needs a throughput: a CPU without calibration says unknown, a known GPU uses peak × efficiency', () => {
    const cpu = planResources(llama, planOptions({ keep: 25, device: { kind: 'cpu', name: 'cpu', flopsSource: 'unknown' } }));
    assert.equal(cpu.train.secondsPerStep, null);
    assert.equal(cpu.train.fits, null);
    assert.equal(H100.flopsSource, 'peak×efficiency');
    assert.equal(gpuProfile('Some Future GPU').flopsSource, 'unknown');
    assert.equal(gpuProfile('NVIDIA H100', 80 * GiB, 500e12).flopsSource, 'calibrated');
  });

  it('plans for the device the worker reports, as the spec’s `device` picks it', () => {
    const report: DevicesReport = {
      event: 'devices',
      time: '2026-12-01T00:00:00.000Z',
      torch: '2.11',
      cuda: [
        { index: 0, name: 'NVIDIA GeForce RTX 4090', totalMemoryBytes: 24 * GiB, freeMemoryBytes: 20 * GiB, bf16: true, computeCapability: '8.9' },
        { index: 1, name: 'NVIDIA H100 80GB HBM3', totalMemoryBytes: 80 * GiB, freeMemoryBytes: 79 * GiB, bf16: true, computeCapability: '9.0',
          calibration: { dtype: 'bf16', flopsPerSecond: 700e12, seconds: 1 } },
      ],
      cpu: { threads: 16, memoryBytes: 128 * GiB, availableBytes: 100 * GiB, calibration: { dtype: 'fp32', flopsPerSecond: 1e12, seconds: 1 } },
      attention: ['eager', 'sdpa'],
    };
    const auto = profileFromReport(report);
    assert.equal(auto.kind, 'cuda');
    assert.equal(auto.totalMemoryBytes, 20 * GiB, 'free memory: what other processes hold is not ours');
    assert.equal(auto.flopsSource, 'peak×efficiency');
    const h100 = profileFromReport(report, 'cuda:1');
    assert.equal(h100.flopsSource, 'calibrated');
    assert.ok(h100.flopsPerSecond! < 700e12, 'a training step reaches less than a big matmul');
    const cpu = profileFromReport(report, 'cpu');
    assert.equal(cpu.kind, 'cpu');
    assert.equal(cpu.totalMemoryBytes, 100 * GiB);
    assert.equal(profileFromReport({ ...report, cuda: [] }).kind, 'cpu', 'auto without CUDA is the CPU');
    // auto in the spec resolves as the worker does: bf16 and checkpointing on CUDA, fp32 and none on a CPU.
    assert.deepEqual([planInputFromSpec({}, 25, auto).precision, planInputFromSpec({}, 25, auto).gradientCheckpointing], ['bf16', true]);
    assert.deepEqual([planInputFromSpec({}, 25, cpu).precision, planInputFromSpec({}, 25, cpu).gradientCheckpointing], ['fp32', false]);
    assert.equal(planInputFromSpec({ gradientCheckpointing: false, precision: 'fp32' }, 25, auto).gradientCheckpointing, false);
    const plan = planResources(llama, planOptions(planInputFromSpec({}, 25, auto)));
    assert.equal(plan.train.fits, false, '55 GiB does not fit 20 GiB free');
  });

  it('`l3prune plan --json` carries the plan with the recipe the flags give', async () => {
    let text = '';
    const code = await main(['plan', path.join(dir(), 'llama3-8b'), '--keep', '25', '--gpu', 'H100', '--gpu-memory', '80', '--mini-batch', '16', '--json'], { write: (t: string) => (text += t) }, { write: () => undefined });
    assert.equal(code, 0);
    const out = JSON.parse(text);
    assert.equal(out.keep, 25);
    assert.equal(out.resources.model.loraParams, 32_768_000);
    assert.equal(out.resources.train.recipe.miniBatchSize, 16);
    assert.equal(out.resources.train.fits, true);
    let err = '';
    assert.equal(await main(['plan', path.join(dir(), 'llama3-8b'), '--keep', '25', '--precision', 'fp16'], { write: () => undefined }, { write: (t: string) => (err += t) }), 2);
    assert.match(err, /--precision takes bf16 or fp32/);
  });
});

/**
 * The planner against autograd: test/fixtures/measure_train_memory.py builds the trainer's model (the worker's
 * load_encoder, prune and peft LoRA) and counts, once per storage, the tensors one training forward saves for its
 * backward. The difference between 8 and 4 texts of exactly max_length tokens is the activation memory per token
 * (constant buffers cancel); the planner must give it within 10 %, on the demo model and on a second shape whose
 * hidden / MLP / kv widths are in other ratios, so the coefficients are not fitted to one model.
 */
describe('the planner’s activation memory against what autograd saves (CPU)', function () {
  this.timeout(600_000);
  const dir = useTempDir();
  const configs = (keep: number) =>
    (['fp32', 'bf16'] as const).flatMap((precision) =>
      [0, 0.05].flatMap((loraDropout) =>
        [false, true].flatMap((checkpointing) => [4, 8].map((texts) => ({ keep, texts, maxLength: 64, precision, checkpointing, loraDropout }))),
      ),
    );

  async function measure(model: string, keep: number, extra: string[] = []) {
    const script = path.join(ROOT, 'test/fixtures/measure_train_memory.py');
    const { stdout } = await run(DEMO.python, [script, model, '--configs', JSON.stringify(configs(keep)), ...extra], {
      env: { ...process.env, PYTHONPATH: path.join(ROOT, 'worker'), OMP_NUM_THREADS: '1', HF_HUB_OFFLINE: '1' },
      maxBuffer: 1 << 24,
    });
    return stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { activationBytes: number; loraParams: number });
  }

  async function check(model: string, keep: number, extra: string[] = []) {
    const results = await measure(model, keep, extra);
    const stack = await inspectModel(model);
    const cs = configs(keep);
    const rows: string[] = [];
    for (let i = 0; i < cs.length; i += 2) {
      const c = cs[i];
      const measured = (results[i + 1].activationBytes - results[i].activationBytes) / ((cs[i + 1].texts - c.texts) * c.maxLength);
      const recipe = { ...planOptions({ keep, device: { kind: 'cpu', name: 'cpu', flopsSource: 'unknown' } }).train, ...c, loraR: 16 };
      const { shape } = modelShape(stack, keep, 16, recipe.targetModules);
      assert.equal(results[i].loraParams, shape.loraParams, 'the LoRA count equals peft’s');
      const head = 4 * shape.hiddenSize + 16;
      const predicted = c.checkpointing
        ? keep * shape.hiddenSize * (c.precision === 'bf16' ? 2 : 4) + head
        : keep * layerActivationBytesPerToken(shape, recipe, 'cpu') + head;
      rows.push(`${c.precision} dropout ${c.loraDropout} ckpt ${c.checkpointing}: measured ${measured.toFixed(0)} B/token, planned ${predicted.toFixed(0)} (${((predicted / measured - 1) * 100).toFixed(1)} %)`);
    }
    if (process.env.L3PRUNE_SHOW_PLAN_ROWS) console.log(rows.join("\n"));
    const bad = rows.filter((r) => Math.abs(Number(/\((-?[\d.]+) %\)/.exec(r)![1])) > 10);
    assert.deepEqual(bad, [], rows.join('\n'));
  }

  before(function () {
    requireWorkerEnvironment(this);
  });

  it('the worker’s devices report parses on the host, and a broken one is refused', async () => {
    const { stdout } = await run(DEMO.python, ['-m', 'l3prune', 'devices'], { env: { ...process.env, PYTHONPATH: path.join(ROOT, 'worker') } });
    const report = parseDevicesReport(stdout);
    assert.ok(typeof report !== 'string', String(report));
    assert.equal(profileFromReport(report).kind, report.cuda.length ? 'cuda' : 'cpu');
    assert.match(String(parseDevicesReport('{"event": "devices"}')), /does not match/);
    assert.match(String(parseDevicesReport('')), /no report/);
  });

  it('on the demo model (Llama, hidden 576, MLP 1536, kv 192)', async () => {
    await check(DEMO.model, 3);
  });

  it('on a random Llama of another shape (hidden 256, MLP 1024, kv 64)', async () => {
    const model = path.join(dir(), 'shape2');
    const config = { hidden_size: 256, intermediate_size: 1024, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 32, num_hidden_layers: 4, vocab_size: 49152 };
    await check(model, 3, ['--build', JSON.stringify(config), '--tokenizer-from', DEMO.model]);
  });
});
