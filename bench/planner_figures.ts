/**
 * The figures of docs/planner.md, regenerated: `npx tsx bench/planner_figures.ts`. Llama-3-8B is a header-only
 * checkpoint of its real shapes (test/fixtures/checkpoints.ts: safetensors headers, sparse data), the demo model
 * is .demo/models/smollm2-135m; every number comes from src/shared/prune/resources.ts, the planner the CLI and the
 * extension use.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { inspectModel } from '../src/model/inspect';
import { GiB, gpuProfile, planOptions, planResources, type DeviceProfile, type PlanInput } from '../src/shared/prune/resources';
import { LLAMA3_8B, writeLlamaFolder } from '../test/fixtures/checkpoints';

const gib = (b: number) => (b / GiB).toFixed(2);
const time = (s: number | null) => (s === null ? 'n/a' : s < 120 ? `${s.toFixed(2)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(2)} h`);

async function table(title: string, model: string, keep: number, device: DeviceProfile, cases: Array<[string, Partial<PlanInput>]>) {
  const stack = await inspectModel(model);
  console.log(`\n### ${title}\n`);
  const plans = cases.map(([name, o]) => [name, planResources(stack, planOptions({ keep, device, ...o }))] as const);
  const names = plans[0][1].train.terms.map((t) => t.name);
  const all = [...new Set(plans.flatMap(([, p]) => p.train.terms.map((t) => t.name)))];
  console.log(`| train term (GiB) | ${plans.map(([n]) => n).join(' | ')} |`);
  console.log(`|---|${plans.map(() => '---:').join('|')}|`);
  for (const name of [...names, ...all.filter((n) => !names.includes(n))]) {
    console.log(`| ${name} | ${plans.map(([, p]) => { const t = p.train.terms.find((x) => x.name === name); return t ? gib(t.bytes) : '—'; }).join(' | ')} |`);
  }
  console.log(`| **peak** | ${plans.map(([, p]) => `**${gib(p.train.peakBytes)}**`).join(' | ')} |`);
  console.log(`| fits ${device.name}${device.totalMemoryBytes ? ` (${gib(device.totalMemoryBytes)} GiB × 0.9)` : ''} | ${plans.map(([, p]) => (p.train.fits === null ? 'n/a' : p.train.fits ? 'yes' : 'no')).join(' | ')} |`);
  console.log(`| step time (${device.flopsSource}) | ${plans.map(([, p]) => time(p.train.secondsPerStep)).join(' | ')} |`);
  console.log(`| ${plans[0][1].train.steps} steps | ${plans.map(([, p]) => time(p.train.totalSeconds)).join(' | ')} |`);
  const p = plans[0][1];
  console.log(`\nLoRA r ${p.train.recipe.loraR}: ${p.model.loraParams.toLocaleString('en')} parameters (${(p.model.loraParams / keep).toLocaleString('en')} a layer). ` +
    `analyze (all ${p.model.numLayers} layers, batch ${p.analyze.recipe.batchSize} × ${p.analyze.recipe.maxLength}): peak ${gib(p.analyze.peakBytes)} GiB, ${time(p.analyze.totalSeconds)} for ${p.analyze.steps} batches; ` +
    `evaluate (batch ${p.evaluate.recipe.batchSize} × ${p.evaluate.recipe.maxLength}): peak ${gib(p.evaluate.peakBytes)} GiB.`);
  for (const [name, q] of plans) if (q.train.advice.length) console.log(`\n${name}, to fit: ${q.train.advice.map((a) => a.text).join('; ')}.`);
}

(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'planner-figures-'));
  try {
    const llama = path.join(dir, 'llama-3-8b');
    writeLlamaFolder(llama, LLAMA3_8B, 2);
    const h100 = gpuProfile('NVIDIA H100 80GB HBM3', 80 * GiB);
    const cases: Array<[string, Partial<PlanInput>]> = [
      ['checkpointing on', { gradientCheckpointing: true }],
      ['checkpointing off', { gradientCheckpointing: false }],
      ['on + cache 16', { gradientCheckpointing: true, miniBatchSize: 16 }],
    ];
    await table('Llama-3-8B, keep 25 of 32, batch 64 × 512, bf16, H100 80 GB', llama, 25, h100, cases);
    await table('Llama-3-8B, keep 25 of 32, batch 64 × 512, bf16, RTX 4090 24 GB', llama, 25, gpuProfile('NVIDIA GeForce RTX 4090', 24 * GiB), cases);
    const demo = path.resolve(__dirname, '../.demo/models/smollm2-135m');
    if (existsSync(demo)) {
      await table('demo model (SmolLM2-135M), keep 21 of 30, batch 8 × 64, fp32, CPU', demo, 21, { kind: 'cpu', name: 'cpu', flopsSource: 'unknown' }, [
        ['checkpointing off', { batchSize: 8, maxLength: 64, gradientCheckpointing: false, steps: 100 }],
        ['checkpointing on', { batchSize: 8, maxLength: 64, gradientCheckpointing: true, steps: 100 }],
      ]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();
