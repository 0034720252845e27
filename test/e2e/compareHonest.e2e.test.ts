/**
 * End-to-end: honest comparisons. Two evaluations of the demo model are made by the real worker before VS Code
 * starts, under different conditions (max length 64 for the full model, 32 for its first 4 layers); then in the real
 * VS Code: Evaluate… offers the model's reference conditions and the examples prompt shows each task's count and a time
 * estimate; Compare Variants flags the odd row (badge and tooltip naming the condition) and offers Re-evaluate to match;
 * the table fits a narrow panel with Variant, Average and cost in view (measured bounding boxes); each plot point is
 * labelled and the hover line follows the chosen axis; a row opens a readable detail; Re-evaluate runs the worker and
 * adds a matching row.
 *
 * Needs the demo model and data and a worker in .venv (each evaluation: 2 tasks, 4 examples each).
 */
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FrameLocator } from 'playwright-core';
import { CodeServerHarness, ensureVsix, log, REPO_ROOT } from './harness';
import { closeSuite, keepFailures } from './suite';
import { DEMO_MODEL_DIR, modelFixture, type ModelFixture } from './fixtures';

const WORKER_PYTHON = path.join(REPO_ROOT, '.venv', 'bin', 'python');
const SMALL_KEEP = 4;

/** One evaluation by the real worker, as Evaluate… would start it, under the given max length. */
function evaluate(runDir: string, keep: number | undefined, maxLength: number, env: NodeJS.ProcessEnv): Promise<void> {
  const args = ['-m', 'l3prune', 'evaluate', '--run-dir', runDir, '--model', DEMO_MODEL_DIR, ...(keep ? ['--keep', String(keep)] : []),
    '--tasks', 'sts,clustering', '--max-examples', '4', '--max-length', String(maxLength), '--batch-size', '8', '--device', 'cpu'];
  return new Promise((resolve, reject) => {
    const child = spawn(WORKER_PYTHON, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`evaluate ${runDir} exited ${code}: ${stderr.slice(-2000)}`))));
  });
}

