/**
 * End-to-end: run pages (issue 14, item 4) in a real VS Code (code-server) through Chromium.
 * Before the window opens, the real worker writes three run folders into the workspace's runs folder: two short
 * training runs of the demo model (keep 6, keep 12) and an initial-loss analysis. Then: a training run's page
 * (loss raw and smoothed, learning rate, tokens/s, memory, the summary, whole-number step ticks), smoothing kept
 * across closing and reopening, one tab per run, a rename shown in the tree and the tab, the Loss view's legend
 * over two runs that selecting the analysis does not blank, and the analysis opening its curve in the layer stack.
 * Last, a window reload brings the page back (its serializer) with the same smoothing.
 * An evaluation opens as its row in Compare.
 * Screenshots: test-artifacts/run-page.png, run-page-legend.png, run-analyze-opens-curve.png, run-loss-waiting.png,
 * run-evaluate-opens-scores.png, run-page-after-reload.png.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FrameLocator } from 'playwright-core';
import { CodeServerHarness, ensureVsix, escapeRegExp, REPO_ROOT, timed } from './harness';
import { closeSuite, keepFailures } from './suite';
import { modelFixture, type ModelFixture } from './fixtures';

const WORKER_PYTHON = path.join(REPO_ROOT, '.venv', 'bin', 'python');
const DEMO_TRIPLES = path.join(REPO_ROOT, '.demo', 'data', 'triples.jsonl');
const STEPS = 12;
const LIVE_STEPS = 16;

/** One real worker run into `runDir`; the test stops at the first that fails, with its stderr. */
function worker(verb: string, runDir: string, args: string[]): void {
  const p = spawnSync(WORKER_PYTHON, ['-m', 'l3prune', verb, '--run-dir', runDir, ...args], {
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  if (p.status !== 0) throw new Error(`l3prune ${verb} failed (${p.status}): ${p.stderr.slice(-2000)}`);
}

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));
const hhmm = (iso: string) => {
  const at = new Date(iso);
  return `${String(at.getHours()).padStart(2, '0')}:${String(at.getMinutes()).padStart(2, '0')}`;
};

