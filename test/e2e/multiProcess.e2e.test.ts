/**
 * End-to-end: a two-process training run launched from the workspace's tasks.json (`devices: "cpu:2"`, gloo),
 * as a user with several GPUs launches one with `cuda:0,1`: Tasks: Run Task starts the worker's torchrun, the run
 * appears in the Runs view and finishes there, and its folder shows one launcher and two ranks.
 * The model is the worker tests' tiny Llama (worker/tests/conftest.py), so the run takes seconds of compute.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CodeServerHarness, ensureVsix, REPO_ROOT, timed } from './harness';
import { closeSuite, keepFailures, writeTinyLlama } from './suite';

const WORKER_PYTHON = path.join(REPO_ROOT, '.venv', 'bin', 'python');
const STEPS = 6;

describe('A two-process training run from tasks.json in VS Code (code-server)', function () {
  this.bail(true);
  let h: CodeServerHarness;
  let scratch: string;
  let workspace: string;

  before(async function () {
    if (!fs.existsSync(WORKER_PYTHON)) {
      if (process.env.CI) assert.fail('the worker environment .venv is installed by scripts/setup.sh');
      this.skip();
    }
    const vsix = ensureVsix();
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'l3prune-e2e-mp-'));
    workspace = path.join(scratch, 'workspace');
    const model = path.join(workspace, 'tiny-llama');
    const data = path.join(workspace, 'triples.jsonl');
    fs.mkdirSync(path.join(workspace, '.vscode'), { recursive: true });
    writeTinyLlama(WORKER_PYTHON, model, data);
    const task = {
      type: 'l3prune', label: 'train on two processes', verb: 'train', model, keep: 2, data, steps: STEPS, devices: 'cpu:2',
      recipe: { batchSize: 2, maxLength: 16, warmupSteps: 0, checkpointEvery: 3, mergeAtEnd: false },
      problemMatcher: [],
    };
    fs.writeFileSync(path.join(workspace, '.vscode', 'tasks.json'), JSON.stringify({ version: '2.0.0', tasks: [task] }, null, 2));
    h = await CodeServerHarness.start({
      workspace,
      vsix,
      machineSettings: { 'l3prune.pythonPath': WORKER_PYTHON },
      env: { OMP_NUM_THREADS: '1', L3PRUNE_LOCK_DIR: path.join(scratch, 'locks') },
    });
  });

  keepFailures('mp', () => h);
  after(() => closeSuite(h, scratch));

  it('runs the task on two processes to the end and shows it in the Runs view', async function () {
    this.timeout(600_000);
    await h.openSidebar('L³Prune');
    await timed('two-process task', async () => {
      await h.runCommand('Tasks: Run Task');
      await h.quickInputRows.filter({ hasText: 'train on two processes' }).first().click();
      const row = h.sidebarPane('Runs').locator('.monaco-list-row[role="treeitem"]').filter({ hasText: /keep 2/ }).first();
      await row.waitFor({ state: 'visible', timeout: 120_000 });
      const deadline = Date.now() + 480_000;
      for (;;) {
        const text = (await row.locator('.label-description').innerText().catch(() => '')).trim();
        if (new RegExp(`step ${STEPS}/${STEPS} · loss [\\d.]+ · succeeded`).test(text)) break;
        if (/failed|cancelled/.test(text) || Date.now() > deadline) throw new Error(`run row says "${text}"`);
        await h.page.waitForTimeout(500);
      }
    });
    await h.screenshot('multi-process-task');
    const runsDir = path.join(workspace, '.l3prune', 'runs');
    const trainDir = fs.readdirSync(runsDir).find((name) => name.startsWith('train-'));
    assert.ok(trainDir, `a train-* folder in ${runsDir}`);
    const dir = path.join(runsDir, trainDir);
    const run = JSON.parse(fs.readFileSync(path.join(dir, 'run.json'), 'utf8'));
    assert.equal(run.status, 'succeeded');
    assert.equal(run.spec.devices, 'cpu:2');
    const ranks = fs.readdirSync(path.join(dir, 'ranks')).filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(fs.readFileSync(path.join(dir, 'ranks', f), 'utf8')) as { pid: number });
    assert.equal(ranks.length, 2, 'two ranks');
    assert.ok(ranks.every((r) => r.pid !== run.pid), 'run.json names the launcher, not a rank');
    const events = fs.readFileSync(path.join(dir, 'events.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const loaded = events.find((e) => e.event === 'model_loaded');
    assert.equal(loaded?.worldSize, 2, 'both ranks share each batch');
    assert.deepEqual(events.filter((e) => e.event === 'step').map((e) => e.step), Array.from({ length: STEPS }, (_, i) => i + 1));
  });
});
