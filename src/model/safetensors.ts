import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { SAFETENSORS_DTYPE_BYTES } from './dtypes';
import { ModelReadError } from './errors';

/** The format itself caps headers at 100 MB; nothing larger is ever allocated. */
export const MAX_HEADER_BYTES = 100 * 1000 * 1000;

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  params: number;
  bytes: number;
  /** The file the tensor's data lives in (a shard of a sharded checkpoint). */
  file: string;
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  headerBytes: number;
  tensors: TensorInfo[];
  metadata: Record<string, string>;
}

const REMEDY_CORRUPT = 'the file is damaged or not safetensors: download or save it again';

/**
 * Reads the 8-byte length and the JSON header of a safetensors file, never the tensor data.
 * Every number is bounded before it is trusted (the safetensors crate's own checks): the header
 * length against the file and the 100 MB cap, each shape against overflow, each offset range
 * against the data area, and the ranges against each other (no overlaps, no gaps).
 */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  let handle;
  try {
    // Non-blocking, so that a FIFO named like a shard (or a symlink to one) is refused below instead of
    // blocking this thread forever waiting for a writer; for regular files the flag changes nothing.
    handle = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw fileOpenError(file, e);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new ModelReadError(file, info.isDirectory() ? 'is a folder, not a file' : 'is not a regular file', 'pick the .safetensors file itself');
    const fileSize = info.size;
    if (fileSize < 8) {
      throw new ModelReadError(file, `is ${fileSize} bytes long, shorter than the 8-byte header length`, REMEDY_CORRUPT);
    }
    const lengthBuffer = Buffer.alloc(8);
    await readExactly(handle, lengthBuffer, 0, file);
    const declared = lengthBuffer.readBigUInt64LE(0);
    if (declared > BigInt(MAX_HEADER_BYTES)) {
      throw new ModelReadError(file, `declares a ${declared} byte header, over the format's 100 MB limit`, REMEDY_CORRUPT);
    }
    const headerBytes = Number(declared);
    if (headerBytes + 8 > fileSize) {
      throw new ModelReadError(
        file,
        `declares a ${headerBytes} byte header but the file has only ${fileSize - 8} bytes after the length (truncated?)`,
        REMEDY_CORRUPT,
      );
    }
    if (headerBytes < 2) {
      throw new ModelReadError(file, `declares a ${headerBytes} byte header, too short for a JSON object`, REMEDY_CORRUPT);
    }
    const headerBuffer = Buffer.alloc(headerBytes);
    await readExactly(handle, headerBuffer, 8, file);
    const parsed = parseHeaderJson(headerBuffer, file);
    return {
      file,
      fileSize,
      headerBytes,
      ...validateHeader(parsed, fileSize - 8 - headerBytes, file),
    };
  } finally {
    await handle.close();
  }
}

async function readExactly(
  handle: import('node:fs/promises').FileHandle,
  buffer: Buffer,
  position: number,
  file: string,
): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done));
    } catch (e) {
      throw new ModelReadError(file, `could not be read (${(e as Error).message})`, 'check the disk and the file');
    }
    if (bytesRead === 0) {
      throw new ModelReadError(file, `ended after ${position + done} bytes while its header was being read`, REMEDY_CORRUPT);
    }
    done += bytesRead;
  }
}

function parseHeaderJson(buffer: Buffer, file: string): Record<string, unknown> {
  // The format allows trailing spaces as padding after the JSON object, nothing else.
  const text = buffer.toString('utf8').replace(/ +$/, '');
  if (!text.startsWith('{')) {
    throw new ModelReadError(file, 'has a header that is not a JSON object', REMEDY_CORRUPT);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ModelReadError(file, `has a header that is not valid JSON (${(e as Error).message})`, REMEDY_CORRUPT);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ModelReadError(file, 'has a header that is not a JSON object', REMEDY_CORRUPT);
  }
  return parsed as Record<string, unknown>;
}

interface Validated {
  tensors: TensorInfo[];
  metadata: Record<string, string>;
}

