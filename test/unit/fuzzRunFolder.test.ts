// Generates 2,600 cases by default (L3PRUNE_FUZZ_RUNS=1500): 500 byte-mutated + 500 structured run.json files, 1,200 events.jsonl files tailed across random chunk boundaries, 400 run roots through RunStore.refresh.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, closeSync, ftruncateSync, mkdirSync, openSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { parseRunRecord, type RunEvent, type RunRecord } from '../../src/shared/protocol/workerEvents';
import { effectiveStatus, freshTail, MAX_EVENT_LINE_LENGTH, parseEventLine, readAllEvents, readNewEvents, readRunRecord, type TailState } from '../../src/runs/runFolder';
import { RunStore, type RunSummary } from '../../src/runs/runStore';
import { useTempDir } from '../fixtures/tmp';

/**
 * A run folder is read while a worker writes it, and may be copied, cut short or damaged: thousands of
 * generated run.json and events.jsonl contents go through readRunRecord, readNewEvents (with the file
 * growing in random slices, cut anywhere, even inside a UTF-8 character) and RunStore.refresh. None may
 * throw, none may take long, every record and event returned has the types its parser promises, and the
 * events a tail returns are exactly those a single read of the finished file gives.
 */
const RUNS = Number(process.env.L3PRUNE_FUZZ_RUNS ?? 1500);
const RUN_JSON_BYTES = Math.round(RUNS / 3);
const RUN_JSON_STRUCTURED = Math.round(RUNS / 3);
const EVENTS = Math.round(RUNS * 0.8);
const STORES = Math.round(RUNS * (4 / 15));
const PER_CASE_MS = 2000;

