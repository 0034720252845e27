import reportSchema from '../../protocol/data-preview.schema.json';
import type { JsonSchema } from '../protocol/schemas';
import type { DataPreview } from '../shared/protocol/generated/data-preview';
import type { Cancellation } from './workerVerb';
import { startWorker } from './workerProcess';
import { reportParser } from './workerReport';

const SCHEMA_FILE = 'protocol/data-preview.schema.json';
const parseReportLine = reportParser<DataPreview>(reportSchema as JsonSchema, SCHEMA_FILE);

export interface DataPreviewRequest {
  python: string;
  data: string;
  model: string;
  maxLength: number;
  /** role → column (spec dataColumns); undefined: the worker finds them by name. */
  dataColumns?: Record<string, string>;
  trustRemoteCode?: boolean;
}

/** The worker's command line for a preview (no run folder: the report is its one stdout line). */
export function dataPreviewArgs(request: Omit<DataPreviewRequest, 'python'>): string[] {
  const args = ['--data', request.data, '--model', request.model, '--max-length', String(request.maxLength)];
  const columns = Object.entries(request.dataColumns ?? {});
  if (columns.length) args.push('--data-columns', columns.map(([role, column]) => `${role}=${column}`).join(','));
  if (request.trustRemoteCode) args.push('--trust-remote-code');
  return args;
}

/** The report in the line preview-data prints, checked against protocol/data-preview.schema.json, or why there is none. */
export function parseDataPreviewReport(stdout: string): DataPreview | string {
  const report = parseReportLine(stdout);
  if (typeof report === 'string') return report;
  // What JSON Schema cannot say: the bins tile the lengths and hold every text counted.
  const { lengths } = report;
  const increasing = lengths.edges.every((e, i) => i === 0 || e > lengths.edges[i - 1]);
  const total = lengths.counts.reduce((a, b) => a + b, 0);
  if (lengths.counts.length !== lengths.edges.length - 1 || !increasing || total !== lengths.texts) {
    return `the report does not match ${SCHEMA_FILE}: its histogram bins do not add up to the texts counted`;
  }
  return report;
}

export type DataPreviewOutcome = { status: 'done'; report: DataPreview } | { status: 'cancelled' } | { status: 'failed'; message: string };

/** Runs preview-data once; a failure carries the worker's own sentence (its data or model problem). */
export async function runDataPreview(request: DataPreviewRequest, cancellation: Cancellation): Promise<DataPreviewOutcome> {
  const worker = await startWorker({ python: request.python, verb: 'preview-data', args: dataPreviewArgs(request) });
  let cancelled = false;
  const subscription = cancellation.onCancellationRequested(() => {
    cancelled = true;
    void worker.cancel();
  });
  const lines: string[] = [];
  try {
    for await (const line of worker.lines) lines.push(line);
  } catch {
    // The stream ends with an error when the process is killed; its exit status below says what happened.
  }
  const exit = await worker.done;
  subscription.dispose();
  if (cancelled) return { status: 'cancelled' };
  if (exit.exitCode !== 0) {
    const sentence = exit.stderr.trim().split('\n').filter(Boolean).pop()?.replace(/^l3prune: /, '');
    return { status: 'failed', message: sentence ?? `the worker exited with ${exit.exitCode ?? exit.signal}` };
  }
  const report = parseDataPreviewReport(lines.join('\n'));
  return typeof report === 'string' ? { status: 'failed', message: report } : { status: 'done', report };
}
