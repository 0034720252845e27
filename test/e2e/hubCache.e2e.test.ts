/**
 * End-to-end: a model in the Hugging Face hub cache, as huggingface_hub lays one out (refs/, snapshots/ of links
 * into blobs/), appears in the Models view's "Hugging Face cache" group by its repo id and opens like any folder:
 * its layer stack read through the snapshot's links. The cache is built from the demo model (test/fixtures/hubCache.ts)
 * and handed to the extension host as HF_HUB_CACHE.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { addSnapshot, COMMIT } from '../fixtures/hubCache';
import { CodeServerHarness, ensureVsix, log } from './harness';
import { closeSuite, keepFailures } from './suite';
import { modelFixture, type ModelFixture } from './fixtures';

const REPO_ID = 'HuggingFaceTB/SmolLM2-135M-Instruct';

describe('Models from the Hugging Face cache in VS Code (code-server)', function () {
  this.bail(true);
  let h: CodeServerHarness;
  let scratch: string;
  let model: ModelFixture;

  before(async function () {
    const vsix = ensureVsix();
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'l3prune-e2e-hub-'));
    const workspace = path.join(scratch, 'workspace');
    fs.mkdirSync(workspace);
    model = modelFixture(scratch);
    const cache = path.join(scratch, 'hf-home', 'hub');
    addSnapshot(cache, REPO_ID, model.dir);
    log(`hub cache: ${cache} (${REPO_ID} from ${model.dir})`);
    h = await CodeServerHarness.start({ workspace, vsix, env: { HF_HUB_CACHE: cache } });
  });

  keepFailures('hub', () => h);
  after(() => closeSuite(h, scratch));

  const modelsPane = () => h.sidebarPane('Models');

  it('lists the cached model by repo id with its branch, commit and size', async function () {
    await h.openSidebar('L³Prune');
    const group = h.treeItem('Hugging Face cache', modelsPane());
    await group.waitFor({ state: 'visible', timeout: 30_000 });
    await h.expandTreeItem(group);
    const cached = h.treeItem(REPO_ID, modelsPane());
    await cached.waitFor({ state: 'visible', timeout: 30_000 });
    const description = await cached.locator('.label-description').innerText();
    assert.match(description, new RegExp(`main · ${COMMIT.slice(0, 7)} · [0-9.]+ (MB|MiB|GB|GiB)`), description);
    await h.screenshot('models-hub-cache-group');
  });

  it('opens it: the model row reads its layers through the snapshot links', async function () {
    await h.treeItem(REPO_ID, modelsPane()).click();
    // The opened model is listed above the cache group under its repo id, with its layer count from config.json.
    const opened = modelsPane().locator('.monaco-list-row[role="treeitem"][aria-level="1"]').filter({ hasText: REPO_ID })
      .filter({ hasText: new RegExp(`\\b${model.numLayers} layers\\b`) });
    await opened.first().waitFor({ state: 'visible', timeout: 60_000 }).catch(async () => {
      throw new Error(`no opened ${REPO_ID} row with ${model.numLayers} layers; notifications: ${JSON.stringify(await h.notifications())}`);
    });
    await h.expandTreeItem(opened.first());
    await h.treeItem(`Layer ${model.numLayers - 1}`, modelsPane()).waitFor({ state: 'visible', timeout: 30_000 }).catch(async () => {
      // A long stack scrolls: the last layer may be below the fold; the first one is always in view.
      await h.treeItem('Layer 0', modelsPane()).waitFor({ state: 'visible', timeout: 5_000 });
    });
    await h.screenshot('models-hub-cache');
  });
});
