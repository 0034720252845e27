import * as assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { SAFETENSORS_DTYPE_BYTES } from '../../src/model/dtypes';
import { MAX_HEADER_BYTES, readSafetensorsHeader } from '../../src/model/safetensors';
import { headerFor, writeRawSafetensors, writeSafetensors } from '../fixtures/checkpoints';
import { useTempDir } from '../fixtures/tmp';
import { rejectsClearly } from '../fixtures/assertions';

describe('safetensors header reader', () => {
  const dir = useTempDir();
  const file = (name: string) => path.join(dir(), name);
  const raw = (name: string, header: unknown, dataBytes: number) => {
    writeRawSafetensors(file(name), Buffer.from(JSON.stringify(header)), dataBytes);
    return file(name);
  };

  it('reads names, dtypes, shapes and sizes of every tensor without reading data', async () => {
    const f = file('ok.safetensors');
    writeSafetensors(f, [
      { name: 'a', dtype: 'F32', shape: [2, 3] },
      { name: 'b', dtype: 'BF16', shape: [4] },
      { name: 'scalar', dtype: 'I64', shape: [] },
    ]);
    const header = await readSafetensorsHeader(f);
    assert.deepEqual(
      header.tensors.map((t) => [t.name, t.dtype, t.shape, t.params, t.bytes]),
      [
        ['a', 'F32', [2, 3], 6, 24],
        ['b', 'BF16', [4], 4, 8],
        ['scalar', 'I64', [], 1, 8],
      ],
    );
    assert.deepEqual(header.metadata, { format: 'pt' });
  });

  it('knows the byte size of every dtype the format defines', async () => {
    const expected: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1 };
    for (const [dtype, size] of Object.entries(expected)) {
      const f = file(`dtype-${dtype}.safetensors`);
      writeSafetensors(f, [{ name: 't', dtype, shape: [3, 5] }]);
      const [tensor] = (await readSafetensorsHeader(f)).tensors;
      assert.equal(tensor.bytes, 15 * size, dtype);
      assert.equal(SAFETENSORS_DTYPE_BYTES[dtype], size);
    }
  });

  it('accepts the space padding safetensors writers add after the JSON', async () => {
    const { header, dataBytes } = headerFor([{ name: 'x', dtype: 'F16', shape: [8] }]);
    writeRawSafetensors(file('padded.safetensors'), Buffer.from(`${JSON.stringify(header)}      `), dataBytes);
    assert.equal((await readSafetensorsHeader(file('padded.safetensors'))).tensors.length, 1);
  });

  describe('hostile input gives a clear error', () => {
    it('a missing file', async () => {
      await rejectsClearly(readSafetensorsHeader(file('nope.safetensors')), /does not exist/);
    });
    it('a file shorter than the length prefix', async () => {
      writeFileSync(file('short.safetensors'), Buffer.from([1, 2, 3]));
      await rejectsClearly(readSafetensorsHeader(file('short.safetensors')), /shorter than the 8-byte/, file('short.safetensors'));
    });
    it('a header length larger than the file (truncated download)', async () => {
      writeRawSafetensors(file('trunc.safetensors'), Buffer.from('{}'), 0, 5000n);
      await rejectsClearly(readSafetensorsHeader(file('trunc.safetensors')), /truncated/);
    });
    it('a header length over 100 MB, without allocating it', async () => {
      writeRawSafetensors(file('huge.safetensors'), Buffer.from('{}'), 0, BigInt(MAX_HEADER_BYTES) + 1n);
      await rejectsClearly(readSafetensorsHeader(file('huge.safetensors')), /100 MB limit/);
      writeRawSafetensors(file('max.safetensors'), Buffer.from('{}'), 0, 0xffffffffffffffffn);
      const before = process.memoryUsage().arrayBuffers;
      await rejectsClearly(readSafetensorsHeader(file('max.safetensors')), /100 MB limit/);
      assert.ok(process.memoryUsage().arrayBuffers - before < 1e6, 'no large buffer was allocated');
    });
    it('a header that is not JSON', async () => {
      writeRawSafetensors(file('notjson.safetensors'), Buffer.from('{"a": [1, 2'), 0);
      await rejectsClearly(readSafetensorsHeader(file('notjson.safetensors')), /not valid JSON/);
    });
    it('a header that is JSON but not an object', async () => {
      for (const [name, text] of [['array', '[1,2,3]'], ['string', '"hello"'], ['number', '12345'], ['null', 'null']]) {
        writeRawSafetensors(file(`${name}.safetensors`), Buffer.from(text), 0);
        await rejectsClearly(readSafetensorsHeader(file(`${name}.safetensors`)), /not a JSON object/);
      }
    });
    it('a tensor entry that is not an object', async () => {
      await rejectsClearly(readSafetensorsHeader(raw('entry.safetensors', { t: 5 }, 0)), /non-object/);
    });
    it('an unknown dtype, naming the supported ones', async () => {
      const e = await rejectsClearly(
        readSafetensorsHeader(raw('dtype.safetensors', { t: { dtype: 'F7', shape: [1], data_offsets: [0, 1] } }, 1)),
        /unknown dtype "F7"/,
      );
      assert.match(e.remedy, /BF16/);
      await rejectsClearly(readSafetensorsHeader(raw('proto.safetensors', { t: { dtype: 'toString', shape: [1], data_offsets: [0, 1] } }, 1)), /unknown dtype/);
    });
    it('negative, fractional and non-numeric dimensions', async () => {
      for (const [i, dim] of [-1, 1.5, '3', null, 1e300].entries()) {
        await rejectsClearly(
          readSafetensorsHeader(raw(`dim${i}.safetensors`, { t: { dtype: 'U8', shape: [2, dim], data_offsets: [0, 2] } }, 2)),
          /invalid dimension/,
        );
      }
    });
    it('shapes whose size overflows', async () => {
      await rejectsClearly(
        readSafetensorsHeader(raw('overflow.safetensors', { t: { dtype: 'F64', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] } }, 8)),
        /overflows/,
      );
      await rejectsClearly(
        readSafetensorsHeader(raw('overflow2.safetensors', { t: { dtype: 'F64', shape: [2 ** 26, 2 ** 26], data_offsets: [0, 8] } }, 8)),
        /overflows/,
      );
    });
    it('data offsets that are malformed, reversed, mismatched, overlapping or past the file', async () => {
      const cases: Array<[unknown, number, RegExp]> = [
        [{ t: { dtype: 'U8', shape: [2], data_offsets: [0] } }, 2, /two non-negative integers/],
        [{ t: { dtype: 'U8', shape: [2], data_offsets: [-2, 0] } }, 2, /two non-negative integers/],
        [{ t: { dtype: 'U8', shape: [2], data_offsets: [2, 0] } }, 2, /before its begin/],
        [{ t: { dtype: 'U8', shape: [2], data_offsets: [0, 3] } }, 3, /needs 2/],
        [{ t: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }, 1, /past the 1 bytes/],
        [{ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] }, b: { dtype: 'U8', shape: [2], data_offsets: [1, 3] } }, 3, /overlapping/],
        [{ a: { dtype: 'U8', shape: [2], data_offsets: [2, 4] } }, 4, /gap of 2 bytes/],
        [{ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }, 10, /after the last tensor/],
      ];
      for (const [i, [header, dataBytes, problem]] of cases.entries()) {
        await rejectsClearly(readSafetensorsHeader(raw(`offsets${i}.safetensors`, header, dataBytes)), problem);
      }
    });
    it('metadata that is not an object of strings', async () => {
      await rejectsClearly(readSafetensorsHeader(raw('meta.safetensors', { __metadata__: { a: 1 } }, 0)), /__metadata__/);
    });
    it('a folder where a file is expected', async () => {
      await rejectsClearly(readSafetensorsHeader(dir()), /folder|cannot be opened/);
    });
    it('quotes at most a line of a megabyte-long tensor name', async () => {
      const name = 'x'.repeat(1_000_000);
      const e = await rejectsClearly(readSafetensorsHeader(raw('longname.safetensors', { [name]: { dtype: 'Q', shape: [], data_offsets: [0, 0] } }, 0)), /unknown dtype/);
      assert.ok(e.message.length < 600);
    });
  });
});
