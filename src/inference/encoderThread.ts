import { parentPort, workerData } from 'node:worker_threads';
import { OnnxEncoder, similarityMatrix } from './encoder';
import type { ThreadReply, ThreadRequest } from './encoderClient';

/**
 * Worker-thread entry (bundled as dist/encoderThread.js). onnxruntime-node's session.run is synchronous on
 * the calling thread, so running it on the extension host's main thread would stall every extension for as
 * long as a batch takes; here it stalls only this thread.
 */
const port = parentPort;
if (!port) throw new Error('encoderThread must run as a worker thread');

const loading = OnnxEncoder.load((workerData as { folder: string }).folder);
// Reported through the first request; an unhandled rejection would kill the thread without a message.
loading.catch(() => undefined);

port.on('message', async (request: ThreadRequest) => {
  let reply: ThreadReply;
  try {
    const encoder = await loading;
    switch (request.op) {
      case 'info':
        reply = { id: request.id, ok: true, value: encoder.info };
        break;
      case 'compare': {
        const start = process.hrtime.bigint();
        const vectors = await encoder.embed(request.texts, request.batchSize);
        const firstPassMs = Number(process.hrtime.bigint() - start) / 1e6;
        // The pass above was the warm-up.
        const throughput = await encoder.measure(request.texts, { batchSize: request.batchSize, warmup: 0, repeats: request.repeats });
        reply = {
          id: request.id,
          ok: true,
          value: { matrix: similarityMatrix(vectors), tokens: request.texts.map((t) => encoder.tokenizer.encode(t).length), firstPassMs, throughput },
        };
        break;
      }
      case 'embed':
        reply = { id: request.id, ok: true, value: await encoder.embed(request.texts, request.batchSize) };
        break;
    }
  } catch (e) {
    reply = { id: request.id, ok: false, message: (e as Error).message ?? String(e) };
  }
  port.postMessage(reply);
});
