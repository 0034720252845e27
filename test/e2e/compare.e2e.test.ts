/**
 * End-to-end: evaluate two variants of the demo model through the palette (the full model and the first 4
 * layers), then compare them: both rows with their scores in the Compare Variants table, the Pareto plot,
 * the cost-axis toggle, a row opening its run, and a CSV export through the save dialog; then the 4-layer variant
 * exported to ONNX (Try Encoder) and as a sentence-transformers folder.
 *
 * Needs what inspect.e2e.test.ts needs plus the demo model and data and a worker in .venv with the evaluate
 * verb; each evaluation scores 4 examples per task (the worker's smallest cap), so on an idle 2-core machine
 * the full model takes about a minute and the 4-layer cut well under one.
 * Environment: E2E_EVAL_EXAMPLES overrides the examples per task; the rest as in inspect.e2e.test.ts.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FrameLocator } from 'playwright-core';
import { CodeServerHarness, ensureVsix, log, REPO_ROOT, timed } from './harness';
import { closeSuite, keepFailures } from './suite';
import { assertPanelIgnoresHostileMessages, DEMO_MODEL_DIR, modelFixture, type ModelFixture } from './fixtures';

const WORKER_PYTHON = path.join(REPO_ROOT, '.venv', 'bin', 'python');
/** The worker's smallest cap per task (evaluateSpecInput.maxExamples), with which every task still scores. */
const EXAMPLES_PER_TASK = process.env.E2E_EVAL_EXAMPLES ?? '4';
const SMALL_KEEP = 4;

function workerCanEvaluate(): boolean {
  if (!fs.existsSync(WORKER_PYTHON)) return false;
  const probe = spawnSync(WORKER_PYTHON, ['-m', 'l3prune', 'evaluate', '--help'], { encoding: 'utf8', timeout: 60_000 });
  return probe.status === 0;
}

