/**
 * The Output channel's record of every worker the extension starts: its verb, run folder, full command line and
 * pid at the launch, and at its end the exit status, how long it ran and why it ended. Every spawn point
 * (startWorker, launchTrain) goes through logLaunch, so a launch is never missing from the log. Free of vscode:
 * extension.ts hands the channel in once.
 */
export interface LogSink {
  info(line: string): void;
  warn(line: string): void;
}

let sink: LogSink | undefined;

export function setWorkerLog(log: LogSink | undefined): void {
  sink = log;
}

export interface WorkerLaunchRecord {
  verb: string;
  runDir?: string;
  python: string;
  argv: readonly string[];
  pid: number | undefined;
}

export interface WorkerEnd {
  exitCode: number | null;
  signal: string | null;
  /** The user asked for the cancel (a confirmed Cancel, not a crash or a kill from elsewhere). */
  cancelledByUser: boolean;
  /** The worker's closing sentence: on a failure it writes one line to stderr (see worker/l3prune/__main__.py). */
  errorText?: string;
}

/** A shell-readable command line: arguments with spaces or quotes are single-quoted, as a user would paste them. */
export function commandLine(python: string, argv: readonly string[]): string {
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return [python, ...argv].map(quote).join(' ');
}

export function endReason(end: WorkerEnd): string {
  if (end.cancelledByUser) return 'cancelled by user';
  if (end.exitCode === 0) return 'succeeded';
  const line = (end.errorText ?? '').split('\n').map((l) => l.trim()).filter(Boolean).pop();
  return `failed: ${line ?? (end.signal ? `killed by ${end.signal}` : `exit code ${end.exitCode}`)}`;
}

/** Logs the launch now and returns the function that logs its end. */
export function logLaunch(launch: WorkerLaunchRecord, now: () => number = Date.now): (end: WorkerEnd) => void {
  const started = now();
  const where = launch.runDir ? ` → ${launch.runDir}` : '';
  sink?.info(`worker ${launch.verb} started (pid ${launch.pid ?? '?'})${where}: ${commandLine(launch.python, launch.argv)}`);
  let logged = false;
  return (end) => {
    if (logged) return;
    logged = true;
    const status = end.signal ? `signal ${end.signal}` : `exit code ${end.exitCode}`;
    const line = `worker ${launch.verb} ended (pid ${launch.pid ?? '?'}): ${status} after ${((now() - started) / 1000).toFixed(1)} s, ${endReason(end)}`;
    if (end.cancelledByUser || end.exitCode === 0) sink?.info(line);
    else sink?.warn(line);
  };
}