describe('Honest comparisons in VS Code (code-server)', function () {
  this.bail(true);

  let h: CodeServerHarness;
  let model: ModelFixture;
  let scratch: string;
  let workspace: string;
  let runsDir: string;
  let web: FrameLocator;

  before(async function () {
    this.timeout(900_000);
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'l3prune-e2e-honest-'));
    model = modelFixture(scratch);
    const canEvaluate = fs.existsSync(WORKER_PYTHON) && spawnSync(WORKER_PYTHON, ['-m', 'l3prune', 'evaluate', '--help'], { encoding: 'utf8', timeout: 60_000 }).status === 0;
    if (model.synthetic || model.dir !== DEMO_MODEL_DIR || !canEvaluate) {
      if (process.env.CI) assert.fail('the demo model and a worker with the evaluate verb are installed by scripts/setup.sh');
      this.skip();
    }
    const vsix = ensureVsix();
    workspace = path.join(scratch, 'workspace');
    runsDir = path.join(workspace, '.l3prune', 'runs');
    fs.mkdirSync(runsDir, { recursive: true });
    const env = { ...process.env, OMP_NUM_THREADS: '1', L3PRUNE_LOCK_DIR: path.join(scratch, 'locks') };
    // One after the other (the worker locks the device), while code-server starts beside them.
    const runs = (async () => {
      await evaluate(path.join(runsDir, 'evaluate-full'), undefined, 64, env);
      await evaluate(path.join(runsDir, `evaluate-keep${SMALL_KEEP}`), SMALL_KEEP, 32, env);
    })();
    const started = CodeServerHarness.start({
      workspace,
      vsix,
      settings: { 'l3prune.models': [model.dir] },
      machineSettings: { 'l3prune.pythonPath': WORKER_PYTHON },
      env: { OMP_NUM_THREADS: '1', L3PRUNE_LOCK_DIR: path.join(scratch, 'locks') },
    });
    [h] = await Promise.all([started, runs]);
  });

  keepFailures('compare-honest', () => h);

  after(() => closeSuite(h, scratch));

  it('the worker stored each evaluation’s conditions with its result', () => {
    const result = (id: string) => JSON.parse(fs.readFileSync(path.join(runsDir, id, 'run.json'), 'utf8')).result;
    const full = result('evaluate-full');
    const cut = result(`evaluate-keep${SMALL_KEEP}`);
    assert.deepEqual([full.maxLength, full.batchSize, full.maxExamples, full.device], [64, 8, 4, 'cpu']);
    assert.deepEqual([cut.maxLength, cut.batchSize, cut.maxExamples, cut.device], [32, 8, 4, 'cpu']);
    assert.deepEqual(Object.keys(cut.examples).sort(), ['LeeDocumentSTS', 'WordNetLexnameClustering']);
  });

  it('Evaluate… offers the model’s reference conditions, and the examples prompt shows counts and a time estimate', async function () {
    this.timeout(180_000);
    await h.openSidebar('L³Prune');
    await h.runCommand('L3Prune: Evaluate…');
    await h.quickInputRows.filter({ hasText: model.name }).first().click();
    await h.quickInputRows.filter({ hasText: 'Another number of layers' }).first().click();
    await h.answerInput(/layers to keep \(the first n\)/, '8');
    await h.acceptPick(/Tasks to evaluate/);
    const title = h.page.locator('.quick-input-widget .quick-input-title').filter({ hasText: /Evaluation conditions/ });
    await title.waitFor({ state: 'visible', timeout: 30_000 });
    // A tie between the two (one each) goes to the deepest variant: the full model's max length 64, not the cut's 32.
    const first = h.quickInputRows.first();
    assert.match(await first.innerText(), /max length 64 · batch size 8 · device cpu/);
    assert.match(await first.innerText(), /Compare’s reference/);
    await h.screenshot('evaluate-conditions');
    await h.page.keyboard.press('Enter');
    const prompt = h.page.locator('.quick-input-widget .quick-input-message');
    await h.page.locator('.quick-input-widget .quick-input-title').filter({ hasText: /Examples per task/ }).waitFor({ state: 'visible', timeout: 30_000 });
    // The cap is the model's (4); the counts are the demo data's, the estimate measured by the two evaluations.
    assert.equal(await h.quickInput.inputValue(), '4');
    const text = await prompt.innerText();
    log(`examples prompt: ${text}`);
    assert.match(text, /sts 4 of 1,225 pairs/);
    assert.match(text, /classification 4 of 200 test texts/);
    assert.match(text, /≈ \d+ (s|min) \(from evaluate-(full|keep4), at (30|4) layers, scaled to 8\)/);
    await h.quickInput.fill('');
    await h.page.waitForFunction(() => /sts 1,225 pairs/.test(document.querySelector('.quick-input-widget .quick-input-message')?.textContent ?? ''));
    await h.screenshot('evaluate-conditions-examples');
    await h.page.keyboard.press('Escape');
  });

  it('Compare flags the row evaluated under other conditions, and offers to re-evaluate it', async function () {
    this.timeout(120_000);
    await h.runCommand('L3Prune: Compare Variants');
    web = await h.webview('#variants', 60_000);
    const rows = web.locator('#variants tbody tr.variant-row');
    await rows.nth(1).waitFor({ state: 'attached', timeout: 30_000 });
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => [(tr as HTMLElement).dataset.layers, (tr as HTMLElement).dataset.flagged])), [[String(model.numLayers), 'false'], [String(SMALL_KEEP), 'true']]);
    const badge = web.locator(`#variants tr[data-layers="${SMALL_KEEP}"] .condition-flag`);
    assert.equal(await badge.innerText(), '≠ conditions');
    assert.equal(await badge.getAttribute('data-differs'), 'maxLength');
    assert.match((await badge.getAttribute('title')) ?? '', /max length 32 \(others: 64\)/);
    assert.match(await web.locator('#conditions-warning').innerText(), /1 variant was evaluated under other conditions .*\(max length\)/);
    await web.locator('#reevaluate').waitFor({ state: 'visible' });
    await badge.hover();
    await h.screenshot('compare-honest-flagged');
  });

  it('labels every point of the Pareto plot, and the hover line follows the cost axis', async function () {
    this.timeout(60_000);
    const labels = web.locator('#pareto-plot .point-label');
    await labels.nth(1).waitFor({ state: 'attached', timeout: 20_000 });
    assert.deepEqual((await labels.allInnerTexts()).sort(), [`full (${model.numLayers} layers)`, `keep ${SMALL_KEEP} of ${model.numLayers}`].sort());
    const hoverPoint = async (axis: string) => {
      await web.locator('#cost-axis').selectOption(axis);
      await web.locator(`#pareto-plot[data-axis="${axis}"] .point-label`).nth(1).waitFor({ state: 'attached' });
      const label = web.locator(`#pareto-plot .point-label.differs`);
      const box = (await label.boundingBox())!;
      // The label sits 7 px right of its point, centred on it.
      await h.page.mouse.move(box.x - 7, box.y + box.height / 2);
      const hover = web.locator('#pareto-hover');
      await web.locator(`#pareto-hover[data-axis="${axis}"]`).waitFor({ state: 'attached', timeout: 10_000 });
      return hover.innerText();
    };
    assert.match(await hoverPoint('latency'), new RegExp(`keep ${SMALL_KEEP} of .* ms per batch of 8 \\(cpu\\) — ≠ conditions: max length 32`));
    assert.match(await hoverPoint('params'), new RegExp(`keep ${SMALL_KEEP} of .* at [\\d.]+M parameters`));
    assert.match(await hoverPoint('throughput'), new RegExp(`keep ${SMALL_KEEP} of .* at [\\d.]+ texts/s in batches of 8 \\(cpu\\)`));
    await web.locator('#cost-axis').selectOption('params');
  });

  it('fits a narrow panel: Variant stays put, Average and cost are in view, the task columns scroll', async function () {
    this.timeout(60_000);
    await h.page.setViewportSize({ width: 900, height: 900 });
    try {
      await h.page.waitForTimeout(500); // the workbench lays out after a resize
      const geometry = async () =>
        web.locator('#variants-scroll').evaluate((scroller) => {
          // No helper functions in here: the bundler would name them with a helper the page lacks.
          const tasks = scroller.querySelectorAll('thead th[data-task]');
          const [view, variant, average, latency, lastTask] = [
            scroller,
            scroller.querySelector('tbody tr td.label')!,
            scroller.querySelector('thead th:nth-child(2)')!,
            scroller.querySelector('thead th:nth-child(4)')!,
            tasks[tasks.length - 1],
          ].map((e) => ({ left: e.getBoundingClientRect().left, right: e.getBoundingClientRect().right }));
          return {
            view, variant, average, latency, lastTask,
            scrollWidth: scroller.scrollWidth,
            clientWidth: scroller.clientWidth,
            averageText: scroller.querySelector('thead th:nth-child(2)')!.textContent,
          };
        });
      const before = await geometry();
      log(`narrow table: ${JSON.stringify(before)}`);
      assert.equal(before.averageText, 'Average');
      assert.ok(before.scrollWidth > before.clientWidth, 'the table is wider than the narrow panel, so it scrolls');
      assert.ok(before.average.right <= before.view.right + 0.5 && before.latency.right <= before.view.right + 0.5, 'Average and latency are in view');
      await h.screenshot('compare-honest-narrow');
      await web.locator('#variants-scroll').evaluate((scroller) => (scroller.scrollLeft = scroller.scrollWidth));
      const after = await geometry();
      assert.ok(Math.abs(after.variant.left - before.view.left) < 1.5, `the Variant column stays at the left edge (${after.variant.left} vs ${before.view.left})`);
      assert.ok(after.lastTask.right <= after.view.right + 0.5, 'the last task column scrolled into view');
      await web.locator('#variants-scroll').evaluate((scroller) => (scroller.scrollLeft = 0));
    } finally {
      await h.page.setViewportSize({ width: 1400, height: 900 });
    }
  });

  it('a row opens a readable detail: scores per task, the conditions, links to its run', async function () {
    this.timeout(60_000);
    await web.locator(`#variants tbody tr.variant-row[data-layers="${SMALL_KEEP}"]`).click();
    const detail = web.locator(`#variant-detail[data-id$="evaluate-keep${SMALL_KEEP}"]`);
    await detail.waitFor({ state: 'visible', timeout: 10_000 });
    assert.match(await detail.locator('h2').innerText(), new RegExp(`keep ${SMALL_KEEP} of ${model.numLayers}`));
    assert.equal(await detail.locator('dd[data-condition="maxLength"]').innerText(), '32 tokens per text');
    assert.equal(await detail.locator('dd[data-condition="maxExamples"]').innerText(), 'at most 4');
    assert.deepEqual(await detail.locator('#detail-scores tbody tr[data-task]').evaluateAll((trs) => trs.map((tr) => (tr as HTMLElement).dataset.task)), ['LeeDocumentSTS', 'WordNetLexnameClustering']);
    for (const score of await detail.locator('#detail-scores tbody tr[data-task] td:nth-child(2)').allInnerTexts()) assert.match(score, /^-?\d\.\d{4}$/);
    assert.match(await detail.locator('.condition-note').innerText(), /max length 32 \(others: 64\)/);
    await detail.locator('#detail-open-run').waitFor({ state: 'visible' });
    // No raw run.json is opened by the click.
    assert.equal(await h.editorTab(/^run\.json/).count(), 0);
    await detail.scrollIntoViewIfNeeded();
    await h.screenshot('compare-honest-detail');
    // The link shows the evaluation among the runs (its own page is this panel), selected.
    await detail.locator('#detail-open-run').click();
    await h.sidebarPane('Runs').locator('.monaco-list-row[role="treeitem"].selected').filter({ hasText: new RegExp(`keep ${SMALL_KEEP}`) }).waitFor({ state: 'visible', timeout: 10_000 });
  });

  it('Re-evaluate to match evaluates the flagged variant again under the reference conditions', async function () {
    this.timeout(600_000);
    await web.locator('#reevaluate').click();
    const dialog = h.page.locator('.monaco-dialog-box');
    await dialog.waitFor({ state: 'visible', timeout: 20_000 });
    assert.match(await dialog.innerText(), new RegExp(`keep ${SMALL_KEEP} of ${model.numLayers}: max length 64, batch size 8, examples per task 4, device cpu`));
    await h.screenshot('compare-honest-reevaluate');
    await dialog.locator('a.monaco-button, .monaco-button').filter({ hasText: /^Re-evaluate$/ }).click();
    const matching = web.locator(`#variants tbody tr.variant-row[data-layers="${SMALL_KEEP}"][data-flagged="false"]`);
    await matching.waitFor({ state: 'attached', timeout: 540_000 });
    const runs = fs.readdirSync(runsDir).filter((d) => d.startsWith('evaluate-') && d !== 'evaluate-full' && d !== `evaluate-keep${SMALL_KEEP}`);
    assert.equal(runs.length, 1, 'one new evaluation run');
    const result = JSON.parse(fs.readFileSync(path.join(runsDir, runs[0], 'run.json'), 'utf8')).result;
    assert.deepEqual([result.numLayers, result.maxLength, result.batchSize, result.maxExamples, result.device], [SMALL_KEEP, 64, 8, 4, 'cpu']);
    assert.deepEqual(Object.keys(result.scores).sort(), ['LeeDocumentSTS', 'WordNetLexnameClustering'], 'the same tasks as the row it re-evaluates');
    // The old row keeps its badge, marked as re-evaluated, and nothing is left to offer.
    await web.locator('#variants .condition-flag', { hasText: '≠ conditions (re-evaluated)' }).waitFor({ state: 'attached', timeout: 20_000 });
    assert.equal(await web.locator('#conditions-warning').count(), 0);
    await h.page.locator('.notifications-toasts .notification-list-item').filter({ hasText: /Re-evaluating/ }).waitFor({ state: 'hidden', timeout: 60_000 }).catch(() => undefined);
    await h.screenshot('compare-honest-rematched');
  });
});
