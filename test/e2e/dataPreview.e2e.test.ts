/**
 * End-to-end: "L³Prune: Preview Training Data…" on the demo triples, saved by pandas as a Parquet file with
 * sentence-transformers' column names (anchor/positive/negative): the panel shows the format, the mapped columns,
 * the task table, three samples as the model sees them and the token-length histogram with its max-length line;
 * a recount at another max length; hostile messages from the page are ignored. Screenshots in test-artifacts/.
 *
 * Needs what inspect.e2e.test.ts needs plus the demo model and data and a worker in .venv with preview-data.
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
const DEMO_TRIPLES = path.join(REPO_ROOT, '.demo', 'data', 'triples.jsonl');
const ROWS = 1000;

describe('Preview training data in VS Code (code-server)', function () {
  this.bail(true);

  let h: CodeServerHarness;
  let model: ModelFixture;
  let scratch: string;
  let workspace: string;
  let data: string;
  let web: FrameLocator;
  const started = Date.now();

  before(async function () {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'l3prune-e2e-preview-'));
    model = modelFixture(scratch);
    const probe = fs.existsSync(WORKER_PYTHON) && spawnSync(WORKER_PYTHON, ['-m', 'l3prune', 'preview-data', '--help'], { encoding: 'utf8', timeout: 60_000 }).status === 0;
    if (model.synthetic || model.dir !== DEMO_MODEL_DIR || !probe || !fs.existsSync(DEMO_TRIPLES)) {
      if (process.env.CI) assert.fail('the demo model and data and a worker with preview-data are installed by scripts/setup.sh');
      this.skip();
    }
    workspace = path.join(scratch, 'workspace');
    fs.mkdirSync(workspace);
    data = path.join(workspace, 'triples.parquet');
    const write = spawnSync(WORKER_PYTHON, ['-c', [
      'import sys, pandas as pd',
      `df = pd.read_json(sys.argv[1], lines=True).head(${ROWS}).rename(columns={"query": "anchor"})`,
      'df.to_parquet(sys.argv[2], index=False)',
    ].join('\n'), DEMO_TRIPLES, data], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(write.status, 0, write.stderr);
    const vsix = ensureVsix();
    h = await CodeServerHarness.start({
      workspace,
      vsix,
      settings: { 'l3prune.models': [model.dir], 'l3prune.dataFile': data },
      machineSettings: { 'l3prune.pythonPath': WORKER_PYTHON },
    });
  });

  keepFailures('preview', () => h);

  after(async function () {
    await closeSuite(h, scratch);
    log(`data preview e2e total: ${((Date.now() - started) / 1000).toFixed(1)}s`);
  });

  it('shows the demo model from the workspace settings', async function () {
    await h.openSidebar('L³Prune');
    const row = h.treeItem(model.name, h.sidebarPane('Models'));
    await row.locator('.label-description', { hasText: /\blayers\b/ }).waitFor({ state: 'visible', timeout: 30_000 });
  });

  it('previews the Parquet triples: format, mapped columns, tasks, samples and the histogram', async function () {
    this.timeout(300_000);
    await timed('preview data', async () => {
      await h.runCommand('L3Prune: Preview Training Data…');
      await h.quickInputRows.filter({ hasText: 'triples.parquet' }).first().click();
      await h.editorTab(/^Preview: triples\.parquet/).waitFor({ state: 'visible', timeout: 30_000 });
      // The page's own ids (#app is every page's root, the Loss view's too): the report, or the worker's sentence.
      web = await h.webview('#facts, #preview-error', 240_000);
      const error = await web.locator('#preview-error').innerText({ timeout: 1_000 }).catch(() => undefined);
      if (error) throw new Error(`the preview failed: ${error}`);
      await web.locator('#length-histogram').waitFor({ state: 'attached' });
    });
    const facts = await web.locator('#facts').innerText();
    log(`facts: ${facts.replace(/\s+/g, ' ')}`);
    assert.match(facts, /Parquet file/);
    assert.match(facts, /query ← anchor/);
    assert.match(facts, /1,000/);
    const tasks = web.locator('#tasks tbody tr');
    assert.equal(await tasks.count(), 1);
    assert.match(await tasks.first().innerText(), /wordnet-sense\s+1,000\s+100/);
    assert.equal(await web.locator('article.sample').count(), 3);
    assert.match(await web.locator('article.sample pre').first().innerText(), /<\|im_start\|>user/, 'samples as the model sees them: inside the chat user turn');
    const hist = web.locator('#length-histogram');
    assert.equal(await hist.getAttribute('data-max-length'), '512');
    assert.ok(Number(await hist.getAttribute('data-bins')) >= 5, 'the bins spread over the texts');
    assert.ok((await hist.locator('rect.bar').count()) >= 5, 'bars are drawn');
    assert.match(await web.locator('#truncated').innerText(), /No text is longer than 512 tokens/);
    await h.screenshot('data-preview-512');
  });

  it('counts again at max length 16: the cut texts are counted and their bars marked', async function () {
    this.timeout(300_000);
    await web.locator('#max-length').fill('16');
    await web.locator('#recount').click();
    await web.locator('#length-histogram[data-max-length="16"], #preview-error').first().waitFor({ state: 'attached', timeout: 240_000 });
    const error = await web.locator('#preview-error').innerText({ timeout: 1_000 }).catch(() => undefined);
    if (error) throw new Error(`the recount failed: ${error}`);
    const truncated = Number(await web.locator('#truncated').getAttribute('data-truncated'));
    log(`texts over 16 tokens: ${truncated}`);
    assert.ok(truncated > 0 && truncated < 3 * ROWS);
    assert.match(await web.locator('#truncated').innerText(), /are longer than 16 tokens and are cut/);
    assert.ok((await web.locator('#length-histogram rect.bar.cut').count()) >= 1, 'bars past the line are marked');
    await web.locator('#length-histogram line.max-length').waitFor({ state: 'attached' });
    await h.screenshot('data-preview-16');
  });

  it('ignores hostile messages posted from the preview page', async function () {
    this.timeout(90_000);
    await assertPanelIgnoresHostileMessages(h, web, ['ready', 'recount'], { seed: 13, watched: [workspace] });
  });
});
