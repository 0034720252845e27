import type { OrtNodeSpeed } from '../shared/compare/variants';
import { EncoderThread, type ThreadEntry } from '../inference/encoderClient';

/**
 * The texts every export is timed on, so the speeds of an fp32, fp16 and int8 export compare: real sentences
 * of mixed length (2 to ~60 tokens), as the Try Encoder panel's defaults and the worker's latency batch are.
 */
export const SPEED_TEXTS: readonly string[] = [
  'A man is playing a guitar on stage.',
  'Hello.',
  'The cat sleeps on the warm sofa while the rain keeps falling outside.',
  'Prices rose 3.2% in March, the fastest pace since 2008.',
  'Where is the nearest train station?',
  'The committee postponed its decision on the new bridge until engineers could review the soil samples taken along the river bank last autumn.',
  'Photosynthesis converts light energy into chemical energy stored in glucose.',
  'Two kids run across the park, chasing a red kite that the wind keeps pulling towards the old oak trees.',
  'Is this vaccine safe for children under five?',
  'Rain falls over the quiet town.',
  'Quantum computers exploit superposition and entanglement to solve certain problems faster than classical machines.',
  'She said: "Don\'t forget the keys!"',
  'The defendant, who had pleaded not guilty to all four charges, was acquitted on Tuesday after a jury deliberated for less than three hours.',
  'A woman slices tomatoes in a small kitchen.',
  'How do I reset my password if I no longer have access to the email address on my account?',
  'The orchestra rehearsed the second movement twice before the evening concert.',
];

/**
 * Texts per second of each export in onnxruntime-node, measured by the host (the runtime the extension itself
 * serves with), one export at a time in its own encoder thread so the extension host never blocks and two
 * measurements never share the CPU. Kept for the session, keyed by folder; a failed measurement is kept too
 * (as NaN, which no row shows) so it is not retried on every refresh.
 */
export class OrtNodeSpeeds {
  private readonly speeds = new Map<string, OrtNodeSpeed>();
  private readonly queue: Array<{ folder: string; batchSize: number }> = [];
  private running = false;
  private disposed = false;
  // A plain listener set rather than vscode.EventEmitter: the class runs (and is tested) without VS Code.
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly log: (line: string) => void,
    private readonly entry?: ThreadEntry,
    private readonly repeats = 3,
  ) {}

  onDidChange(listener: () => void): { dispose(): void } {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  get measured(): ReadonlyMap<string, OrtNodeSpeed> {
    return this.speeds;
  }

  /** Queues the folders not yet measured (or queued); each result fires onDidChange. */
  request(folders: readonly string[], batchSize: number): void {
    for (const folder of folders) {
      if (!this.speeds.has(folder) && !this.queue.some((q) => q.folder === folder)) this.queue.push({ folder, batchSize });
    }
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let next = this.queue.shift(); next && !this.disposed; next = this.queue.shift()) {
        this.speeds.set(next.folder, { textsPerSecond: await this.measure(next.folder, next.batchSize) });
        if (!this.disposed) for (const listener of [...this.listeners]) listener();
      }
    } finally {
      this.running = false;
    }
  }

  private async measure(folder: string, batchSize: number): Promise<number> {
    let thread: EncoderThread | undefined;
    try {
      thread = (await EncoderThread.open(folder, this.entry)).thread;
      // compare() embeds once untimed (ORT's first-run allocations), then times `repeats` passes.
      const { throughput } = await thread.compare([...SPEED_TEXTS], batchSize, this.repeats);
      return throughput.textsPerSecond;
    } catch (e) {
      this.log(`onnxruntime-node could not time ${folder}: ${(e as Error).message}`);
      return Number.NaN;
    } finally {
      await thread?.dispose();
    }
  }

  dispose(): void {
    this.disposed = true;
    this.queue.length = 0;
    this.listeners.clear();
  }
}