describe('run pages in VS Code (code-server)', function () {
  this.bail(true);

  let h: CodeServerHarness;
  let model: ModelFixture;
  let scratch: string;
  let runs: string;
  const names: Record<'six' | 'twelve' | 'analyze', string> = { six: '', twelve: '', analyze: '' };

  before(async function () {
    // E2E_VSIX: a copy of the package of one's own, when other builds rewrite dist/ meanwhile.
    const vsix = ensureVsix(process.env.E2E_VSIX || undefined);
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'l3prune-e2e-runpages-'));
    const workspace = path.join(scratch, 'workspace');
    runs = path.join(workspace, '.l3prune', 'runs');
    fs.mkdirSync(runs, { recursive: true });
    model = modelFixture(scratch);
    const train = (keep: number) => [
      '--model', model.dir, '--data', DEMO_TRIPLES, '--keep', String(keep), '--steps', String(STEPS), '--batch-size', '4',
      '--max-length', '24', '--warmup-steps', '3', '--checkpoint-every', String(STEPS),
    ];
    await timed('worker: two training runs and an analysis', async () => {
      worker('train', path.join(runs, 'train-keep6'), train(6));
      worker('train', path.join(runs, 'train-keep12'), train(12));
      worker('analyze', path.join(runs, 'analyze-demo'), ['--model', model.dir, '--data', DEMO_TRIPLES, '--samples', '16', '--batch-size', '8', '--max-length', '24']);
      worker('evaluate', path.join(runs, 'evaluate-keep6'), ['--from-run', path.join(runs, 'train-keep6'), '--tasks', 'sts', '--max-examples', '16', '--max-length', '24', '--batch-size', '8']);
    });
    const started = (dir: string) => readJson(path.join(runs, dir, 'run.json')).startedAt as string;
    names.six = `${model.name} · keep 6 · ${hhmm(started('train-keep6'))}`;
    names.twelve = `${model.name} · keep 12 · ${hhmm(started('train-keep12'))}`;
    // A run launched by the extension (an l3prune task), to watch live: the waiting state, then points and an ETA.
    const recipe = { batchSize: 4, maxLength: 24, warmupSteps: 3, checkpointEvery: LIVE_STEPS, mergeAtEnd: false };
    const tasks = [{ type: 'l3prune', label: 'runpages: live run', verb: 'train', model: model.dir, keep: 3, data: DEMO_TRIPLES, steps: LIVE_STEPS, recipe, problemMatcher: [] }];
    fs.mkdirSync(path.join(workspace, '.vscode'));
    fs.writeFileSync(path.join(workspace, '.vscode', 'tasks.json'), JSON.stringify({ version: '2.0.0', tasks }, null, 2));
    h = await CodeServerHarness.start({ workspace, vsix, machineSettings: { 'l3prune.pythonPath': WORKER_PYTHON }, env: { OMP_NUM_THREADS: '1' } });
  });

  keepFailures('runpages', () => h);
  after(() => closeSuite(h, scratch));

  const runsPane = () => h.sidebarPane('Runs');
  const runRow = (label: string) => h.treeItem(label, runsPane());
  const runPage = (): Promise<FrameLocator> => h.webview('#run-summary', 60_000);
  const lossView = (): Promise<FrameLocator> => h.webview('main#app[data-mode="compact"]', 60_000);
  const tabs = (title: string) => h.editorTab(new RegExp(`^${escapeRegExp(title)}`));

  it('names training runs "<model> · keep n · HH:MM" in the Runs tree', async function () {
    await h.openSidebar('L³Prune');
    for (const name of [names.six, names.twelve]) await runRow(name).waitFor({ state: 'visible', timeout: 60_000 });
  });

  it('follows a live run in the Loss view: "waiting for the first step", then its points; its page has an ETA', async function () {
    this.timeout(400_000);
    const before = new Set(fs.readdirSync(runs));
    await h.runCommand('Tasks: Run Task');
    await h.quickInputRows.filter({ hasText: 'runpages: live run' }).first().click();
    // Polled from the launch on: the state lasts from run.json to the first step (model load), a few seconds.
    let waiting = '';
    let live = '';
    const deadline = Date.now() + 180_000;
    while (!live || !waiting) {
      if (Date.now() > deadline) throw new Error(`live run ${live || '(no folder)'}: the Loss view never showed the waiting state; notifications: ${JSON.stringify(await h.notifications())}`);
      live ||= fs.readdirSync(runs).find((n) => !before.has(n) && fs.existsSync(path.join(runs, n, 'run.json'))) ?? '';
      const view = await lossView();
      const text = await view.locator('#plot-waiting').innerText({ timeout: 200 }).catch(() => '');
      if (/^Waiting for the first step of /.test(text)) {
        waiting = text;
        await h.screenshot('run-loss-waiting');
      }
      await h.page.waitForTimeout(150);
    }
    const name = `${model.name} · keep 3 · ${hhmm(readJson(path.join(runs, live, 'run.json')).startedAt)}`;
    assert.equal(waiting, `Waiting for the first step of ${name}…`);
    const view = await lossView();
    await view.locator('#loss-plot canvas').first().waitFor({ state: 'attached', timeout: 120_000 });
    await runRow(name).locator('.label-name').click();
    const page = await runPage();
    await page.locator('dd[data-field="ETA"]').waitFor({ state: 'attached', timeout: 60_000 });
    assert.match(await page.locator('dd[data-field="status"]').innerText(), new RegExp(`^running · step \\d+ of ${LIVE_STEPS}`));
    // At the end the ETA goes and the last loss becomes the final one, on the same page.
    await page.locator('dd[data-field="final loss"]').waitFor({ state: 'attached', timeout: 300_000 });
    assert.equal(await page.locator('dd[data-field="ETA"]').count(), 0);
    await h.runCommand('View: Close Editor');
  });

  it('opens a training run as one page: four charts, a summary, whole-number step ticks', async function () {
    await runRow(names.six).locator('.label-name').click();
    const page = await runPage();
    await tabs(names.six).waitFor({ state: 'visible', timeout: 20_000 });
    for (const id of ['loss-plot', 'learningRate-plot', 'tokensPerSecond-plot', 'memory-plot']) {
      await page.locator(`#${id}[data-points="${STEPS}"] canvas`).first().waitFor({ state: 'attached', timeout: 30_000 });
    }
    const captions = await page.locator('figcaption').allInnerTexts();
    assert.ok(captions.some((c) => /process RSS \(CPU run/.test(c)), `memory is labelled as the process RSS of a CPU run: ${captions.join(' | ')}`);
    const field = (name: string) => page.locator(`dd[data-field="${name}"]`).innerText();
    assert.match(await field('status'), new RegExp(`^succeeded · step ${STEPS} of ${STEPS}`));
    assert.equal(await field('cut'), `keep 6 of ${model.numLayers} layers`);
    assert.match(await field('recipe'), new RegExp(`steps ${STEPS} · batchSize 4 .*maxLength 24`));
    assert.match(await field('final loss'), /^\d+\.\d{4}$/);
    const events = fs.readFileSync(path.join(runs, 'train-keep6', 'events.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const last = events.filter((e) => e.event === 'step').pop();
    assert.equal(await field('final loss'), last.loss.toFixed(4), 'the final loss is the last step event the worker wrote');
    for (const name of ['model', 'started', 'duration']) assert.ok((await field(name)).length > 0, name);
    // Raw (faint) and smoothed (bold): two series of the run in the loss chart's legend.
    const legend = await page.locator('#loss-plot .u-legend .u-series th').allInnerTexts();
    assert.ok(legend.some((t) => t.includes(`${names.six} (raw)`)) && legend.some((t) => t.trim() === names.six), `loss legend: ${legend.join(' | ')}`);
    const ticks = (await page.locator('#loss-plot').getAttribute('data-x-ticks')) ?? '';
    assert.ok(ticks.length > 0 && ticks.split(',').every((t) => /^\d+$/.test(t)), `step ticks are whole numbers: ${ticks}`);
    await h.screenshot('run-page');
  });

  it('keeps the smoothing when the page is closed and opened again', async function () {
    const page = await runPage();
    await page.locator('#smoothing').evaluate((input: HTMLInputElement) => {
      input.value = '0.9';
      input.dispatchEvent(new Event('input'));
      input.dispatchEvent(new Event('change'));
    });
    await page.locator('main#app[data-smoothing="0.90"]').waitFor({ state: 'attached' });
    await h.page.waitForTimeout(500); // the prefs message reaches the host
    await tabs(names.six).click();
    await h.runCommand('View: Close Editor');
    await tabs(names.six).waitFor({ state: 'detached', timeout: 10_000 });
    await runRow(names.six).locator('.label-name').click();
    const again = await runPage();
    await again.locator('main#app[data-smoothing="0.90"]').waitFor({ state: 'attached', timeout: 20_000 });
    assert.equal(await again.locator('#smoothing-value').innerText(), '0.90');
  });

  it('reveals the open tab instead of opening a second one', async function () {
    await runRow(names.twelve).locator('.label-name').click();
    await tabs(names.twelve).waitFor({ state: 'visible', timeout: 20_000 });
    await runRow(names.six).locator('.label-name').click();
    await h.page.waitForTimeout(1000);
    await runRow(names.six).locator('.label-name').click();
    await h.page.waitForTimeout(1000);
    assert.equal(await tabs(names.six).count(), 1, 'one tab per run');
  });

  it('renames a run: the tree and the tab show the new name, name.json holds it', async function () {
    // From the run's context menu, as a person would; a menu item takes a pointer first, then the press.
    await runRow(names.twelve).locator('.label-name').click({ button: 'right' });
    const item = h.page.locator('.context-view .monaco-menu .action-item .action-label', { hasText: /^\s*Rename Run…\s*$/ });
    await item.waitFor({ state: 'visible', timeout: 10_000 });
    await item.hover();
    await h.page.waitForTimeout(300);
    await item.click();
    await h.answerInput(/Rename run/, 'baseline run');
    await runRow('baseline run').waitFor({ state: 'visible', timeout: 20_000 });
    await tabs('baseline run').waitFor({ state: 'visible', timeout: 20_000 });
    assert.deepEqual(readJson(path.join(runs, 'train-keep12', 'name.json')), { schemaVersion: 1, name: 'baseline run' });
    names.twelve = 'baseline run';
  });

  it('overlays two selected runs in the Loss view with a legend, and selecting the analysis does not blank it', async function () {
    await runRow(names.six).locator('.label-name').click();
    await runRow(names.twelve).locator('.label-name').click({ modifiers: ['Control'] });
    const view = await lossView();
    await view.locator('#run-legend .run-legend-entry').nth(1).waitFor({ state: 'attached', timeout: 20_000 });
    assert.deepEqual((await view.locator('#run-legend .run-legend-entry').allInnerTexts()).map((t) => t.trim()), [names.six, names.twelve]);
    assert.equal(await view.locator('#loss-plot').getAttribute('data-runs'), '2');
    await h.screenshot('run-page-legend');
    // The analysis: its row opens the layer stack, and the Loss view keeps the two training runs.
    const analyze = runsPane().locator('.monaco-list-row[role="treeitem"]').filter({ hasText: /^analyze / });
    await analyze.locator('.label-name').click();
    const stack = await h.webview('#loss-chart', 120_000);
    await stack.locator(`#loss-chart[data-points="${model.numLayers}"]`).waitFor({ state: 'attached', timeout: 60_000 });
    const layerLosses = fs.readFileSync(path.join(runs, 'analyze-demo', 'events.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.event === 'layer_losses');
    assert.equal(Number(await stack.locator('#loss-chart').getAttribute('data-small')), layerLosses.small, "the panel shows this analysis's cuts");
    assert.equal(await stack.locator('#loss-chart canvas').count(), 1, 'the curve is drawn');
    const still = await lossView();
    assert.equal(await still.locator('#run-legend .run-legend-entry').count(), 2, 'the Loss view still shows both training runs');
    assert.equal(await still.locator('#loss-plot').getAttribute('data-runs'), '2');
    await h.screenshot('run-analyze-opens-curve');
  });

  it('opens an evaluation as its row among the variants (Compare), not as an empty run page', async function () {
    const row = runsPane().locator('.monaco-list-row[role="treeitem"]').filter({ hasText: /^evaluate / });
    await row.locator('.label-name').click({ button: 'right' });
    const item = h.page.locator('.context-view .monaco-menu .action-item .action-label', { hasText: /^\s*Open Run\s*$/ });
    await item.waitFor({ state: 'visible', timeout: 10_000 });
    await item.hover();
    await h.page.waitForTimeout(300);
    await item.click();
    const compare = await h.webview('#variants-scroll', 60_000);
    const finished = fs.readFileSync(path.join(runs, 'evaluate-keep6', 'events.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.event === 'evaluation_finished');
    await compare.locator(`tr[data-average="${finished.averageScore}"]`).first().waitFor({ state: 'attached', timeout: 30_000 });
    assert.equal(await tabs('evaluate').count(), 0, 'no run page for an evaluation');
    await h.screenshot('run-evaluate-opens-scores');
  });

  it('brings the run page back after a window reload, with its smoothing', async function () {
    await tabs(names.six).click();
    await h.runCommand('Developer: Reload Window');
    await h.page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 60_000 });
    await tabs(names.six).waitFor({ state: 'visible', timeout: 60_000 });
    const page = await runPage();
    await page.locator(`main#app[data-smoothing="0.90"] #loss-plot[data-points="${STEPS}"]`).waitFor({ state: 'attached', timeout: 60_000 });
    assert.equal(await page.locator('#smoothing-value').innerText(), '0.90');
    await h.screenshot('run-page-after-reload');
  });
});
