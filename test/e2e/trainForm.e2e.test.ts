/**
 * End-to-end: "L3Prune: Prune and Finetune…" opens one training form. On this CPU machine it starts at the CPU
 * defaults; 40 steps make warm-up 12 and checkpoint-every 4 follow and move the plan; a data file that is not
 * JSONL is refused in the host with its first line quoted and no run folder made; a short run starts with a good
 * file and the worker's run.json holds what the form said; the form reopens with the values remembered.
 * Screenshots: test-artifacts/train-form.png, train-form-bad-data.png, train-form-remembered.png.
 *
 * Needs the demo model and data and a worker in .venv (scripts/setup.sh).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FrameLocator } from 'playwright-core';
import { CodeServerHarness, ensureVsix, expectText, log, REPO_ROOT } from './harness';
import { closeSuite, keepFailures } from './suite';
import { assertPanelIgnoresHostileMessages, DEMO_MODEL_DIR, modelFixture, type ModelFixture } from './fixtures';

const WORKER_PYTHON = path.join(REPO_ROOT, '.venv', 'bin', 'python');
const DEMO_TRIPLES = path.join(REPO_ROOT, '.demo', 'data', 'triples.jsonl');

describe('The training form in VS Code (code-server)', function () {
  this.bail(true);

  let h: CodeServerHarness;
  let model: ModelFixture;
  let scratch: string;
  let workspace: string;
  let bad: string;
  let good: string;
  let web: FrameLocator;
  const runsDir = () => path.join(workspace, '.l3prune', 'runs');
  const runFolders = () => (fs.existsSync(runsDir()) ? fs.readdirSync(runsDir()) : []);
  const value = (field: string) => web.locator(`#field-${field}`).inputValue();
  // The plan box is sticky: from the top, a screenshot shows the header, the plan and the data group.
  const shoot = async (name: string) => {
    await web.locator('body').evaluate(() => window.scrollTo(0, 0));
    await h.screenshot(name);
  };

  async function openForm(): Promise<void> {
    await h.runCommand('L3Prune: Prune and Finetune…');
    web = await h.webview('#train-form', 120_000);
    await web.locator('#plan[data-fits]').waitFor({ state: 'attached', timeout: 60_000 });
  }

  before(async function () {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'l3prune-e2e-trainform-'));
    model = modelFixture(scratch);
    if (model.synthetic || model.dir !== DEMO_MODEL_DIR || !fs.existsSync(WORKER_PYTHON) || !fs.existsSync(DEMO_TRIPLES)) {
      if (process.env.CI) assert.fail('the demo model and data and the worker environment are installed by scripts/setup.sh');
      this.skip();
    }
    workspace = path.join(scratch, 'workspace');
    fs.mkdirSync(workspace);
    // A CSV saved under a .jsonl name: the mistake the host must catch before a worker starts.
    bad = path.join(workspace, 'bad.jsonl');
    fs.writeFileSync(bad, 'query,positive,negative\na query,a positive,a negative\n');
    good = path.join(workspace, 'good.jsonl');
    fs.writeFileSync(good, fs.readFileSync(DEMO_TRIPLES, 'utf8').split('\n').slice(0, 64).join('\n') + '\n');
    h = await CodeServerHarness.start({
      workspace,
      vsix: ensureVsix(),
      settings: { 'l3prune.models': [model.dir], 'l3prune.dataFile': good },
      machineSettings: { 'l3prune.pythonPath': WORKER_PYTHON },
    });
    await h.openSidebar('L³Prune');
    await h.treeItem(model.name, h.sidebarPane('Models')).locator('.label-description', { hasText: /\blayers\b/ }).waitFor({ state: 'visible', timeout: 60_000 });
  });

  keepFailures('train-form', () => h);

  after(() => closeSuite(h, scratch));

  it('opens one form with every recipe group and the CPU defaults', async function () {
    this.timeout(240_000);
    await openForm();
    assert.match(await web.locator('#machine').innerText(), /no CUDA device/);
    const groups = await web.locator('fieldset.form-group legend').allInnerTexts();
    assert.deepEqual(groups, ['Data', 'Cut', 'Schedule', 'LoRA', 'Loss and pooling', 'Precision and memory', 'Devices', 'Output']);
    assert.deepEqual(
      [await value('batchSize'), await value('maxLength'), await value('steps'), await value('warmupSteps'), await value('checkpointEvery')],
      ['8', '64', '200', '60', '20'],
    );
    assert.equal(await value('data'), good, 'the configured data file');
    assert.equal(await value('keep'), String(model.numLayers), 'no cut chosen yet: every layer');
    await expectText(web.locator('#plan'), /peak [\d.]+ GiB — fits/);
  });

  it('makes warm-up and checkpoint interval follow 40 steps, and the plan follows the recipe', async function () {
    this.timeout(60_000);
    const before = await web.locator('#plan').innerText();
    await web.locator('#field-steps').fill('40');
    await web.locator('#field-warmupSteps[data-set="false"]').waitFor({ state: 'attached' });
    const deadline = Date.now() + 20_000;
    while ((await value('warmupSteps')) !== '12' && Date.now() < deadline) await h.page.waitForTimeout(200);
    assert.deepEqual([await value('warmupSteps'), await value('checkpointEvery')], ['12', '4']);
    assert.equal(await web.locator('#follow-warmupSteps').textContent(), 'follows the steps');
    await web.locator('#field-batchSize').fill('16');
    let after = before;
    while (after === before && Date.now() < deadline) {
      await h.page.waitForTimeout(200);
      after = await web.locator('#plan').innerText();
    }
    log(`plan: ${before} → ${after}`);
    assert.notEqual(after, before, 'the plan changed with the batch');
    await shoot('train-form');
  });

  it('refuses a data file that is not JSONL in the host, quoting its first line, and spawns nothing', async function () {
    this.timeout(60_000);
    const folders = runFolders();
    await web.locator('#field-data').fill(bad);
    await web.locator('#field-data').press('Tab');
    const problem = await expectText(web.locator('#problem-data'), /bad\.jsonl:1: not valid JSON, “query,positive,negative”/);
    log(`data problem: ${problem}`);
    await web.locator('#start').click();
    await expectText(web.locator('#status'), /^Not started: .*bad\.jsonl:1/);
    await h.page.waitForTimeout(2_000);
    assert.deepEqual(runFolders(), folders, 'no run folder was made');
    await shoot('train-form-bad-data');
  });

  it('ignores hostile messages posted from the form', async function () {
    this.timeout(90_000);
    await assertPanelIgnoresHostileMessages(h, web, ['ready', 'edit', 'browseData', 'previewData', 'reset', 'start', 'cancel'], { seed: 14, watched: [path.join(workspace, '.l3prune')] });
  });

  it('starts a short run with a good file: the worker’s run.json holds the form’s recipe', async function () {
    this.timeout(420_000);
    await web.locator('#field-data').fill(good);
    await web.locator('#field-data').press('Tab');
    await web.locator('#field-steps').fill('2');
    await web.locator('#field-batchSize').fill('4');
    await web.locator('#field-maxLength').fill('32');
    await web.locator('#field-pooling').selectOption('mean');
    await web.locator('#problem-data:empty').waitFor({ state: 'attached', timeout: 20_000 });
    await h.page.waitForTimeout(1_000);
    await web.locator('#start').click();
    const deadline = Date.now() + 180_000;
    let spec: Record<string, unknown> | undefined;
    while (!spec && Date.now() < deadline) {
      await h.page.waitForTimeout(500);
      for (const folder of runFolders()) {
        const file = path.join(runsDir(), folder, 'run.json');
        if (fs.existsSync(file)) spec = (JSON.parse(fs.readFileSync(file, 'utf8')) as { spec: Record<string, unknown> }).spec;
      }
    }
    assert.ok(spec, 'a run folder with run.json appeared');
    log(`run spec: ${JSON.stringify(spec)}`);
    assert.deepEqual(
      [spec.steps, spec.batchSize, spec.maxLength, spec.warmupSteps, spec.checkpointEvery, spec.pooling, spec.data],
      [2, 4, 32, 1, 1, 'mean', good],
    );
    // The run trains to its end (no worker is left behind when the window closes).
    let status = 'running';
    while (status === 'running' && Date.now() < deadline + 120_000) {
      await h.page.waitForTimeout(1_000);
      for (const folder of runFolders()) status = (JSON.parse(fs.readFileSync(path.join(runsDir(), folder, 'run.json'), 'utf8')) as { status: string }).status;
    }
    log(`run status: ${status}`);
    assert.equal(status, 'succeeded');
  });

  it('reopens with the values remembered for this model', async function () {
    this.timeout(240_000);
    await openForm();
    await expectText(web.locator('#remembered'), /values of your last run/);
    assert.deepEqual(
      [await value('steps'), await value('batchSize'), await value('maxLength'), await value('pooling'), await value('warmupSteps'), await value('data')],
      ['2', '4', '32', 'mean', '1', good],
    );
    await shoot('train-form-remembered');
    await web.locator('#reset').click();
    await expectText(web.locator('#status'), /back at its default/);
    assert.equal(await value('batchSize'), '8');
  });
});
