import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { cosine, OnnxEncoder, similarityMatrix } from '../../src/inference/encoder';
import { EncoderThread } from '../../src/inference/encoderClient';
import { parseManifest, type EncoderManifest } from '../../src/inference/manifest';
import { DEMO, requireWorkerEnvironment } from '../fixtures/demo';
import { subdir, useTempDir } from '../fixtures/tmp';
import type { EncoderInput } from '../../src/inference/tokenizer';

/** The five-path parity texts (worker/tests/test_fivepath.py runs the Python paths on the same ones). */
const PIPELINE_ITEMS = (JSON.parse(readFileSync(path.join(__dirname, '../fixtures/pipeline-texts.json'), 'utf8')) as {
  texts: Array<{ text: string; instruction: string | null }>;
}).texts;

/** Lengths from one token to past maxLength (24), so batches mix heavy padding with truncation. */
const TEXTS = [
  'Hello.',
  'A man is playing a guitar on stage.',
  'Someone performs music with a guitar in front of an audience.',
  'The stock market fell sharply on Monday after the central bank raised interest rates by half a percentage point, the largest increase in two decades.',
  'How do I reset my password?',
  'Müller ordered a café au lait at the naïve little bistro near the Rhône.',
  '東京は日本の首都です。',
  "I can't believe it's already Friday 🎉",
  'def add(a, b):\n    return a + b',
  'OK',
  'Photosynthesis converts light energy into chemical energy stored in glucose, which plants use to grow and which animals eat in turn.',
  'Rain falls over the quiet town.',
  'Is this vaccine safe for children under five?',
];
const KEEP = 2;
const MAX_LENGTH = 24;

/**
 * The worker's torch embeddings for the same texts: l3prune.encoder loads and prunes the demo model exactly
 * as export-onnx does, and export_onnx.reference_embeddings is Encoder.encode plus the L2 norm the graph ends with.
 */
const PYTHON_EMBED = `
import json, sys
from l3prune.encoder import load_encoder, prune
from l3prune.export_onnx import reference_embeddings
a = json.load(sys.stdin)
enc = load_encoder(a["model"], max_length=a["maxLength"])
prune(enc.model, a["keep"])
print(json.dumps(reference_embeddings(enc, a["texts"], a["pooling"]).tolist()))
`;

/**
 * The worker's text pipeline on the pipeline texts: ids and embed mask of each text alone (unpadded) and the torch
 * embedding, with the export's chatTemplate mode.
 */
const PYTHON_PIPELINE = `
import json, sys
from l3prune.encoder import load_encoder, prune
from l3prune.export_onnx import reference_embeddings
from l3prune.textpipe import Text
a = json.load(sys.stdin)
enc = load_encoder(a["model"], max_length=a["maxLength"], chat_template=a["chatTemplate"])
prune(enc.model, a["keep"])
texts = [Text(t["text"], t["instruction"]) for t in a["items"]]
rows = []
for t in texts:
    b = enc.tokenize([t])
    rows.append({"ids": b["input_ids"][0].tolist(), "embedMask": b["embed_mask"][0].tolist()})
print(json.dumps({"rows": rows, "embeddings": reference_embeddings(enc, texts, a["pooling"]).tolist()}))
`;

interface PipelineReference {
  rows: Array<{ ids: number[]; embedMask: number[] }>;
  embeddings: number[][];
}