function validateHeader(header: Record<string, unknown>, dataBytes: number, file: string): Validated {
  const tensors: TensorInfo[] = [];
  const ranges: Array<{ begin: number; end: number; name: string }> = [];
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = validateMetadata(value, file);
      continue;
    }
    const entry = asObject(value);
    if (!entry) {
      throw new ModelReadError(file, `describes tensor "${clip(name)}" with a non-object`, REMEDY_CORRUPT);
    }
    const dtype = entry.dtype;
    if (typeof dtype !== 'string' || !Object.hasOwn(SAFETENSORS_DTYPE_BYTES, dtype)) {
      throw new ModelReadError(
        file,
        `gives tensor "${clip(name)}" the unknown dtype ${clip(JSON.stringify(dtype) ?? 'undefined')}`,
        `supported dtypes are ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(', ')}; convert the checkpoint to one of them`,
      );
    }
    const shape = validateShape(entry.shape, name, file);
    const params = shape.reduce((a, b) => a * b, 1);
    const bytes = params * SAFETENSORS_DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(bytes)) {
      throw new ModelReadError(file, `gives tensor "${clip(name)}" a shape whose byte size overflows`, REMEDY_CORRUPT);
    }
    const offsets = entry.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)
    ) {
      throw new ModelReadError(file, `gives tensor "${clip(name)}" data_offsets that are not two non-negative integers`, REMEDY_CORRUPT);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) {
      throw new ModelReadError(file, `gives tensor "${clip(name)}" an end offset ${end} before its begin ${begin}`, REMEDY_CORRUPT);
    }
    if (end > dataBytes) {
      throw new ModelReadError(
        file,
        `places tensor "${clip(name)}" at bytes ${begin}..${end}, past the ${dataBytes} bytes of data in the file (truncated?)`,
        REMEDY_CORRUPT,
      );
    }
    if (end - begin !== bytes) {
      throw new ModelReadError(
        file,
        `gives tensor "${clip(name)}" ${end - begin} bytes of data but its shape [${shape.join(', ')}] of ${dtype} needs ${bytes}`,
        REMEDY_CORRUPT,
      );
    }
    tensors.push({ name, dtype, shape, params, bytes, file });
    ranges.push({ begin, end, name });
  }
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const range of ranges) {
    if (range.begin < cursor) {
      throw new ModelReadError(file, `has tensor "${clip(range.name)}" overlapping the data of another tensor`, REMEDY_CORRUPT);
    }
    if (range.begin > cursor) {
      throw new ModelReadError(file, `leaves a gap of ${range.begin - cursor} bytes before tensor "${clip(range.name)}"`, REMEDY_CORRUPT);
    }
    cursor = range.end;
  }
  if (cursor !== dataBytes) {
    throw new ModelReadError(file, `has ${dataBytes - cursor} bytes of data after the last tensor that no tensor claims`, REMEDY_CORRUPT);
  }
  return { tensors, metadata };
}

function validateShape(value: unknown, name: string, file: string): number[] {
  if (!Array.isArray(value) || value.length > 64) {
    throw new ModelReadError(file, `gives tensor "${clip(name)}" a shape that is not a list of at most 64 dimensions`, REMEDY_CORRUPT);
  }
  let elements = 1;
  for (const dim of value) {
    if (!Number.isSafeInteger(dim) || dim < 0) {
      throw new ModelReadError(file, `gives tensor "${clip(name)}" the invalid dimension ${clip(JSON.stringify(dim) ?? 'undefined')}`, REMEDY_CORRUPT);
    }
    elements *= dim;
    if (!Number.isSafeInteger(elements)) {
      throw new ModelReadError(file, `gives tensor "${clip(name)}" a shape whose element count overflows`, REMEDY_CORRUPT);
    }
  }
  return value as number[];
}

function validateMetadata(value: unknown, file: string): Record<string, string> {
  const object = asObject(value);
  if (!object || !Object.values(object).every((v) => typeof v === 'string')) {
    throw new ModelReadError(file, 'has a __metadata__ entry that is not an object of strings', REMEDY_CORRUPT);
  }
  return object as Record<string, string>;
}

export function asObject(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/** Hostile names can be megabytes long; an error message quotes at most a line of them. */
export function clip(text: string, max = 120): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

export function fileOpenError(file: string, e: unknown): ModelReadError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') return new ModelReadError(file, 'does not exist', 'check the path');
  if (code === 'EACCES' || code === 'EPERM') return new ModelReadError(file, 'cannot be read (permission denied)', 'fix its permissions');
  if (code === 'EISDIR') return new ModelReadError(file, 'is a folder, not a file', 'pick the file inside it');
  return new ModelReadError(file, `cannot be opened (${(e as Error)?.message ?? String(e)})`, 'check the path and permissions');
}
