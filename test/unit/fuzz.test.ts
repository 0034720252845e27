import * as assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { ModelReadError } from '../../src/model/errors';
import { inspectModel } from '../../src/model/inspect';
import { readSafetensorsHeader } from '../../src/model/safetensors';
import { headerFor, writeRawSafetensors } from '../fixtures/checkpoints';
import { llamaLikeInitializers, onnxModelBytes } from '../fixtures/onnx';
import { useTempDir } from '../fixtures/tmp';

/**
 * Property tests over thousands of mutated inputs: the reader either returns a stack whose numbers add up
 * or throws a ModelReadError with one short sentence. Never another exception, never a hang.
 */
const RUNS = Number(process.env.L3PRUNE_FUZZ_RUNS ?? 1500);
const PER_CASE_MS = 2000;

async function boundedOutcome(run: () => Promise<unknown>): Promise<'ok' | 'error'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`a case took over ${PER_CASE_MS} ms`)), PER_CASE_MS);
  });
  try {
    await Promise.race([run(), timeout]);
    return 'ok';
  } catch (e) {
    if (e instanceof ModelReadError) {
      assert.ok(e.message.length < 600 && !e.message.includes('\n'), `error is one short line: ${e.message.slice(0, 200)}`);
      return 'error';
    }
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

const validTensors = [
  { name: 'model.embed_tokens.weight', dtype: 'F32', shape: [16, 4] },
  { name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'BF16', shape: [4, 4] },
  { name: 'model.layers.1.mlp.up_proj.weight', dtype: 'F16', shape: [8, 4] },
  { name: 'model.norm.weight', dtype: 'F32', shape: [4] },
];

describe('fuzzed hostile inputs', function () {
  this.timeout(120_000);
  const dir = useTempDir();
  let counter = 0;
  const next = (ext: string) => path.join(dir(), `case-${counter++}${ext}`);

  it(`safetensors: ${RUNS} byte-level mutations of a valid file`, async () => {
    const { header, dataBytes } = headerFor(validTensors);
    const json = Buffer.from(JSON.stringify(header));
    const base = Buffer.alloc(8 + json.length + dataBytes);
    base.writeBigUInt64LE(BigInt(json.length));
    json.copy(base, 8);
    const outcomes = { ok: 0, error: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ at: fc.nat(base.length + 16), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: -40, max: 40 }),
        async (edits, resize) => {
          let bytes = Buffer.from(base);
          for (const { at, byte } of edits) if (at < bytes.length) bytes[at] = byte;
          if (resize < 0) bytes = bytes.subarray(0, Math.max(0, bytes.length + resize));
          else if (resize > 0) bytes = Buffer.concat([bytes, Buffer.alloc(resize, 0x20)]);
          const file = next('.safetensors');
          writeFileSync(file, bytes);
          const outcome = await boundedOutcome(async () => {
            const parsed = await readSafetensorsHeader(file);
            const sum = parsed.tensors.reduce((s, t) => s + t.bytes, 0);
            assert.equal(sum, parsed.fileSize - 8 - parsed.headerBytes, 'tensors cover the data area exactly');
          });
          outcomes[outcome]++;
        },
      ),
      { numRuns: RUNS, seed: 42 },
    );
    assert.ok(outcomes.error > RUNS / 4, `most mutations are caught (${JSON.stringify(outcomes)})`);
  });

  it(`safetensors: ${RUNS} structurally generated headers (types, shapes, offsets, dtypes)`, async () => {
    const dim = fc.oneof(fc.nat(64), fc.integer(), fc.double(), fc.constantFrom(2 ** 53, -1, 1e308), fc.string({ maxLength: 3 }), fc.constant(null));
    const entry = fc.oneof(
      fc.record({
        dtype: fc.oneof(fc.constantFrom('F32', 'BF16', 'I8', 'BOOL', 'F8_E4M3', 'F4', 'complex', '__proto__'), fc.string({ maxLength: 5 })),
        shape: fc.oneof(fc.array(dim, { maxLength: 5 }), fc.anything()),
        data_offsets: fc.oneof(fc.tuple(fc.nat(5000), fc.nat(5000)), fc.array(fc.integer(), { maxLength: 3 }), fc.anything()),
      }),
      fc.anything(),
    );
    const header = fc.dictionary(fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('__metadata__', '__proto__', 'constructor')), entry, { maxKeys: 6 });
    await fc.assert(
      fc.asyncProperty(header, fc.nat(6000), async (h, dataBytes) => {
        const file = next('.safetensors');
        writeRawSafetensors(file, Buffer.from(JSON.stringify(h) ?? 'null'), dataBytes);
        await boundedOutcome(() => readSafetensorsHeader(file));
      }),
      { numRuns: RUNS, seed: 7 },
    );
  });

  it(`ONNX: ${Math.round(RUNS / 2)} byte-level mutations of a valid graph`, async () => {
    const base = Buffer.from(onnxModelBytes(llamaLikeInitializers(2, 4)));
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ at: fc.nat(base.length - 1), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 }),
        fc.nat(base.length),
        async (edits, keep) => {
          const bytes = Buffer.from(base.subarray(0, Math.max(keep, base.length - 64)));
          for (const { at, byte } of edits) if (at < bytes.length) bytes[at] = byte;
          const file = next('.onnx');
          writeFileSync(file, bytes);
          await boundedOutcome(async () => {
            const stack = await inspectModel(file);
            const grouped = stack.embeddingParams + stack.headParams + stack.finalNormParams + stack.otherParams + stack.layers.reduce((s, l) => s + l.params, 0);
            assert.equal(grouped, stack.totalParams, 'no parameter is dropped by grouping');
          });
        },
      ),
      { numRuns: Math.round(RUNS / 2), seed: 3 },
    );
  });
});
