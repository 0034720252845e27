import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type * as vscode from 'vscode';
import { chosenTasks, taskRows } from '../../src/shared/compare/evaluationTasks';
import { variantRows } from '../../src/shared/compare/variants';
import { EVALUATE_DEFAULTS } from '../../src/shared/protocol/generated/defaults';
import type { MtebTasksReport } from '../../src/shared/protocol/generated/mteb-tasks-report';
import { evaluateArgs, runEvaluate } from '../../src/compare/variantRuns';
import { RunStore } from '../../src/runs/runStore';
import { MtebTaskLists, parseMtebTasksReport } from '../../src/worker/mtebTasks';
import { DEMO, requireWorkerEnvironment, ROOT } from '../fixtures/demo';

const task = (name: string, type: MtebTasksReport['tasks'][number]['type'], cached: boolean, extra: Partial<MtebTasksReport['tasks'][number]> = {}) => ({
  name, type, mainScore: 'main', dataset: `mteb/${name.toLowerCase()}`, revision: 'r1', cached, cachedRevision: cached, supersededBy: null, ...extra,
});

const REPORT: MtebTasksReport = {
  event: 'mteb_tasks', time: '2026-12-01T00:00:00Z', mtebVersion: '2.26.24', datasetsCache: '/cache',
  tasks: [task('ZetaRetrieval', 'Retrieval', true), task('STSBenchmark', 'STS', true, { supersededBy: 'STSBenchmark.v2', cachedRevision: false }),
    task('STS12', 'STS', false), task('AlphaUnknown', 'Classification', false)],
};

describe('Evaluate…: the task pick', () => {
  it('offers the built-in tasks (ticked), then the cached MTEB tasks, then those to download', () => {
    assert.deepEqual(parseMtebTasksReport(`noise\n${JSON.stringify(REPORT)}\n`), REPORT);
    const refused = String(parseMtebTasksReport('{"event": "mteb_tasks"}'));
    assert.match(refused, /does not match protocol\/mteb-tasks-report\.schema\.json: .*(time|tasks)/);
    assert.doesNotMatch(refused, /object Object/);
    const rows = taskRows(REPORT, false);
    const headings = rows.filter((r) => r.heading).map((r) => r.label);
    assert.deepEqual(headings.map((h) => h.split(' ')[0]), ['Built-in', 'MTEB', 'MTEB']);
    assert.deepEqual(rows.filter((r) => r.picked).map((r) => r.builtin), EVALUATE_DEFAULTS.tasks);
    const names = rows.filter((r) => r.mteb).map((r) => r.mteb);
    // LLM2Vec's instructed tasks (the paper's) before the others, within each section.
    assert.deepEqual(names, ['STSBenchmark', 'ZetaRetrieval', 'STS12', 'AlphaUnknown']);
    const sts = rows.find((r) => r.mteb === 'STSBenchmark');
    assert.match(sts?.detail ?? '', /another revision.*superseded by STSBenchmark\.v2.*LLM2Vec instruction/);
    assert.match(rows.find((r) => r.mteb === 'ZetaRetrieval')?.detail ?? '', /no instruction/);
    assert.deepEqual(rows.filter((r) => r.download).map((r) => r.mteb), ['STS12', 'AlphaUnknown']);
  });

  it('offline, leaves out the tasks it would have to download; without mteb, offers the built-in tasks only', () => {
    assert.deepEqual(taskRows(REPORT, true).filter((r) => r.mteb).map((r) => r.mteb), ['STSBenchmark', 'ZetaRetrieval']);
    const without = taskRows('the mteb package is not installed', false);
    assert.deepEqual(without.filter((r) => !r.heading).map((r) => r.builtin), EVALUATE_DEFAULTS.tasks);
  });

  it('turns the ticked rows into the worker’s flags, the download consent only for uncached tasks', () => {
    const rows = taskRows(REPORT, false);
    const picked = chosenTasks(rows.filter((r) => r.builtin === 'sts' || r.mteb === 'STSBenchmark' || r.mteb === 'STS12'));
    assert.deepEqual(picked, { tasks: ['sts'], mtebTasks: ['STSBenchmark', 'STS12'], toDownload: ['STS12'] });
    const variant = { kind: 'base', model: '/m', keep: 4, numLayers: 30 } as const;
    assert.deepEqual(evaluateArgs({ python: 'p', runDir: '/r', variant, ...picked, allowDownload: true }),
      ['--model', '/m', '--keep', '4', '--tasks', 'sts', '--mteb-task', 'STSBenchmark', '--mteb-task', 'STS12', '--allow-download']);
    assert.deepEqual(evaluateArgs({ python: 'p', runDir: '/r', variant, tasks: [], mtebTasks: ['STSBenchmark'] }),
      ['--model', '/m', '--keep', '4', '--tasks', 'none', '--mteb-task', 'STSBenchmark']);
  });
});

