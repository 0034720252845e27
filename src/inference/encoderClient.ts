import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { EncoderInfo, Throughput } from './encoder';

export type ThreadRequest =
  | { id: number; op: 'info' }
  | { id: number; op: 'embed'; texts: string[]; batchSize: number }
  | { id: number; op: 'compare'; texts: string[]; batchSize: number; repeats: number };

export type ThreadReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; message: string };

export interface Comparison {
  matrix: number[][];
  /** Tokens per text after truncation, special tokens included. */
  tokens: number[];
  /** The first embed call, which pays for ORT's first-run allocations. */
  firstPassMs: number;
  throughput: Throughput;
}

/** Where the thread's code is: the bundle next to dist/extension.js, or the TypeScript source under tsx. */
export interface ThreadEntry {
  file: string;
  execArgv?: string[];
}

export function defaultThreadEntry(): ThreadEntry {
  const bundled = path.join(__dirname, 'encoderThread.js');
  if (existsSync(bundled)) return { file: bundled };
  // Running from source (unit tests under tsx): the thread needs tsx's loader too.
  return { file: path.join(__dirname, 'encoderThread.ts'), execArgv: ['--require', 'tsx/cjs'] };
}

/**
 * An exported encoder loaded in its own worker thread, so inference never blocks the extension host.
 * One thread per encoder; dispose() ends it and frees the ONNX session with it.
 */
export class EncoderThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private exited: Error | undefined;

  private constructor(folder: string, entry: ThreadEntry) {
    this.worker = new Worker(entry.file, { workerData: { folder }, execArgv: entry.execArgv });
    this.worker.on('message', (reply: ThreadReply) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (reply.ok) waiter.resolve(reply.value);
      else waiter.reject(new Error(reply.message));
    });
    const fail = (error: Error) => {
      this.exited = error;
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
    };
    this.worker.on('error', (e) => fail(new Error(`the encoder thread failed: ${e.message}`)));
    this.worker.on('exit', (code) => fail(new Error(`the encoder thread has ended (exit code ${code})`)));
  }

  /** Resolves once the folder is checked and the session created; rejects with the loader's message. */
  static async open(folder: string, entry: ThreadEntry = defaultThreadEntry()): Promise<{ thread: EncoderThread; info: EncoderInfo }> {
    const thread = new EncoderThread(folder, entry);
    try {
      return { thread, info: (await thread.request({ op: 'info' })) as EncoderInfo };
    } catch (e) {
      await thread.dispose();
      throw e;
    }
  }

  embed(texts: string[], batchSize = 16): Promise<Float32Array[]> {
    return this.request({ op: 'embed', texts, batchSize }) as Promise<Float32Array[]>;
  }

  compare(texts: string[], batchSize = 16, repeats = 3): Promise<Comparison> {
    return this.request({ op: 'compare', texts, batchSize, repeats }) as Promise<Comparison>;
  }

  async dispose(): Promise<void> {
    await this.worker.terminate();
  }

  private request(body: DistributiveOmit<ThreadRequest, 'id'>): Promise<unknown> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...body, id } as ThreadRequest);
    });
  }
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;
