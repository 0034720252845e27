import type * as vscode from 'vscode';
import reportSchema from '../../protocol/devices-report.schema.json';
import type { JsonSchema } from '../protocol/schemas';
import type { DevicesReport } from '../shared/protocol/generated/devices-report';
import { reportParser, WorkerReports } from './workerReport';

/** The report in the one line `devices` prints, or why there is none. */
export const parseDevicesReport = reportParser<DevicesReport>(reportSchema as JsonSchema, 'protocol/devices-report.schema.json');

/**
 * What the worker's torch can compute on, asked once per interpreter and session (`devices --calibrate`, about a
 * second a device): the resource planner's device. A failure is logged and leaves the plan without a device.
 */
export class DeviceReports {
  private readonly reports: WorkerReports<DevicesReport>;

  constructor(log: vscode.LogOutputChannel) {
    this.reports = new WorkerReports(log, 'devices', ['--calibrate'], parseDevicesReport, (report) =>
      `${report.cuda.length ? report.cuda.map((d) => `cuda:${d.index} ${d.name}`).join(', ') : 'no CUDA device'}; attention ${report.attention.join(', ')}`);
  }

  async get(python: string): Promise<DevicesReport | undefined> {
    const report = await this.reports.get(python);
    return typeof report === 'string' ? undefined : report;
  }
}
