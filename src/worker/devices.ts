import type * as vscode from 'vscode';
import reportSchema from '../../protocol/devices-report.schema.json';
import { schemaCheck, type JsonSchema } from '../protocol/schemas';
import type { DevicesReport } from '../shared/protocol/generated/devices-report';
import { startWorker } from './workerProcess';

const REPORT_CHECK = schemaCheck(reportSchema as JsonSchema);

/** The report in the one line `devices` prints, or why there is none. */
export function parseDevicesReport(stdout: string): DevicesReport | string {
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
  if (!line) return 'the worker printed no report';
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return 'the worker printed a line that is not JSON';
  }
  const problems = REPORT_CHECK.problems(value);
  return problems.length ? `the report does not match protocol/devices-report.schema.json: ${problems[0]}` : (value as DevicesReport);
}

/**
 * What the worker's torch can compute on, asked once per interpreter and session (`devices --calibrate`, about a
 * second a device): the resource planner's device. A failure is logged and leaves the plan without a device.
 */
export class DeviceReports {
  private readonly cache = new Map<string, Promise<DevicesReport | undefined>>();

  constructor(private readonly log: vscode.LogOutputChannel) {}

  get(python: string): Promise<DevicesReport | undefined> {
    let pending = this.cache.get(python);
    if (!pending) {
      pending = this.ask(python);
      this.cache.set(python, pending);
      // A failed probe is asked again next time (the user may have installed torch meanwhile).
      void pending.then((r) => r ?? this.cache.delete(python));
    }
    return pending;
  }

  private async ask(python: string): Promise<DevicesReport | undefined> {
    this.log.info(`devices: ${python} -m l3prune devices --calibrate`);
    const worker = await startWorker({ python, verb: 'devices', args: ['--calibrate'] });
    const lines: string[] = [];
    for await (const line of worker.lines) lines.push(line);
    const done = await worker.done;
    if (done.exitCode !== 0) {
      this.log.warn(`devices failed (exit ${done.exitCode ?? done.signal}): ${done.stderr.trim().split('\n').pop() ?? ''}`);
      return undefined;
    }
    const report = parseDevicesReport(lines.join('\n'));
    if (typeof report === 'string') {
      this.log.warn(`devices: ${report}`);
      return undefined;
    }
    this.log.info(`devices: ${report.cuda.length ? report.cuda.map((d) => `cuda:${d.index} ${d.name}`).join(', ') : 'no CUDA device'}; attention ${report.attention.join(', ')}`);
    return report;
  }
}
