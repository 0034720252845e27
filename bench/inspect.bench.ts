/**
 * Benchmark (not a test): read the layer stack of a synthetic Llama-3-8B sharded checkpoint (real tensor
 * names, shapes and headers, sparse data) and compare, in the same run, with safetensors.safe_open
 * listing keys and shapes, and with transformers building the model on the meta device.
 *   npx tsx bench/inspect.bench.ts [repeats]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { inspectModel } from '../src/model/inspect';
import { LLAMA3_8B, writeLlamaFolder } from '../test/fixtures/checkpoints';

const repeats = Number(process.argv[2] ?? 50);
const root = path.resolve(__dirname, '..');
const tmp = mkdtempSync(path.join(tmpdir(), 'l3prune-bench-'));

async function main() {
  const folder = path.join(tmp, 'llama3-8b');
  writeLlamaFolder(folder, LLAMA3_8B, 4);
  // Warm-up: module loading, JIT and the first file-system lookups are not what a user waits for twice.
  for (let i = 0; i < 5; i++) await inspectModel(folder);
  const times: number[] = [];
  let params = 0;
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    params = (await inspectModel(folder)).totalParams;
    times.push(performance.now() - t0);
  }
  const ours = median(times);
  const reference = JSON.parse(
    execFileSync(path.join(root, '.venv/bin/python'), [path.join(root, 'bench/inspect_reference.py'), folder, String(repeats)], { encoding: 'utf8' }),
  );
  console.log(`synthetic Llama-3-8B, 4 shards, ${repeats} repeats (medians)`);
  console.log(`  l3prune inspectModel            ${ours.toFixed(2)} ms  (${params.toLocaleString('en')} params)`);
  console.log(`  safetensors.safe_open listing   ${reference.safeOpenMs.toFixed(2)} ms  (${reference.safeOpenParams.toLocaleString('en')} params)  → ratio ours/safe_open ×${(ours / reference.safeOpenMs).toFixed(1)} (safe_open is Rust, keys only)`);
  console.log(`  transformers meta-device build  ${reference.transformersMetaMs.toFixed(2)} ms  (${reference.transformersParams.toLocaleString('en')} params)  → ours is ×${(reference.transformersMetaMs / ours).toFixed(1)} faster`);
  console.log(`  goals: under 50 ms → ${ours < 50 ? 'met' : 'missed'}; ≥ 20× transformers → ${reference.transformersMetaMs / ours >= 20 ? 'met' : 'missed'}`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

main().finally(() => rmSync(tmp, { recursive: true, force: true }));
