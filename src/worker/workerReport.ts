import type * as vscode from 'vscode';
import { schemaCheck, type JsonSchema } from '../protocol/schemas';
import { startWorker } from './workerProcess';
import { SuccessCache } from './successCache';

/**
 * The verbs without a run folder that answer with one JSON line on stdout (`devices`, `mteb-tasks`): the line
 * validated against its protocol schema, asked once per interpreter and session. A failed ask is asked again next
 * time (the user may have installed the missing package meanwhile).
 */
export function reportParser<T>(schema: JsonSchema, schemaFile: string): (stdout: string) => T | string {
  const check = schemaCheck(schema);
  return (stdout) => {
    const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
    if (!line) return 'the worker printed no report';
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return 'the worker printed a line that is not JSON';
    }
    const problems = check.problems(value);
    return problems.length ? `the report does not match ${schemaFile}: ${problems[0].text}` : (value as T);
  };
}

export class WorkerReports<T> {
  /** A report is kept per interpreter; a sentence saying why there is none is not, so the next ask tries again. */
  private readonly cache = new SuccessCache<T | string>((report) => typeof report !== 'string');

  constructor(
    private readonly log: vscode.LogOutputChannel,
    private readonly verb: string,
    private readonly args: string[],
    private readonly parse: (stdout: string) => T | string,
    private readonly describe: (report: T) => string,
  ) {}

  /** The report, or the one sentence saying why there is none (the worker's own, when it failed). */
  get(python: string): Promise<T | string> {
    return this.cache.check(python, () => this.ask(python));
  }

  private async ask(python: string): Promise<T | string> {
    // startWorker logs the launch and its end (with the worker's sentence on a failure): only the report is told here.
    const worker = await startWorker({ python, verb: this.verb, args: this.args });
    const lines: string[] = [];
    for await (const line of worker.lines) lines.push(line);
    const done = await worker.done;
    if (done.exitCode !== 0) {
      return done.stderr.trim().split('\n').pop()?.replace(/^l3prune: /, '') || `exit ${done.exitCode ?? done.signal}`;
    }
    const report = this.parse(lines.join('\n'));
    this.log[typeof report === 'string' ? 'warn' : 'info'](`${this.verb}: ${typeof report === 'string' ? report : this.describe(report)}`);
    return report;
  }
}