describe('a real MTEB task from a datasets cache, listed and evaluated as the extension does', function () {
  this.timeout(600_000);
  let root = '';
  const cacheBefore = process.env.HF_DATASETS_CACHE;
  const silent = { info: () => undefined, warn: () => undefined } as unknown as vscode.LogOutputChannel;

  before(function () {
    requireWorkerEnvironment(this);
    root = mkdtempSync(path.join(tmpdir(), 'l3prune-mteb-'));
    const cache = path.join(root, 'datasets');
    // The demo's STS set laid out as mteb's STSBenchmark reads it (worker/tests/mteb_cache.py, also the pytest reference).
    const build = spawnSync(DEMO.python, ['-c', [
      'import sys; sys.path.insert(0, sys.argv[1])',
      'from pathlib import Path', 'import mteb_cache', 'from l3prune import evaltasks as T',
      'mteb_cache.wrap_builtin(Path(sys.argv[2]), T.LOADERS["sts"](Path(sys.argv[3]), 40))',
    ].join('\n'), path.join(ROOT, 'worker/tests'), cache, path.join(ROOT, '.demo/data')], { encoding: 'utf8', timeout: 300_000 });
    assert.equal(build.status, 0, build.stderr);
    process.env.HF_DATASETS_CACHE = cache;
  });
  after(() => {
    if (cacheBefore === undefined) delete process.env.HF_DATASETS_CACHE;
    else process.env.HF_DATASETS_CACHE = cacheBefore;
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('the worker’s list, validated by the host, marks the cached task offline-ready', async () => {
    const report = await new MtebTaskLists(silent).get(DEMO.python);
    assert.ok(typeof report !== 'string', String(report));
    assert.equal(report.datasetsCache, process.env.HF_DATASETS_CACHE);
    const sts = report.tasks.find((t) => t.name === 'STSBenchmark');
    assert.ok(sts?.cached && sts.cachedRevision, JSON.stringify(sts));
    assert.ok(report.tasks.length > 300 && report.tasks.filter((t) => t.cached).length === 1);
    const cachedRows = taskRows(report, true).filter((r) => r.mteb);
    assert.deepEqual(cachedRows.map((r) => r.mteb), ['STSBenchmark']);
  });

  it('scores STSBenchmark on the same texts as the built-in STS task alike, and the comparison shows both', async () => {
    const runDir = path.join(root, 'runs', 'evaluate-mteb');
    const outcome = await runEvaluate(
      { python: DEMO.python, runDir, variant: { kind: 'base', model: DEMO.model, keep: 2, numLayers: 30 }, tasks: ['sts'], mtebTasks: ['STSBenchmark'], maxExamples: 40 },
      () => undefined,
      { isCancellationRequested: false, onCancellationRequested: () => ({ dispose: () => undefined }) },
    );
    assert.equal(outcome.status, 'succeeded', JSON.stringify(outcome));
    const store = new RunStore(() => path.join(root, 'runs'));
    await store.refresh();
    const [row] = variantRows(store.list());
    assert.deepEqual(Object.keys(row.scores).sort(), ['LeeDocumentSTS', 'STSBenchmark']);
    // Both get "Retrieve semantically similar text:" (LLM2Vec's table), so the same texts give the same score.
    assert.ok(Math.abs((row.scores.STSBenchmark ?? NaN) - (row.scores.LeeDocumentSTS ?? NaN)) < 1e-6, JSON.stringify(row.scores));
  });
});
