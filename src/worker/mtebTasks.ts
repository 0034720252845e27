import type * as vscode from 'vscode';
import reportSchema from '../../protocol/mteb-tasks-report.schema.json';
import type { JsonSchema } from '../protocol/schemas';
import type { MtebTasksReport } from '../shared/protocol/generated/mteb-tasks-report';
import { reportParser, WorkerReports } from './workerReport';

export type MtebTask = MtebTasksReport['tasks'][number];

/** The report in the one line `mteb-tasks` prints, or why there is none. */
export const parseMtebTasksReport = reportParser<MtebTasksReport>(reportSchema as JsonSchema, 'protocol/mteb-tasks-report.schema.json');

/**
 * The MTEB tasks the worker's mteb knows and which of them have their data in the datasets cache, asked once per
 * interpreter and session (importing mteb takes seconds); a string says why there is no list (mteb missing).
 */
export class MtebTaskLists {
  private readonly reports: WorkerReports<MtebTasksReport>;

  constructor(log: vscode.LogOutputChannel) {
    this.reports = new WorkerReports(log, 'mteb-tasks', [], parseMtebTasksReport, (report) =>
      `${report.tasks.length} tasks in mteb ${report.mtebVersion}, ${report.tasks.filter((t) => t.cached).length} cached in ${report.datasetsCache}`);
  }

  get(python: string): Promise<MtebTasksReport | string> {
    return this.reports.get(python);
  }
}
