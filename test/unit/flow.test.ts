/**
 * The flow between views, in its pure parts: what a finished job offers next (held to package.json, the manifest
 * VS Code registers the commands from), the once-per-interpreter worker check, and the Output channel's record of
 * a worker launch and its end, taken from real worker processes.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { COMMAND_IDS } from '../../src/commandIds';
import { nextSteps, type FinishedJob } from '../../src/shared/guide/nextSteps';
import { SuccessCache } from '../../src/worker/successCache';
import { commandLine, setWorkerLog } from '../../src/worker/workerLog';
import { startWorker } from '../../src/worker/workerProcess';
import { DEMO, requireWorkerEnvironment, ROOT } from '../fixtures/demo';

const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const contributed = new Map((manifest.contributes.commands as Array<{ command: string; title: string }>).map((c) => [c.command, c.title]));

const RUN = '/runs/train-1';
const job = (over: Partial<FinishedJob>): FinishedJob => ({ verb: 'train', status: 'succeeded', runDir: RUN, ...over });
const commandsOf = (j: FinishedJob) => nextSteps(j).map((s) => s.command);

describe('next steps after a finished job', () => {
  it('a trained variant offers Evaluate, both exports and Compare, each on its run folder', () => {
    const steps = nextSteps(job({}));
    assert.deepEqual(steps.map((s) => s.command), ['l3prune.evaluate', 'l3prune.exportOnnx', 'l3prune.exportSentenceTransformers', 'l3prune.compareVariants']);
    for (const s of steps) assert.deepEqual(s.args, [RUN], `${s.title} acts on the run that finished`);
  });

  it('an export offers Try Encoder on the exported folder; an evaluation offers Compare; an analysis the two cuts on its model', () => {
    assert.deepEqual(nextSteps(job({ verb: 'export-onnx', outDir: '/runs/x/onnx' })), [{ title: 'Try Encoder', command: 'l3prune.tryEncoder', args: ['/runs/x/onnx'] }]);
    assert.deepEqual(commandsOf(job({ verb: 'evaluate' })), ['l3prune.compareVariants']);
    const cuts = nextSteps(job({ verb: 'analyze', model: '/m/smollm2', cuts: { small: 14, large: 22 } }));
    assert.deepEqual(cuts.map((s) => [s.command, s.args]), [['l3prune.pruneAtSmallCut', ['/m/smollm2']], ['l3prune.pruneAtLargeCut', ['/m/smollm2']]]);
    assert.match(cuts[0].title, /keep 14/);
    assert.match(cuts[1].title, /keep 22/);
  });

  it('a cancelled run offers Resume only when it can resume; a failure offers its folder; nothing else is offered', () => {
    assert.deepEqual(commandsOf(job({ status: 'cancelled', resumable: true })), ['l3prune.resumeRun']);
    assert.deepEqual(commandsOf(job({ status: 'cancelled', resumable: false })), []);
    assert.deepEqual(commandsOf(job({ status: 'failed', resumable: true })), ['l3prune.resumeRun', 'l3prune.revealRun']);
    assert.deepEqual(commandsOf(job({ verb: 'evaluate', status: 'cancelled' })), []);
    assert.deepEqual(commandsOf(job({ verb: 'analyze' })), [], 'no cut buttons without the cuts');
    assert.deepEqual(commandsOf(job({ verb: 'export-st' })), []);
  });

  it('names only commands package.json contributes and the extension registers, with the manifest’s own wording', () => {
    const jobs: FinishedJob[] = [
      job({}), job({ status: 'cancelled', resumable: true }), job({ status: 'failed', resumable: true }), job({ verb: 'evaluate' }),
      job({ verb: 'export-onnx', outDir: '/o' }), job({ verb: 'analyze', model: '/m', cuts: { small: 1, large: 2 } }),
    ];
    for (const j of jobs) {
      const steps = nextSteps(j);
      assert.equal(new Set(steps.map((s) => s.title)).size, steps.length, `${j.verb} ${j.status}: one button per title`);
      for (const s of steps) {
        assert.ok(contributed.has(s.command), `${s.command} is contributed`);
        assert.ok((COMMAND_IDS as readonly string[]).includes(s.command), `${s.command} has a handler`);
        // A button reads like the command it runs (Evaluate… ~ "Evaluate…", Prune at Small Cut (keep 14) ~ "Prune at Small Cut").
        const title = contributed.get(s.command)!.replace(/…$/, '').replace(/ Folder$/, '');
        assert.ok(s.title.startsWith(title.split(' ')[0]), `"${s.title}" reads like "${contributed.get(s.command)}"`);
      }
    }
  });
});

describe('the worker check, once per interpreter', () => {
  it('checks an interpreter once after a success, and two jobs starting together share one check', async () => {
    const cache = new SuccessCache();
    let runs = 0;
    const slowOk = () => new Promise<boolean>((resolve) => setTimeout(() => resolve(++runs > 0), 20));
    assert.deepEqual(await Promise.all([cache.check('/py', slowOk), cache.check('/py', slowOk)]), [true, true]);
    assert.equal(await cache.check('/py', slowOk), true);
    assert.equal(runs, 1);
    assert.equal(await cache.check('/other/py', slowOk), true);
    assert.equal(runs, 2, 'another interpreter is checked on its own');
  });

  it('does not keep a failure or an error, so installing the worker and trying again checks again', async () => {
    const cache = new SuccessCache();
    const answers = [false, true];
    let runs = 0;
    const check = async () => answers[runs++];
    assert.equal(await cache.check('/py', check), false);
    assert.equal(await cache.check('/py', check), true);
    assert.equal(await cache.check('/py', check), true);
    assert.equal(runs, 2);
    const broken = new SuccessCache();
    await assert.rejects(broken.check('/py', () => Promise.reject(new Error('spawn EACCES'))), /EACCES/);
    assert.equal(await broken.check('/py', async () => true), true);
  });
});

describe('the Output channel’s record of worker launches', () => {
  const lines: string[] = [];
  before(() => setWorkerLog({ info: (l) => lines.push(`info ${l}`), warn: (l) => lines.push(`warn ${l}`) }));
  after(() => setWorkerLog(undefined));
  beforeEach(() => (lines.length = 0));

  it('writes a command line that a shell reads back as the same arguments', () => {
    const argv = ['-m', 'l3prune', 'train', '--run-dir', '/tmp/my runs/it’s here', '--spec', "a'b\"c $HOME `x`"];
    const echoed = execFileSync('bash', ['-c', `printf '%s\\n' ${commandLine('/usr/bin/python3', argv)}`], { encoding: 'utf8' });
    assert.deepEqual(echoed.split('\n').slice(0, -1), ['/usr/bin/python3', ...argv]);
  });

  it('logs a real worker’s launch (verb, pid, command line) and its failure with the worker’s own sentence', async function () {
    requireWorkerEnvironment(this);
    this.timeout(60_000);
    const worker = await startWorker({ python: DEMO.python, verb: 'nosuchverb', args: ['--run-dir', '/tmp/x'] });
    const end = await worker.done;
    assert.notEqual(end.exitCode, 0);
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.equal(lines[0], `info worker nosuchverb started (pid ${worker.pid}) → /tmp/x: ${DEMO.python} -m l3prune nosuchverb --run-dir /tmp/x`);
    const lastStderr = end.stderr.trim().split('\n').pop()!;
    assert.match(lines[1], new RegExp(`^warn worker nosuchverb ended \\(pid ${worker.pid}\\): exit code ${end.exitCode} after \\d+\\.\\d s, failed: `));
    assert.ok(lines[1].endsWith(`failed: ${lastStderr.trim()}`), `${lines[1]} ends with the worker's sentence "${lastStderr}"`);
  });

  it('logs a user’s cancel as such, not as a failure', async function () {
    requireWorkerEnvironment(this);
    this.timeout(60_000);
    // `devices` imports torch first, so it is still starting when the cancel comes.
    const worker = await startWorker({ python: DEMO.python, verb: 'devices', args: [] });
    await worker.cancel();
    const end = await worker.done;
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.match(lines[1], new RegExp(`^info worker devices ended \\(pid ${worker.pid}\\): (signal ${end.signal}|exit code ${end.exitCode}) after [\\d.]+ s, cancelled by user$`));
  });
});