async function bounded<T>(what: string, run: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${PER_CASE_MS} ms`)), PER_CASE_MS);
  });
  try {
    return await Promise.race([run(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Valid examples, shaped as protocol/run.schema.json and events.schema.json define them.
const T = '2026-11-29T01:58:33.547Z';
const T2 = '2026-11-29T02:03:10.001Z';
const trainSpec = { model: '/models/m', keep: 10, data: '/d.jsonl', steps: 100, batchSize: 8, learningRate: 0.0002, targetModules: ['q_proj'] };
const exportResult = { path: '/runs/e/onnx/model.onnx', outDir: '/runs/e/onnx', bytes: 123456, opset: 17, parityMinCosine: 0.99999, parityMeanCosine: 0.999995, numLayers: 8, seconds: 12.5 };
const evaluationResult = {
  numLayers: 8, params: 1000, bytes: 4000, averageScore: 0.61, scores: { Banking77Classification: 0.7, 'STS-日本': 0.52 },
  latencyMsPerBatch: 12.5, textsPerSecond: 640, batchSize: 8, maxLength: 128, device: 'cpu', seconds: 30, resultsDir: '/runs/v/results',
};
const base = { schemaVersion: 1, pid: 4242, startedAt: T, heartbeatAt: T2 };
const VALID_RECORDS: Array<Record<string, unknown>> = [
  { ...base, runId: 'train-a', verb: 'train', spec: trainSpec, status: 'running', endedAt: null, error: null, result: null },
  { ...base, runId: 'analyze-b', verb: 'analyze', spec: { model: '/m', data: '/d.jsonl' }, status: 'succeeded', endedAt: T2, error: null, result: { small: 2, large: 5, numLayers: 8, seconds: 3.5 } },
  { ...base, runId: 'train-c', verb: 'train', spec: trainSpec, status: 'failed', endedAt: T2, error: { message: 'disk full — «espace» 満杯 🚀', kind: 'resource' }, result: null },
  { ...base, runId: 'export-d', verb: 'export-onnx', spec: { model: '/m', out: '/o', keep: null }, status: 'succeeded', endedAt: T2, error: null, result: exportResult },
  { ...base, runId: 'evaluate-e', verb: 'evaluate', spec: { model: '/m', fromRun: '/runs/train-a' }, status: 'succeeded', endedAt: T2, error: null, result: evaluationResult },
  { ...base, runId: 'train-f', verb: 'train', spec: trainSpec, status: 'cancelled', endedAt: T2, error: { message: 'cancelled by the user' }, result: null },
];
const VALID_EVENTS: Array<Record<string, unknown>> = [
  { event: 'started', time: T, verb: 'train', pid: 4242, spec: trainSpec },
  { event: 'model_loaded', time: T, numLayers: 8, modelType: 'llama', hiddenSize: 64, finalNorm: true, loadSeconds: 0.5 },
  { event: 'progress', time: T, batch: 3, batches: 16, elapsedSeconds: 1.5, stage: 'encode', task: 'Banking77 — 日本' },
  { event: 'heartbeat', time: T },
  { event: 'layer_losses', time: T, losses: [3.1, 2.5, 2.2, 2.4], small: 2, large: 3, blockInfluence: [0.1, 0.2, 0.3, 0.4], angularDistance: [0.5, 0.4, 0.3, 0.2], numLayers: 4, samples: 64, pooling: 'mean', scale: 50 },
  { event: 'step', time: T, step: 5, totalSteps: 100, loss: 2.75, learningRate: 0.0001, tokensPerSecond: 812.5, gpuMemoryBytes: 0, elapsedSeconds: 9.5 },
  { event: 'checkpoint', time: T, step: 100, path: 'checkpoints/step-00000100' },
  { event: 'resumed', time: T, step: 100, checkpoint: 'checkpoints/step-00000100' },
  { event: 'train_finished', time: T, step: 100, finalLoss: 1.25, adapterPath: '/runs/t/adapter', mergedPath: null },
  { event: 'exported', time: T, ...exportResult },
  { event: 'task_result', time: T, task: 'Banking77Classification', key: 'b77', taskType: 'Classification', metric: 'accuracy', mainScore: 0.7, scores: { accuracy: 0.7 }, seconds: 4, resultPath: '/r/b77.json' },
  { event: 'evaluation_finished', time: T, ...evaluationResult },
  { event: 'error', time: T, message: 'No space left on device — «ünïcødé» 🚀', kind: 'resource' },
  { event: 'cancelled', time: T, signal: 'SIGTERM', step: 7 },
];

// ---------------------------------------------------------------------------------------------------------
// Type mirrors: what each returned record and event must be, written from the TypeScript interfaces.
const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === 'string';
const isFin = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown, min: number) => Number.isSafeInteger(v) && (v as number) >= min;
const isScore = (v: unknown) => v === null || isFin(v);
const isNumList = (v: unknown) => Array.isArray(v) && v.every(isFin);
const STATUSES = ['running', 'succeeded', 'failed', 'cancelled'];

function assertRecordTyped(r: RunRecord): void {
  assert.ok(isStr(r.runId) && isStr(r.verb) && isObj(r.spec), 'runId, verb, spec');
  assert.ok(STATUSES.includes(r.status), `status ${String(r.status)}`);
  assert.ok(isInt(r.pid, 0), 'pid');
  assert.ok(isStr(r.startedAt) && isStr(r.heartbeatAt), 'times');
  assert.ok(r.endedAt == null || isStr(r.endedAt), `endedAt is a time or null: ${JSON.stringify(r.endedAt)?.slice(0, 40)}`);
  assert.ok(r.result == null || isObj(r.result), `result is an object or null: ${JSON.stringify(r.result)?.slice(0, 40)}`);
  assert.ok(r.error === null || (isObj(r.error) && isStr(r.error.message)), 'error');
}

function assertEventTyped(e: RunEvent): void {
  const r = e as Record<string, unknown>;
  assert.ok(isObj(r) && isStr(r.event) && isStr(r.time), 'an event has a string event and time');
  switch (r.event) {
    case 'layer_losses': {
      const n = (r.losses as unknown[]).length;
      assert.ok(isNumList(r.losses) && n > 0 && isNumList(r.blockInfluence) && isNumList(r.angularDistance), 'layer_losses curves');
      assert.ok(isInt(r.small, 1) && isInt(r.large, 1) && (r.small as number) <= n && (r.large as number) <= n, 'layer_losses cuts');
      break;
    }
    case 'progress':
      assert.ok(isInt(r.batch, 0) && isInt(r.batches, 0), 'progress counts');
      break;
    case 'error':
      assert.ok(isStr(r.message), 'error message');
      break;
    case 'task_result':
      // A score is a finite number, or null where the metric is undefined for the model.
      assert.ok(isStr(r.task) && r.task !== '' && isStr(r.taskType) && isStr(r.metric) && isScore(r.mainScore) && isObj(r.scores) && isFin(r.seconds) && (r.seconds as number) >= 0, 'task_result');
      break;
    case 'evaluation_finished':
      assert.ok(isInt(r.numLayers, 1) && isInt(r.params, 0) && isInt(r.bytes, 0) && isObj(r.scores) && isInt(r.batchSize, 1) && isInt(r.maxLength, 1) && isStr(r.device), 'evaluation_finished');
      assert.ok(isScore(r.averageScore), 'averageScore');
      assert.ok(isFin(r.latencyMsPerBatch) && (r.latencyMsPerBatch as number) >= 0 && isFin(r.textsPerSecond) && (r.textsPerSecond as number) >= 0, 'speeds');
      break;
    case 'exported':
      assert.ok(isStr(r.path) && r.path !== '' && isStr(r.outDir) && r.outDir !== '' && isInt(r.bytes, 0) && isInt(r.opset, 1) && isFin(r.parityMinCosine) && isFin(r.parityMeanCosine) && isInt(r.numLayers, 1) && isFin(r.seconds) && (r.seconds as number) >= 0, 'exported');
      break;
  }
}

function assertSummaryTyped(s: RunSummary): void {
  // "unknown": a run whose pid or heartbeat no worker of ours could have written, or an unreadable run.json.
  assert.ok([...STATUSES, 'unknown'].includes(s.status), `summary status ${s.status}`);
  assert.equal(parseRunRecord(s.record), s.record, 'the summary holds a parsed record');
  assertRecordTyped(s.record);
  assert.ok(isInt(s.checkpoints, 0));
  let last = -Infinity;
  for (const p of s.losses) {
    assert.ok(isFin(p.step) && isFin(p.loss) && typeof p.elapsedMs === 'number', 'loss points are numbers');
    assert.ok(p.step > last, 'loss points in step order');
    last = p.step;
  }
  for (const v of [s.step, s.lastLoss]) assert.ok(v === undefined || isFin(v));
  assert.ok(s.error === undefined || isStr(s.error));
  for (const t of s.evaluation?.tasks ?? []) assert.ok(isStr(t.task) && isScore(t.mainScore) && isFin(t.seconds), 'task scores');
  const result = s.evaluation?.result;
  if (result) assertEventTyped({ event: 'evaluation_finished', time: T, ...result });
  if (s.exported) assertEventTyped({ event: 'exported', time: T, ...s.exported });
}

// ---------------------------------------------------------------------------------------------------------
// Generators.
const RAW = '\u0000RAW:';
const withRaw = (text: string) => text.replace(/"\\u0000RAW:([^"]*)"/g, '$1');
const hostileValue = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 2 ** 53, -0.5, 1e308, '', 'x', [], {}, [1, 'a'], { message: 5 }, { message: 'm' }, 'running', T),
  fc.constantFrom('1e400', '-1e400', '-0', '2.0', '9007199254740993').map((r) => RAW + r),
  fc.anything({ maxDepth: 2 }),
  fc.string({ unit: 'binary', maxLength: 8 }),
);
const fieldEdits = (keys: string[]) =>
  fc.array(
    fc.oneof(
      fc.record({ key: fc.oneof(fc.constantFrom(...keys), fc.constantFrom('__proto__', 'constructor', 'extra')), value: hostileValue, drop: fc.constant(false) }),
      fc.record({ key: fc.constantFrom(...keys), value: fc.constant(undefined), drop: fc.constant(true) }),
    ),
    { maxLength: 3 },
  );
function applyEdits(object: Record<string, unknown>, edits: Array<{ key: string; value: unknown; drop: boolean }>): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...object };
  for (const e of edits) {
    if (e.drop) delete copy[e.key];
    else Object.defineProperty(copy, e.key, { value: e.value, enumerable: true, writable: true, configurable: true });
  }
  return copy;
}

const byteFlips = (length: number) => fc.array(fc.record({ at: fc.nat(Math.max(0, length - 1)), byte: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x0a, 0x22, 0x7d, 0x80, 0xc3, 0xe6, 0xf0, 0xff)) }), { maxLength: 4 });
function flip(bytes: Buffer, flips: Array<{ at: number; byte: number }>): Buffer {
  const out = Buffer.from(bytes);
  for (const { at, byte } of flips) if (at < out.length) out[at] = byte;
  return out;
}

/** One line of events.jsonl (without its newline), as bytes. */
const eventLine: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...VALID_EVENTS).map((e) => Buffer.from(JSON.stringify(e))) },
  { weight: 3, arbitrary: fc.constantFrom(...VALID_EVENTS).chain((e) => fieldEdits(Object.keys(e)).map((edits) => Buffer.from(withRaw(JSON.stringify(applyEdits(e, edits)))))) },
  { weight: 3, arbitrary: fc.constantFrom(...VALID_EVENTS).chain((e) => { const b = Buffer.from(JSON.stringify(e)); return fc.tuple(byteFlips(b.length), fc.nat(b.length)).map(([f, cut]) => flip(b, f).subarray(0, Math.max(cut, b.length - 30))); }) },
  { weight: 1, arbitrary: fc.oneof(fc.constant(Buffer.alloc(0)), fc.constant(Buffer.from('   \r')), fc.constant(Buffer.from('\xff\xfe\xc3', 'latin1')), fc.constant(Buffer.from('{"event":"step","time":"t","step":1,"loss":2}\r'))) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a.filter((b) => b !== 0x0a))) },
  // Long lines (to 200 KB) with multi-byte text, so reads often cut them mid-character.
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 200_000 }).map((n) => Buffer.from(JSON.stringify({ event: 'error', time: T, message: 'é満🚀'.repeat(Math.ceil(n / 9)) }))) },
);
const eventsFile = fc.tuple(fc.array(eventLine, { maxLength: 14 }), fc.boolean(), fc.constantFrom('\n', '\r\n')).map(([lines, finalNewline, eol]) => {
  const joined = Buffer.concat(lines.flatMap((l, i) => (i < lines.length - 1 || finalNewline ? [l, Buffer.from(eol)] : [l])));
  return joined;
});

/** What one read of the finished file gives: parsed complete lines, skipped ones, the unfinished tail. */
function oracle(bytes: Buffer): { events: RunEvent[]; skipped: number; partial: string } {
  const lines = bytes.toString('utf8').split('\n');
  const partial = lines.pop() ?? '';
  const events: RunEvent[] = [];
  let skipped = 0;
  for (const line of lines) {
    if (!line.trim()) continue;
    const event = parseEventLine(line);
    if (event) events.push(event);
    else skipped++;
  }
  return { events, skipped, partial };
}

describe('fuzzed run folders (run.json, events.jsonl, the run store)', function () {
  this.timeout(240_000);
  const dir = useTempDir('l3prune-fuzz-runs-');
  let counter = 0;
  const freshDir = (prefix: string) => {
    const folder = path.join(dir(), `${prefix}-${counter++}`);
    mkdirSync(folder, { recursive: true });
    return folder;
  };

  async function checkRunJson(bytes: Buffer): Promise<'record' | 'none'> {
    const folder = freshDir('rj');
    writeFileSync(path.join(folder, 'run.json'), bytes);
    const record = await bounded('readRunRecord', () => readRunRecord(folder));
    let expected: RunRecord | undefined;
    try {
      expected = parseRunRecord(JSON.parse(bytes.toString('utf8')));
    } catch {
      expected = undefined;
    }
    assert.deepEqual(record, expected, 'readRunRecord agrees with parsing the text');
    if (!record) return 'none';
    assertRecordTyped(record);
    assert.ok([...STATUSES, 'unknown'].includes(effectiveStatus(record, Date.parse(T2), () => true)));
    return 'record';
  }

  it(`run.json: ${RUN_JSON_BYTES} byte-level mutations of valid records (flips, cuts, invalid UTF-8)`, async () => {
    const outcomes = { record: 0, none: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...VALID_RECORDS).chain((r) => {
          const b = Buffer.from(`${JSON.stringify(r, null, 2)}\n`);
          return fc.tuple(fc.constant(b), byteFlips(b.length), fc.integer({ min: -200, max: 3 }));
        }),
        async ([b, flips, resize]) => {
          let bytes = flip(b, flips);
          if (resize < 0) bytes = bytes.subarray(0, Math.max(0, bytes.length + resize));
          else bytes = Buffer.concat([bytes, Buffer.alloc(resize, 0x20)]);
          outcomes[await checkRunJson(bytes)]++;
        },
      ),
      { numRuns: RUN_JSON_BYTES, seed: 2101 },
    );
    assert.ok(outcomes.record > 10 && outcomes.none > 10, `both outcomes occur (${JSON.stringify(outcomes)})`);
  });

  it(`run.json: ${RUN_JSON_STRUCTURED} records of valid JSON but wrong types, missing fields or no object at all`, async () => {
    const outcomes = { record: 0, none: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          { weight: 5, arbitrary: fc.constantFrom(...VALID_RECORDS).chain((r) => fieldEdits(Object.keys(r)).map((edits) => withRaw(JSON.stringify(applyEdits(r, edits))))) },
          { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'null') },
          { weight: 1, arbitrary: fc.constantFrom('', '{}', '[]', 'null', '"running"', '\ufeff{}', `${'['.repeat(100_000)}${']'.repeat(100_000)}`) },
        ),
        async (text) => {
          outcomes[await checkRunJson(Buffer.from(text))]++;
        },
      ),
      { numRuns: RUN_JSON_STRUCTURED, seed: 2102 },
    );
    assert.ok(outcomes.record > 10 && outcomes.none > 10, `both outcomes occur (${JSON.stringify(outcomes)})`);
  });

  /** Appends `bytes` in the given slices, reading after each; returns what the tail gathered. */
  async function tail(folder: string, bytes: Buffer, cuts: number[], state: TailState = freshTail()) {
    const file = path.join(folder, 'events.jsonl');
    const events: RunEvent[] = [];
    let skipped = 0;
    let done = 0;
    for (const cut of [...cuts, bytes.length]) {
      if (cut < done) continue;
      appendFileSync(file, bytes.subarray(done, cut));
      done = cut;
      const result = await bounded('readNewEvents', () => readNewEvents(folder, state));
      events.push(...result.events);
      skipped += result.skipped;
      state = result.state;
      assert.ok(state.offset <= bytes.length && state.partial.length <= MAX_EVENT_LINE_LENGTH, 'the tail never runs ahead or grows unbounded');
    }
    return { events, skipped, state };
  }

  it(`events.jsonl: ${EVENTS} generated files tailed across random chunk boundaries (mutated, truncated, wrong-typed, invalid UTF-8, long lines)`, async () => {
    let seen = 0;
    await fc.assert(
      fc.asyncProperty(
        eventsFile.chain((bytes) => fc.tuple(fc.constant(bytes), fc.uniqueArray(fc.nat(Math.max(0, bytes.length - 1)), { maxLength: 6 }).map((c) => c.sort((a, b) => a - b)), fc.boolean(), fc.nat())),
        async ([bytes, cuts, rewrite, rewriteCut]) => {
          const folder = freshDir('ev');
          writeFileSync(path.join(folder, 'events.jsonl'), '');
          const got = await tail(folder, bytes, cuts);
          const want = oracle(bytes);
          for (const e of got.events) assertEventTyped(e);
          assert.deepEqual(got.events, want.events, 'the tail gives exactly the events of a single read, wherever the reads fell');
          assert.equal(got.skipped, want.skipped, 'and skips exactly the same lines');
          // The unfinished last line waits, less the bytes of a character that may still be being written.
          assert.ok(want.partial.startsWith(got.state.partial) && /^\ufffd{0,3}$/.test(want.partial.slice(got.state.partial.length)), 'the unfinished last line waits');
          seen += got.events.length;
          // readAllEvents of the same file: the same events, plus a complete last line without its newline.
          const all = await bounded('readAllEvents', () => readAllEvents(folder));
          assert.deepEqual(all.slice(0, want.events.length), want.events);
          assert.ok(all.length - want.events.length <= 1);
          if (rewrite && bytes.length > 0) {
            // The file is rewritten shorter (a new run in the folder): the tail starts over from byte 0.
            const shorter = bytes.subarray(0, rewriteCut % bytes.length);
            writeFileSync(path.join(folder, 'events.jsonl'), shorter);
            if (shorter.length < got.state.offset) {
              const again = await bounded('readNewEvents', () => readNewEvents(folder, got.state));
              const expected = oracle(shorter);
              assert.deepEqual(again.events, expected.events, 'a rewritten file is read again from the start');
              assert.equal(again.skipped, expected.skipped);
            }
          }
        },
      ),
      { numRuns: EVENTS, seed: 2201 },
    );
    assert.ok(seen > EVENTS, `valid events were generated and returned (${seen})`);
  });

  it('events.jsonl: a line that never ends does not grow the tail past the line cap; it is skipped and counted once', async () => {
    const folder = freshDir('huge');
    const file = path.join(folder, 'events.jsonl');
    writeFileSync(file, `${JSON.stringify(VALID_EVENTS[3])}\n`);
    let state = freshTail();
    let skipped = 0;
    const events: RunEvent[] = [];
    // 40 MiB of one line (NUL bytes, written as holes so the disk is spared), read as it grows 8 MiB at a time.
    const step = 8 * 1024 * 1024;
    let size = Buffer.byteLength(`${JSON.stringify(VALID_EVENTS[3])}\n`);
    for (let round = 0; round < 5; round++) {
      size += step;
      truncateSync(file, size);
      const result = await readNewEvents(folder, state);
      state = result.state;
      skipped += result.skipped;
      events.push(...result.events);
      assert.ok(state.partial.length <= MAX_EVENT_LINE_LENGTH, `round ${round}: the held-back line is capped (${state.partial.length} chars)`);
      assert.equal(state.offset, size, 'every byte was read');
    }
    assert.equal(state.skippingLine, true, 'the reader is passing over the over-long line');
    assert.equal(skipped, 1, 'the over-long line is counted once, as soon as it passes the cap');
    appendFileSync(file, `\n${JSON.stringify(VALID_EVENTS[5])}\n`);
    const after = await readNewEvents(folder, state);
    assert.deepEqual(after.events.map((e) => e.event), ['step'], 'the next line after it is read');
    assert.equal(after.skipped, 0);
    assert.equal(after.state.skippingLine, undefined);
    assert.deepEqual([...events.map((e) => e.event)], ['heartbeat']);
    // A complete line over the cap is skipped as well; one just under it is an event.
    const big = freshDir('big');
    const under = JSON.stringify({ event: 'note', time: T, pad: 'x'.repeat(MAX_EVENT_LINE_LENGTH - 100) });
    const over = JSON.stringify({ event: 'note', time: T, pad: 'x'.repeat(MAX_EVENT_LINE_LENGTH + 10) });
    writeFileSync(path.join(big, 'events.jsonl'), `${over}\n${under}\n${JSON.stringify(VALID_EVENTS[3])}\n`);
    const read = await readNewEvents(big, freshTail());
    assert.deepEqual(read.events.map((e) => e.event), ['note', 'heartbeat']);
    assert.equal(read.skipped, 1);
  });

  async function checkStore(root: string, isAlive: boolean): Promise<RunStore> {
    const store = new RunStore(() => root, () => isAlive);
    await bounded('RunStore.refresh', () => store.refresh());
    for (const s of store.list()) assertSummaryTyped(s);
    return store;
  }

  it(`run store: ${STORES} generated run roots refreshed twice while their files change`, async () => {
    const runJson = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...VALID_RECORDS).map((r) => Buffer.from(JSON.stringify(r, null, 2))) },
      { weight: 2, arbitrary: fc.constantFrom(...VALID_RECORDS).chain((r) => fieldEdits(Object.keys(r)).map((edits) => Buffer.from(withRaw(JSON.stringify(applyEdits(r, edits)))))) },
      { weight: 1, arbitrary: fc.constantFrom(...VALID_RECORDS).chain((r) => { const b = Buffer.from(JSON.stringify(r)); return byteFlips(b.length).map((f) => flip(b, f)); }) },
    );
    const run = fc.record({ record: runJson, events: eventsFile, more: eventsFile, newRecord: fc.option(runJson, { nil: undefined }), cut: fc.nat() });
    await fc.assert(
      fc.asyncProperty(fc.array(run, { minLength: 1, maxLength: 3 }), fc.boolean(), async (runs, isAlive) => {
        const root = freshDir('store');
        runs.forEach((r, i) => {
          const runDir = path.join(root, `run-${i}`);
          mkdirSync(runDir);
          writeFileSync(path.join(runDir, 'run.json'), r.record);
          writeFileSync(path.join(runDir, 'events.jsonl'), r.events.subarray(0, r.cut % (r.events.length + 1)));
        });
        const store = await checkStore(root, isAlive);
        // The worker carries on: the rest of each file and more lines arrive, run.json is rewritten.
        runs.forEach((r, i) => {
          const runDir = path.join(root, `run-${i}`);
          appendFileSync(path.join(runDir, 'events.jsonl'), Buffer.concat([r.events.subarray(r.cut % (r.events.length + 1)), r.more]));
          if (r.newRecord) writeFileSync(path.join(runDir, 'run.json'), r.newRecord);
        });
        await bounded('RunStore.refresh', () => store.refresh());
        for (const s of store.list()) assertSummaryTyped(s);
      }),
      { numRuns: STORES, seed: 2301 },
    );
  });

  it('run store: folders, FIFOs, huge and vanishing files in place of run.json and events.jsonl are handled', async () => {
    const root = freshDir('special');
    const make = (name: string, record: Record<string, unknown> | undefined, events?: string) => {
      const runDir = path.join(root, name);
      mkdirSync(runDir);
      if (record) writeFileSync(path.join(runDir, 'run.json'), JSON.stringify(record));
      if (events !== undefined) writeFileSync(path.join(runDir, 'events.jsonl'), events);
      return runDir;
    };
    const lines = VALID_EVENTS.map((e) => JSON.stringify(e)).join('\n') + '\n';
    mkdirSync(path.join(make('run-json-folder', undefined, lines), 'run.json'));
    mkdirSync(path.join(make('events-folder', VALID_RECORDS[0]), 'events.jsonl'));
    const hugeRunJson = make('huge-run-json', undefined, lines);
    const fd = openSync(path.join(hugeRunJson, 'run.json'), 'w');
    ftruncateSync(fd, 20 * 1024 * 1024);
    closeSync(fd);
    let fifos = false;
    try {
      execFileSync('mkfifo', [path.join(make('run-json-fifo', undefined, lines), 'run.json')]);
      execFileSync('mkfifo', [path.join(make('events-fifo', VALID_RECORDS[1]), 'events.jsonl')]);
      fifos = true;
    } catch {
      // No mkfifo here: the folder cases still run.
    }
    const vanishing = make('vanishing', VALID_RECORDS[2], lines);
    writeFileSync(path.join(root, 'a-file-not-a-folder'), lines);
    const store = await checkStore(root, false);
    const ids = store.list().map((s) => s.id).sort();
    // A run.json too large to be a worker's is listed as unreadable (so it can be deleted), never read.
    assert.deepEqual(ids, fifos ? ['events-fifo', 'events-folder', 'huge-run-json', 'vanishing'] : ['events-folder', 'huge-run-json', 'vanishing']);
    assert.equal(store.get(hugeRunJson)?.status, 'unknown');
    assert.match(store.get(hugeRunJson)?.error ?? '', /not read/);
    assert.equal(store.get(vanishing)?.error, 'No space left on device — «ünïcødé» 🚀');
    // Files disappear and come back as other things between two refreshes.
    rmSync(path.join(vanishing, 'events.jsonl'));
    mkdirSync(path.join(vanishing, 'events.jsonl'));
    rmSync(path.join(root, 'events-folder', 'events.jsonl'), { recursive: true });
    writeFileSync(path.join(root, 'events-folder', 'events.jsonl'), lines);
    await bounded('RunStore.refresh', () => store.refresh());
    for (const s of store.list()) assertSummaryTyped(s);
    assert.equal(store.get(path.join(root, 'events-folder'))?.checkpoints, 1);
  });
});
