/**
 * Benchmark (not a test): embedding texts with an exported L³Prune encoder on onnxruntime-node (what Try Encoder
 * runs) against the worker's own torch encode of the same pruned model (l3prune.encoder: tokenizer call, forward,
 * pooling, then the L2 norm the graph ends with — sentence-transformers' encode loop), in the same run, on CPU,
 * with the same texts, batch size, maxLength and thread count. Both sides time tokenisation too.
 *   npx tsx bench/ort_node.bench.ts [--keep 15] [--batch-size 16] [--max-length 128] [--texts 48] [--repeats 3]
 *                                   [--threads N] [--folder EXPORTED_ONNX_FOLDER]
 * Without --folder the demo model is exported once (python -m l3prune export-onnx) into a temporary folder.
 */
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { cosine, OnnxEncoder } from '../src/inference/encoder';
import { loadDemoTexts } from './demoTexts';

const root = path.resolve(__dirname, '..');
const python = path.join(root, '.venv/bin/python');
const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const num = (name: string, fallback: number) => (args.has(name) ? Number(args.get(name)) : fallback);
const keep = num('keep', 15);
const batchSize = num('batch-size', 16);
const maxLength = num('max-length', 128);
const textCount = num('texts', 48);
const repeats = num('repeats', 3);
// Both runtimes default to one thread per physical core; the same explicit number keeps the race fair.
const threads = num('threads', availableParallelism());
const env = { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' };

/**
 * The torch side stays up between passes and runs one pass over all batches per "pass" line on stdin, so the
 * two runtimes can take turns: on a shared machine, load that comes and goes then hits both alike.
 */
const TORCH_ENCODE = `
import json, sys, time, torch
from l3prune.encoder import load_encoder, prune
from l3prune.export_onnx import reference_embeddings
a = json.loads(sys.stdin.readline())
torch.set_num_threads(a["threads"])
enc = load_encoder(a["model"], max_length=a["maxLength"])
if a["keep"] < enc.num_layers:
    prune(enc.model, a["keep"])
texts, bs = a["texts"], a["batchSize"]
batches = [texts[i:i + bs] for i in range(0, len(texts), bs)]
print(json.dumps({"ready": True, "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
for line in sys.stdin:
    if line.strip() != "pass":
        break
    times, vectors = [], []
    for b in batches:
        t0 = time.perf_counter()
        e = reference_embeddings(enc, b, a["pooling"])
        times.append((time.perf_counter() - t0) * 1000)
        vectors.extend(e.tolist())
    print(json.dumps({"times": times, "embeddings": vectors}), flush=True)
`;

class TorchSide {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterableIterator<string>;
  private stderr = '';

  constructor(init: object) {
    this.child = spawn(python, ['-c', TORCH_ENCODE], { env });
    this.child.stderr.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-2000)));
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
    this.child.stdin.write(`${JSON.stringify(init)}\n`);
  }

  async next<T>(): Promise<T> {
    const { value, done } = await this.lines.next();
    if (done) throw new Error(`the torch side exited early: ${this.stderr.trim().split('\n').pop() ?? ''} (is the worker set up? bash scripts/setup.sh)`);
    return JSON.parse(value) as T;
  }

  pass(): Promise<{ times: number[]; embeddings: number[][] }> {
    this.child.stdin.write('pass\n');
    return this.next();
  }

  close(): void {
    this.child.stdin.end('quit\n');
  }
}


async function main() {
  const texts = loadDemoTexts(textCount);
  let tmp: string | undefined;
  let folder = args.get('folder');
  if (!folder) {
    tmp = mkdtempSync(path.join(tmpdir(), 'l3prune-ort-bench-'));
    const started = Date.now();
    execFileSync(
      python,
      ['-m', 'l3prune', 'export-onnx', '--run-dir', path.join(tmp, 'run'), '--model', path.join(root, '.demo/models/smollm2-135m'), '--keep', String(keep), '--max-length', String(maxLength)],
      { env, stdio: ['ignore', 'ignore', 'inherit'] },
    );
    folder = path.join(tmp, 'run', 'onnx');
    console.log(`exported SmolLM2-135M keep ${keep} to ONNX in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  try {
    const encoder = await OnnxEncoder.load(folder, { intraOpNumThreads: threads });
    const m = encoder.info.manifest;
    if (m.maxLength !== maxLength) console.log(`note: the export's maxLength is ${m.maxLength}; both sides use it`);
    if (m.adapter) console.log(`note: the export merged ${m.adapter}; the torch side runs ${m.loadedFrom} without it, so only the speeds compare`);
    const torchSide = new TorchSide({ model: m.loadedFrom ?? m.sourceModel, keep: m.numLayers, maxLength: m.maxLength, pooling: m.pooling, texts, batchSize, threads });
    const info = await torchSide.next<{ threads: number; torch: string }>();
    // Warm-up of both, then timed passes taking turns.
    const ortVectors = await encoder.embed(texts, batchSize);
    const { embeddings } = await torchSide.pass();
    const ortTimes: number[] = [];
    const torchTimes: number[] = [];
    let maxSeq = 0;
    for (let r = 0; r < repeats; r++) {
      const o = await encoder.measure(texts, { batchSize, warmup: 0, repeats: 1 });
      ortTimes.push(...o.batchTimes);
      maxSeq = o.maxSeq;
      torchTimes.push(...(await torchSide.pass()).times);
    }
    torchSide.close();
    await encoder.dispose();
    const perSecond = (times: number[]) => (texts.length * repeats) / (times.reduce((a, b) => a + b, 0) / 1000);
    const ort = { msPerBatch: median(ortTimes), textsPerSecond: perSecond(ortTimes), maxSeq };
    const torchMs = median(torchTimes);
    const torchTps = perSecond(torchTimes);
    const minCos = Math.min(...ortVectors.map((v, i) => cosine(v, Float32Array.from(embeddings[i]))));

    const ratio = ort.textsPerSecond / torchTps;
    console.log(
      `SmolLM2-135M pruned to ${m.numLayers} of ${m.originalNumLayers} layers, ${texts.length} STS sentences, batch ${batchSize}, ` +
        `maxLength ${m.maxLength} (longest batch ${ort.maxSeq} tokens), ${repeats} timed passes each after 1 warm-up, taking turns, ${threads} threads each, CPU`,
    );
    console.log(`  onnxruntime-node ${encoderVersion()}   ${ort.msPerBatch.toFixed(1).padStart(8)} ms/batch (median)  ${ort.textsPerSecond.toFixed(1).padStart(8)} texts/s`);
    console.log(`  torch ${info.torch} (worker)   ${torchMs.toFixed(1).padStart(8)} ms/batch (median)  ${torchTps.toFixed(1).padStart(8)} texts/s`);
    console.log(`  ratio onnxruntime-node / torch: ×${ratio.toFixed(2)} throughput (goal ≥ 1.0 → ${ratio >= 1 ? 'met' : 'missed'}); min cosine between the two ${minCos.toFixed(6)}`);
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

function encoderVersion(): string {
  try {
    return (JSON.parse(readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '';
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exitCode = 1;
});
