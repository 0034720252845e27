/**
 * Benchmark (not a test): int8 against fp32 ONNX exports of the same cut in onnxruntime-node (what the extension
 * serves with and what the Compare view's "onnxruntime-node texts/s" column measures), in the same run, on CPU, with
 * the same texts, batch size and thread count, the two sessions taking turns batch by batch so load that comes and
 * goes on a shared machine hits both alike. It prints the ratio, not absolute times: the goal (issue 13) is int8 at
 * least 2x fp32's throughput. With --score N it also evaluates both exports in the worker (evaluate --onnx,
 * --max-examples N) and prints the average-score change, whose goal is at most 1 point (0.01) lost; the fp32 export
 * scores as its torch model does (worker/tests/test_onnx_variants.py), so this is the quantization's change.
 *   npx tsx bench/int8.bench.ts [--cuts 4,15,30] [--batch-size 16] [--max-length 128] [--texts 48] [--repeats 3]
 *                               [--threads 1] [--score 64]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { cosine, OnnxEncoder } from '../src/inference/encoder';
import { loadDemoTexts } from './demoTexts';

const root = path.resolve(__dirname, '..');
const python = path.join(root, '.venv/bin/python');
const model = path.join(root, '.demo/models/smollm2-135m');
const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const num = (name: string, fallback: number) => (args.has(name) ? Number(args.get(name)) : fallback);
const cuts = (args.get('cuts') ?? '4,15,30').split(',').map(Number);
const batchSize = num('batch-size', 16);
const maxLength = num('max-length', 128);
const textCount = num('texts', 48);
const repeats = num('repeats', 3);
const threads = num('threads', 1);
const score = args.has('score') ? num('score', 64) : undefined;
const env = { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1', OMP_NUM_THREADS: String(threads) };


function exportCut(tmp: string, keep: number, precision: 'fp32' | 'int8'): string {
  const runDir = path.join(tmp, `export-${keep}-${precision}`);
  execFileSync(python, ['-m', 'l3prune', 'export-onnx', '--run-dir', runDir, '--model', model, '--keep', String(keep), '--max-length', String(maxLength), '--precision', precision], {
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return path.join(runDir, 'onnx');
}

function averageScore(tmp: string, folder: string, name: string): number {
  const runDir = path.join(tmp, `evaluate-${name}`);
  execFileSync(python, ['-m', 'l3prune', 'evaluate', '--run-dir', runDir, '--onnx', folder, '--max-examples', String(score)], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  return (JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')) as { result: { averageScore: number } }).result.averageScore;
}

async function main() {
  const texts = loadDemoTexts(textCount);
  const batches: string[][] = [];
  for (let i = 0; i < texts.length; i += batchSize) batches.push(texts.slice(i, i + batchSize));
  const tmp = mkdtempSync(path.join(tmpdir(), 'l3prune-int8-bench-'));
  console.log(`SmolLM2-135M, ${texts.length} STS sentences, batch ${batchSize}, maxLength ${maxLength}, ${threads} thread(s), onnxruntime-node CPU, ${repeats} timed passes after 1 warm-up, taking turns`);
  try {
    for (const keep of cuts) {
      const fp32 = exportCut(tmp, keep, 'fp32');
      const int8 = exportCut(tmp, keep, 'int8');
      const a = await OnnxEncoder.load(fp32, { intraOpNumThreads: threads });
      const b = await OnnxEncoder.load(int8, { intraOpNumThreads: threads });
      const va = await a.embed(texts, batchSize);
      const vb = await b.embed(texts, batchSize);
      const times = { fp32: 0, int8: 0 };
      for (let r = 0; r < repeats; r++) {
        for (const batch of batches) {
          for (const [name, enc] of [['fp32', a], ['int8', b]] as const) {
            const start = process.hrtime.bigint();
            await enc.embedBatch(batch);
            times[name] += Number(process.hrtime.bigint() - start) / 1e6;
          }
        }
      }
      await a.dispose();
      await b.dispose();
      const cos = va.map((v, i) => cosine(v, vb[i]));
      const bytes = (f: string) => statSync(path.join(f, 'model.onnx')).size;
      const ratio = times.fp32 / times.int8;
      console.log(
        `  keep ${String(keep).padStart(2)}: int8/fp32 throughput ×${ratio.toFixed(2)} (goal ≥ 2 → ${ratio >= 2 ? 'met' : 'missed'}); ` +
          `file ${(bytes(int8) / bytes(fp32)).toFixed(2)} of fp32's; int8-vs-fp32 cosine min ${Math.min(...cos).toFixed(4)} mean ${(cos.reduce((x, y) => x + y, 0) / cos.length).toFixed(4)}`,
      );
      if (score !== undefined) {
        const change = averageScore(tmp, int8, `${keep}-int8`) - averageScore(tmp, fp32, `${keep}-fp32`);
        console.log(`           average score int8 − fp32: ${change >= 0 ? '+' : ''}${change.toFixed(4)} over 5 tasks at --max-examples ${score} (goal ≥ −0.01 → ${change >= -0.01 ? 'met' : 'missed'})`);
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exitCode = 1;
});