describe('Evaluate and compare variants in VS Code (code-server)', function () {
  this.bail(true);

  let h: CodeServerHarness;
  let model: ModelFixture;
  let scratch: string;
  let workspace: string;
  let web: FrameLocator;
  const started = Date.now();

  before(async function () {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'l3prune-e2e-compare-'));
    model = modelFixture(scratch);
    // The synthetic model has no tokenizer and zero weights: the worker cannot evaluate it.
    if (model.synthetic || model.dir !== DEMO_MODEL_DIR || !workerCanEvaluate()) {
      if (process.env.CI) assert.fail('the demo model and a worker with the evaluate verb are installed by scripts/setup.sh');
      this.skip();
    }
    const vsix = ensureVsix();
    workspace = path.join(scratch, 'workspace');
    fs.mkdirSync(workspace);
    h = await CodeServerHarness.start({
      workspace,
      vsix,
      // The model comes from the workspace's settings, so the test starts at the evaluation itself.
      settings: { 'l3prune.models': [model.dir] },
      machineSettings: { 'l3prune.pythonPath': WORKER_PYTHON },
    });
  });

  keepFailures('compare', () => h);

  after(async function () {
    await closeSuite(h, scratch);
    log(`compare e2e total: ${((Date.now() - started) / 1000).toFixed(1)}s`);
  });

  const modelsPane = () => h.sidebarPane('Models');
  const runsPane = () => h.sidebarPane('Runs');
  const toast = (text: RegExp) => h.page.locator('.notifications-toasts .notification-list-item').filter({ hasText: text });

  let firstEvaluation = true;

  /** Runs "L³Prune: Evaluate…" on the demo model, choosing the layers with `chooseLayers`, and waits for the score. */
  async function evaluate(variant: string, chooseLayers: () => Promise<void>): Promise<string> {
    await h.runCommand('L3Prune: Evaluate…');
    await h.quickInputRows.filter({ hasText: model.name }).first().click();
    await chooseLayers();
    // The five built-in tasks are ticked; the first evaluation waits for the worker's MTEB list and keeps a picture.
    await h.acceptPick(/Tasks to evaluate/, firstEvaluation
      ? { placeholder: /Built-in tasks(,| only)/, timeout: 180_000, screenshot: 'evaluate-task-pick' }
      : undefined);
    firstEvaluation = false;
    // The model's conditions (the defaults, then those of its first evaluation) for every variant: Enter takes them.
    await h.acceptPick(/Evaluation conditions/);
    await h.answerInput(/Examples per task/, EXAMPLES_PER_TASK);
    const done = toast(new RegExp(`${variant}.*average score`));
    // Well under a minute on an idle machine; the e2e suite shares two cores with whatever else runs.
    await done.waitFor({ state: 'visible', timeout: 540_000 }).catch(async () => {
      throw new Error(`no score for ${variant}; notifications: ${JSON.stringify(await h.notifications())}`);
    });
    const text = (await done.locator('.notification-list-item-message').innerText()).trim();
    log(text);
    // Dismiss it so the next evaluation's toast is the only one matching.
    await done.hover();
    await done.locator('.codicon-notifications-clear, .codicon-close').first().click().catch(() => undefined);
    return text;
  }

  it('shows the demo model from the workspace settings', async function () {
    await h.openSidebar('L³Prune');
    const row = h.treeItem(model.name, modelsPane());
    await row.locator('.label-description', { hasText: /\blayers\b/ }).waitFor({ state: 'visible', timeout: 30_000 });
  });

  it('evaluates the full model from the palette', async function () {
    this.timeout(600_000);
    const text = await timed('evaluate full', () =>
      evaluate(`${model.name} · full \\(${model.numLayers} layers\\)`, async () => {
        await h.quickInputRows.filter({ hasText: 'Full model' }).first().click();
      }),
    );
    assert.match(text, /average score \d\.\d{4} over \d+ tasks/);
  });

  it(`evaluates the first ${SMALL_KEEP} layers from the palette`, async function () {
    this.timeout(600_000);
    const text = await timed(`evaluate keep ${SMALL_KEEP}`, () =>
      evaluate(`${model.name} · keep ${SMALL_KEEP} of ${model.numLayers}`, async () => {
        await h.quickInputRows.filter({ hasText: 'Another number of layers' }).first().click();
        await h.answerInput(/layers to keep \(the first n\)/, String(SMALL_KEEP));
      }),
    );
    assert.match(text, /average score/);
    // Both evaluations are runs in the tree, with their average.
    await runsPane().locator('.monaco-list-row[role="treeitem"]').filter({ hasText: /evaluate .*average/ }).nth(1).waitFor({ state: 'visible', timeout: 30_000 });
  });

  it('compares both variants: a row each with every task’s score, and the Pareto plot', async function () {
    this.timeout(120_000);
    await h.runCommand('L3Prune: Compare Variants');
    await h.editorTab('Compare Variants').waitFor({ state: 'visible' });
    web = await h.webview('#variants', 60_000);
    const rows = web.locator('#variants tbody tr.variant-row');
    await rows.nth(1).waitFor({ state: 'attached', timeout: 30_000 });
    assert.equal(await rows.count(), 2, 'one row per evaluation');
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => Number((tr as HTMLElement).dataset.layers))), [model.numLayers, SMALL_KEEP]);
    // Headers break long task names with zero-width spaces; their titles hold the names as they are.
    const taskHeaders = await web.locator('#variants thead th[data-task]').evaluateAll((ths) => ths.map((th) => (th as HTMLElement).dataset.task ?? ''));
    log(`tasks: ${taskHeaders.join(', ')}`);
    assert.ok(taskHeaders.length >= 1, 'at least one task column');
    for (let i = 0; i < 2; i++) {
      const scores = await rows.nth(i).locator('td.score').allInnerTexts();
      assert.equal(scores.length, taskHeaders.length);
      for (const score of scores) assert.match(score, /^-?\d+\.\d{4}$/, `every task has a score (row ${i}: ${scores.join(' ')})`);
      assert.match(await rows.nth(i).locator('td.average').innerText(), /^-?\d+\.\d{4}$/);
    }
    const plot = web.locator('#pareto-plot');
    await plot.locator('canvas').waitFor({ state: 'attached' });
    assert.equal(await plot.getAttribute('data-points'), '2', 'both variants are drawn');
    assert.equal(await plot.getAttribute('data-axis'), 'params');
    const front = Number(await plot.getAttribute('data-front'));
    assert.ok(front >= 1 && front <= 2, `Pareto front of ${front}`);
    assert.equal(await web.locator('#variants tbody tr[data-pareto="true"]').count(), front, 'the table marks the same front');
    // Fewer layers, fewer parameters: the 4-layer variant is the cheapest and so always Pareto-optimal.
    assert.equal(await rows.nth(1).getAttribute('data-pareto'), 'true');
    await h.screenshot('compare-variants-params');

    await web.locator('#cost-axis').selectOption('latency');
    await web.locator('#pareto-plot[data-axis="latency"] canvas').waitFor({ state: 'attached' });
    await h.screenshot('compare-variants-latency');
  });

  it('ignores hostile messages posted from the compare page', async function () {
    this.timeout(90_000);
    await assertPanelIgnoresHostileMessages(h, web, ['ready', 'openRun', 'export'], { seed: 3, watched: [path.join(workspace, '.l3prune')] });
    // The next tests show the panel still works: a row click opens its run, the CSV export writes a file.
  });

  it('opens a variant’s evaluation run from its row', async function () {
    await web.locator(`#variants tbody tr.variant-row[data-layers="${SMALL_KEEP}"]`).click();
    // A row shows its detail in the panel; the detail links to the run.
    await web.locator('#variant-detail #detail-open-run').click();
    await runsPane().locator('.monaco-list-row[role="treeitem"].selected').filter({ hasText: new RegExp(`keep ${SMALL_KEEP}`) }).waitFor({ state: 'visible', timeout: 10_000 });
    await h.screenshot('compare-variants-open-run');
  });

  it('exports the table as CSV through the save dialog', async function () {
    this.timeout(60_000);
    const target = path.join(workspace, 'variants.csv');
    await web.locator('#export-csv').click();
    // The simple save dialog overwrites its box once it has listed the start folder: type after that.
    await h.quickInput.waitFor({ state: 'visible' });
    await h.quickInputRows.first().waitFor({ state: 'visible' });
    await h.quickInput.fill(target);
    await h.page.waitForFunction((value) => document.querySelector<HTMLInputElement>('.quick-input-widget .quick-input-box input')?.value === value, target);
    await h.page.keyboard.press('Enter');
    await web.locator('#export-note[data-exported="csv"]').waitFor({ state: 'attached', timeout: 20_000 });
    const lines = fs.readFileSync(target, 'utf8').trim().split(/\r\n/);
    log(`CSV: ${lines[0]}`);
    assert.equal(lines.length, 3, 'a header and one line per variant');
    assert.match(lines[0], /^run,model,from_run,layers_kept,layers_total,params,bytes,.*,average,latency_ms_per_batch,texts_per_second/);
  });

  it('exports the 4-layer variant to ONNX; its Try Encoder page ignores hostile messages and still compares texts', async function () {
    this.timeout(600_000);
    await timed(`export keep ${SMALL_KEEP}`, async () => {
      await h.runCommand('L3Prune: Export ONNX…');
      await h.quickInputRows.filter({ hasText: model.name }).first().click();
      await h.quickInputRows.filter({ hasText: 'Another number of layers' }).first().click();
      await h.answerInput(/layers to keep \(the first n\)/, String(SMALL_KEEP));
      // fp32, the default: Try Encoder below compares its vectors with torch's at fp32 tolerance.
      await h.pick(/^Precision of the ONNX export/, /^fp32/);
      await toast(/Exported .*ONNX Runtime matches torch/).waitFor({ state: 'visible', timeout: 540_000 });
    });
    // In CI the pick once closed under the click, just after the export (the focus moved; the cause is not known):
    // asked again, as a user would.
    for (let attempt = 1; ; attempt++) {
      await h.runCommand('L3Prune: Try Encoder…');
      try {
        await h.quickInputRows.filter({ hasText: `keep ${SMALL_KEEP}` }).first().click({ timeout: 10_000 });
        break;
      } catch (error) {
        if (attempt >= 2) throw error;
        log('the Try Encoder pick closed before its row was clicked; opening it again');
        await h.page.keyboard.press('Escape');
      }
    }
    const page = await h.webview('#texts', 120_000);
    await assertPanelIgnoresHostileMessages(h, page, ['ready', 'compare'], { seed: 4, watched: [path.join(workspace, '.l3prune')] });
    await page.locator('#texts').fill('A man is playing a guitar.\nSomeone plays music.\nThe stock market fell today.');
    await page.locator('#compare').click();
    await page.locator('#similarity').waitFor({ state: 'attached', timeout: 120_000 });
    await h.screenshot('try-encoder');
  });

  it('exports the 4-layer variant as a sentence-transformers folder with a model card', async function () {
    this.timeout(600_000);
    await timed(`export-st keep ${SMALL_KEEP}`, async () => {
      await h.runCommand('L3Prune: Export Sentence-Transformers Folder…');
      await h.quickInputRows.filter({ hasText: model.name }).first().click();
      await h.quickInputRows.filter({ hasText: 'Another number of layers' }).first().click();
      await h.answerInput(/layers to keep \(the first n\)/, String(SMALL_KEEP));
      await toast(/Exported .*sentence-transformers matches the worker/).waitFor({ state: 'visible', timeout: 540_000 });
    });
    const text = (await toast(/sentence-transformers matches/).locator('.notification-list-item-message').innerText()).trim();
    log(text);
    assert.match(text, new RegExp(`${SMALL_KEEP} of ${model.numLayers} layers.*cosine of at least (0\\.9999|1\\.0000)\\d* on \\d+ texts`));
    await runsPane().locator('.monaco-list-row[role="treeitem"]').filter({ hasText: /export-st / }).first().waitFor({ state: 'visible', timeout: 30_000 });
    await h.screenshot('export-sentence-transformers');
  });
});