const workerEnv = { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' };

describe('ONNX encoder (onnxruntime-node) against the worker’s torch encoder', function () {
  this.timeout(600_000);
  const tmp = useTempDir('l3prune-inference-');
  let folder = '';
  let torch: Float32Array[] = [];
  let encoder: OnnxEncoder | undefined;

  before(async function () {
    requireWorkerEnvironment(this);
    const runDir = path.join(tmp(), 'export');
    execFileSync(DEMO.python, ['-m', 'l3prune', 'export-onnx', '--run-dir', runDir, '--model', DEMO.model, '--keep', String(KEEP), '--max-length', String(MAX_LENGTH)], {
      env: workerEnv,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    folder = path.join(runDir, 'onnx');
    const manifest = JSON.parse(readFileSync(path.join(folder, 'l3prune-encoder.json'), 'utf8')) as EncoderManifest;
    const out = execFileSync(DEMO.python, ['-c', PYTHON_EMBED], {
      input: JSON.stringify({ model: DEMO.model, keep: KEEP, maxLength: MAX_LENGTH, pooling: manifest.pooling, texts: TEXTS }),
      env: workerEnv,
      maxBuffer: 64 << 20,
      // transformers' progress bars go to stderr; it comes back in the error if the script fails.
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    torch = (JSON.parse(out.toString()) as number[][]).map((v) => Float32Array.from(v));
    encoder = await OnnxEncoder.load(folder);
  });
  after(() => encoder?.dispose());

  it('reads the export’s description', () => {
    const m = encoder!.info.manifest;
    assert.equal(m.numLayers, KEEP);
    assert.equal(m.originalNumLayers, 30);
    assert.equal(m.maxLength, MAX_LENGTH);
    assert.deepEqual(encoder!.info.inputNames.sort(), ['attention_mask', 'embed_mask', 'input_ids']);
    // SmolLM2 has a chat template: the worker wrapped every text in its user turn, no system prompt.
    assert.deepEqual(m.textPipeline, { instructionFormat: '{instruction}; ', chatPrefix: '<|im_start|>user\n', chatSuffix: '<|im_end|>', embedMask: 'last-k', paddingSide: 'left' });
    assert.equal(m.paddingSide, 'left');
  });

  for (const batchSize of [1, 4, TEXTS.length]) {
    it(`gives the worker’s embeddings (cosine ≥ 0.9999) in batches of ${batchSize}`, async () => {
      const onnxVectors = await encoder!.embed(TEXTS, batchSize);
      assert.equal(onnxVectors.length, TEXTS.length);
      onnxVectors.forEach((v, i) => {
        assert.equal(v.length, encoder!.info.manifest.hiddenSize);
        const c = cosine(v, torch[i]);
        assert.ok(c >= 0.9999, `cosine ${c} for ${JSON.stringify(TEXTS[i])}`);
      });
    });
  }

  it('truncates long texts to maxLength as the worker does', () => {
    const long = TEXTS[3];
    assert.equal(encoder!.tokenizer.encode(long).length, MAX_LENGTH);
    assert.ok(encoder!.tokenizer.encode(TEXTS[0]).length < MAX_LENGTH);
  });

  it('reproduces the ids and vectors of the export’s own parity examples', async () => {
    const { examples } = JSON.parse(readFileSync(path.join(folder, 'parity-examples.json'), 'utf8')) as {
      examples: Array<{ text: string; instruction: string | null; inputIds: number[]; embedMask: number[]; embedding: number[] }>;
    };
    assert.ok(examples.length >= 8);
    assert.ok(examples.some((e) => e.instruction) && examples.some((e) => e.inputIds.length === MAX_LENGTH));
    const inputs: EncoderInput[] = examples.map((e) => ({ text: e.text, instruction: e.instruction }));
    const vectors = await encoder!.embed(inputs, 8);
    examples.forEach((e, i) => {
      assert.deepEqual(encoder!.tokenizer.encode(inputs[i]), e.inputIds, `ids of ${JSON.stringify(e.text)}`);
      const one = encoder!.tokenizer.encodeBatch([inputs[i]]);
      assert.deepEqual(Array.from(one.embedMask, Number), e.embedMask, `embed mask of ${JSON.stringify(e.text)}`);
      assert.ok(cosine(vectors[i], Float32Array.from(e.embedding)) >= 0.9999, JSON.stringify(e.text));
    });
  });

  it('measures latency per batch and throughput after warm-up', async () => {
    const t = await encoder!.measure(TEXTS, { batchSize: 4, warmup: 1, repeats: 2 });
    assert.equal(t.batches, 2 * Math.ceil(TEXTS.length / 4));
    assert.ok(t.msPerBatch > 0 && Number.isFinite(t.msPerBatch));
    assert.ok(t.textsPerSecond > 0 && Number.isFinite(t.textsPerSecond));
    assert.equal(t.maxSeq, MAX_LENGTH);
  });

  it('runs in a worker thread with the same results as in-process', async () => {
    const { thread, info } = await EncoderThread.open(folder);
    try {
      assert.equal(info.folder, folder);
      const texts = TEXTS.slice(0, 5);
      const c = await thread.compare(texts, 2, 1);
      const expected = similarityMatrix(await encoder!.embed(texts, 2));
      c.matrix.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - expected[i][j]) < 1e-5, `[${i}][${j}] ${v} vs ${expected[i][j]}`)));
      c.matrix.forEach((row, i) => assert.equal(row[i], 1));
      assert.equal(c.tokens.length, texts.length);
      assert.equal(c.throughput.batches, 3);
      assert.ok(c.throughput.textsPerSecond > 0);
      const vectors = await thread.embed(texts.slice(0, 2));
      assert.ok(cosine(vectors[0], torch[0]) >= 0.9999);
    } finally {
      await thread.dispose();
    }
  });

  it('runs an fp16 export (half the bytes, float32 out) as the fp32 one, within the fp16 parity (cosine ≥ 0.999)', async () => {
    const runDir = path.join(tmp(), 'export-fp16');
    execFileSync(DEMO.python, ['-m', 'l3prune', 'export-onnx', '--run-dir', runDir, '--model', DEMO.model, '--keep', String(KEEP), '--max-length', String(MAX_LENGTH),
      '--precision', 'fp16'], { env: workerEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    const half = await OnnxEncoder.load(path.join(runDir, 'onnx'));
    try {
      assert.equal(half.info.manifest.precision, 'fp16');
      assert.equal(encoder!.info.manifest.precision, 'fp32');
      const ratio = statSync(path.join(runDir, 'onnx', 'model.onnx')).size / statSync(path.join(folder, 'model.onnx')).size;
      assert.ok(ratio > 0.49 && ratio < 0.51, `fp16 / fp32 bytes ${ratio}`);
      const vectors = await half.embed(TEXTS, 4);
      vectors.forEach((v, i) => {
        assert.ok(v instanceof Float32Array && v.length === half.info.manifest.hiddenSize);
        const c = cosine(v, torch[i]);
        assert.ok(c >= 0.999, `cosine ${c} for ${JSON.stringify(TEXTS[i])}`);
      });
    } finally {
      await half.dispose();
    }
  });

  it('a missing model.onnx is named, with what to do', async () => {
    const broken = subdir(tmp, 'no-model');
    for (const f of ['l3prune-encoder.json', 'tokenizer.json']) copyFileSync(path.join(folder, f), path.join(broken, f));
    await assert.rejects(OnnxEncoder.load(broken), (e: Error) => {
      assert.match(e.message, /no-model[/\\]model\.onnx is missing/);
      assert.match(e.message, /export-onnx/);
      return true;
    });
  });
});

describe('the text pipeline in onnxruntime-node against the worker (pipeline texts, chat template on and off)', function () {
  this.timeout(600_000);
  const tmp = useTempDir('l3prune-pipeline-');
  const inputs: EncoderInput[] = PIPELINE_ITEMS.map((t) => (t.instruction ? { text: t.text, instruction: t.instruction } : t.text));

  for (const chatTemplate of ['auto', 'off'] as const) {
    it(`chatTemplate ${chatTemplate}: ids, embed masks and embeddings (cosine ≥ 0.9999) equal the worker’s on ${PIPELINE_ITEMS.length} texts`, async function () {
      requireWorkerEnvironment(this);
      const runDir = path.join(tmp(), `export-${chatTemplate}`);
      execFileSync(DEMO.python, ['-m', 'l3prune', 'export-onnx', '--run-dir', runDir, '--model', DEMO.model, '--keep', String(KEEP), '--max-length', String(MAX_LENGTH),
        '--chat-template', chatTemplate], { env: workerEnv, stdio: ['ignore', 'ignore', 'pipe'] });
      const folder = path.join(runDir, 'onnx');
      const manifest = JSON.parse(readFileSync(path.join(folder, 'l3prune-encoder.json'), 'utf8')) as EncoderManifest;
      assert.equal(manifest.textPipeline?.chatPrefix ?? null, chatTemplate === 'auto' ? '<|im_start|>user\n' : null);
      const ref = JSON.parse(execFileSync(DEMO.python, ['-c', PYTHON_PIPELINE], {
        input: JSON.stringify({ model: DEMO.model, keep: KEEP, maxLength: MAX_LENGTH, pooling: manifest.pooling, chatTemplate, items: PIPELINE_ITEMS }),
        env: workerEnv,
        maxBuffer: 64 << 20,
        stdio: ['pipe', 'pipe', 'pipe'],
      }).toString()) as PipelineReference;
      const enc = await OnnxEncoder.load(folder);
      try {
        assert.ok(ref.rows.some((r) => r.ids.length === MAX_LENGTH), 'some texts are truncated');
        inputs.forEach((input, i) => {
          assert.deepEqual(enc.tokenizer.encode(input), ref.rows[i].ids, `ids of ${JSON.stringify(input)}`);
          assert.deepEqual(Array.from(enc.tokenizer.encodeBatch([input]).embedMask, Number), ref.rows[i].embedMask, `embed mask of ${JSON.stringify(input)}`);
        });
        for (const batchSize of [1, 7]) {
          const vectors = await enc.embed(inputs, batchSize);
          vectors.forEach((v, i) => {
            const c = cosine(v, Float32Array.from(ref.embeddings[i]));
            assert.ok(c >= 0.9999, `cosine ${c} for ${JSON.stringify(inputs[i])} in batches of ${batchSize}`);
          });
        }
      } finally {
        await enc.dispose();
      }
    });
  }
});

describe('ONNX encoder folders that are not usable', function () {
  this.timeout(60_000);
  const tmp = useTempDir('l3prune-inference-bad-');

  /** A valid description of a toy encoder; each test breaks one thing. */
  const manifest = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
    format: 1,
    model: 'model.onnx',
    externalData: null,
    pooling: 'weighted_mean',
    normalize: true,
    maxLength: 16,
    hiddenSize: 8,
    numLayers: 2,
    originalNumLayers: 30,
    inputs: ['input_ids', 'attention_mask'],
    output: 'embedding',
    paddingSide: 'right',
    truncationSide: 'right',
    padTokenId: 0,
    addSpecialTokens: true,
    prependTokenIds: [],
    appendTokenIds: [],
    sourceModel: '/models/toy',
    ...over,
  });
  const TOKENIZER = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: 0, content: '[UNK]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: { '[UNK]': 0, hello: 1, world: 2 } },
  };

  /** int64 inputs → Cast to float: a loadable graph whose output is [batch, sequence], not [batch, hidden]. */
  function graph(inputs: string[], node: { opType: string; input: string[]; attribute?: object[] }, outElemType = 1): Uint8Array {
    const valueInfo = (name: string, elemType: number) =>
      onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType, shape: { dim: [{ dimParam: 'batch' }, { dimParam: 'sequence' }] } } } });
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'l3prune-tests',
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'toy',
        node: [{ ...node, output: ['embedding'] }],
        input: inputs.map((name) => valueInfo(name, name === 'pixel_values' ? 1 : 7)),
        output: [valueInfo('embedding', outElemType)],
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
  const castIds = graph(['input_ids', 'attention_mask'], { opType: 'Cast', input: ['input_ids'], attribute: [{ name: 'to', type: 2, i: 1 }] });

  let n = 0;
  function folderWith(files: { manifest?: unknown; model?: Uint8Array | string | null; tokenizer?: unknown }): string {
    const dir = subdir(tmp, `case-${++n}`);
    if (files.manifest !== undefined) {
      writeFileSync(path.join(dir, 'l3prune-encoder.json'), typeof files.manifest === 'string' ? files.manifest : JSON.stringify(files.manifest));
    }
    if (files.model !== null) writeFileSync(path.join(dir, 'model.onnx'), files.model ?? castIds);
    if (files.tokenizer !== null) writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizer ?? TOKENIZER));
    return dir;
  }

  async function rejectsWith(folder: string, ...patterns: RegExp[]): Promise<void> {
    await assert.rejects(OnnxEncoder.load(folder), (e: Error) => {
      for (const p of patterns) assert.match(e.message, p);
      return true;
    });
  }

  it('malformed l3prune-encoder.json: names the file, the JSON error and the fix', async () => {
    const dir = folderWith({ manifest: '{"format": 1, "pooling": ' });
    await rejectsWith(dir, /l3prune-encoder\.json is not valid JSON/, /export-onnx/);
  });

  it('an unknown format version asks for a newer extension or a re-export', async () => {
    await rejectsWith(folderWith({ manifest: manifest({ format: 2 }) }), /"format": 2/, /reads format 1 only/);
    await rejectsWith(folderWith({ manifest: { pooling: 'mean' } }), /has no "format"/);
    await rejectsWith(folderWith({ manifest: [1, 2] }), /must hold a JSON object/);
  });

  it('lists every wrong field at once', async () => {
    const dir = folderWith({ manifest: manifest({ maxLength: 0, paddingSide: 'middle', padTokenId: -1, inputs: ['input_ids'], normalize: 'yes', hiddenSize: undefined }) });
    await rejectsWith(
      dir,
      /l3prune-encoder\.json is not a valid encoder description/,
      /"maxLength" must be a whole number ≥ 1 \(found 0\)/,
      /"paddingSide" must be "left" or "right" \(found "middle"\)/,
      /"padTokenId" must be a token id ≥ 0/,
      /"inputs" must name "attention_mask"/,
      /"normalize" must be true or false \(found "yes"\)/,
      /"hiddenSize" must be a whole number ≥ 1 \(found nothing\)/,
    );
  });

  it('refuses a manifest that points outside the folder', async () => {
    await rejectsWith(folderWith({ manifest: manifest({ model: '../elsewhere.onnx' }) }), /"model" must be a file name inside the folder/);
    await rejectsWith(folderWith({ manifest: manifest({ externalData: '/etc/passwd' }) }), /"externalData" must be a file name inside the folder/);
  });

  it('missing model.onnx, external data or tokenizer.json: names the file', async () => {
    await rejectsWith(folderWith({ manifest: manifest(), model: null }), /model\.onnx is missing/, /not a complete exported encoder/);
    await rejectsWith(folderWith({ manifest: manifest({ externalData: 'model.onnx.data' }) }), /model\.onnx\.data is missing/);
    await rejectsWith(folderWith({ manifest: manifest(), tokenizer: null }), /tokenizer\.json is missing/);
  });

  it('only a local folder: no URL, no file, nothing that does not exist', async () => {
    await rejectsWith('https://huggingface.co/some/model' as string, /is not a local folder/);
    const dir = folderWith({ manifest: manifest() });
    await rejectsWith(path.join(dir, 'model.onnx'), /is a file, not a folder/);
    await rejectsWith(path.join(dir, 'nope'), /does not exist/);
    await rejectsWith(folderWith({ model: null }), /l3prune-encoder\.json is missing/, /not an exported L³Prune encoder/);
  });

  it('a corrupt model.onnx is reported as such', async () => {
    await rejectsWith(folderWith({ manifest: manifest(), model: 'this is not protobuf' }), /model\.onnx cannot be loaded by ONNX Runtime/);
  });

  it('a graph with other inputs or the wrong output is refused with what it has', async () => {
    const other = graph(['pixel_values'], { opType: 'Identity', input: ['pixel_values'] });
    await rejectsWith(folderWith({ manifest: manifest(), model: other }), /takes inputs pixel_values/, /input_ids and attention_mask/);
    await rejectsWith(folderWith({ manifest: manifest({ output: 'sentence_embedding' }) }), /has no output "sentence_embedding" \(it has embedding\)/);
    const encoder = await OnnxEncoder.load(folderWith({ manifest: manifest() }));
    try {
      await assert.rejects(encoder.embed(['hello world', 'hello']), /returned float32 \[2, 2\] for "embedding"; l3prune-encoder\.json promises float32 \[2, 8\]/);
    } finally {
      await encoder.dispose();
    }
  });

  it('the worker thread reports a load failure with the loader’s message and ends', async () => {
    await assert.rejects(EncoderThread.open(path.join(tmp(), 'nowhere')), /nowhere does not exist; pick an exported encoder folder/);
  });

  it('a broken tokenizer.json is named', async () => {
    const dir = folderWith({ manifest: manifest() });
    writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
    await rejectsWith(dir, /tokenizer\.json is not valid JSON/);
  });

  it('parseManifest accepts the worker’s own output', () => {
    const m = parseManifest(manifest({ parity: { minCosine: 1 }, exporter: {}, createdAt: '2026-11-29T01:58:33.547Z' }), 'x.json');
    assert.equal(m.model, 'model.onnx');
    assert.equal(parseManifest({ ...manifest(), model: undefined }, 'x.json').model, 'model.onnx');
  });

  it('parseManifest reads the precision, fp32 when an older export has none, and refuses one it does not know', () => {
    assert.equal(parseManifest(manifest(), 'x.json').precision, 'fp32');
    assert.equal(parseManifest(manifest({ precision: 'fp16' }), 'x.json').precision, 'fp16');
    assert.equal(parseManifest(manifest({ precision: 'int8' }), 'x.json').precision, 'int8');
    assert.throws(() => parseManifest(manifest({ precision: 'int4' }), 'x.json'), /precision/);
  });
});

describe('similarity', () => {
  it('cosine of equal, opposite, orthogonal and zero vectors', () => {
    const a = Float32Array.of(1, 2, 3);
    assert.ok(Math.abs(cosine(a, a) - 1) < 1e-12);
    assert.ok(Math.abs(cosine(a, Float32Array.of(-1, -2, -3)) + 1) < 1e-12);
    assert.equal(cosine(Float32Array.of(1, 0), Float32Array.of(0, 1)), 0);
    assert.equal(cosine(Float32Array.of(0, 0), Float32Array.of(0, 1)), 0);
    assert.throws(() => cosine(a, Float32Array.of(1)), /different sizes/);
  });
  it('the matrix is symmetric with ones on the diagonal', () => {
    const m = similarityMatrix([Float32Array.of(1, 0), Float32Array.of(1, 1), Float32Array.of(0, 1)]);
    assert.deepEqual(m.map((r) => r.map((v) => Math.round(v * 1e6) / 1e6)), [
      [1, 0.707107, 0],
      [0.707107, 1, 0.707107],
      [0, 0.707107, 1],
    ]);
  });
});
