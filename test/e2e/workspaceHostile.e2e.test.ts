/**
 * End-to-end: a hostile workspace, as a cloned repository can ship it, in a real VS Code (code-server).
 *  (i) `.l3prune/runs/` holds a "running" run with `"pid": 1` and a heartbeat in 2999 (Cancel would have meant
 *      `kill(-1)`: every process of the user) and one naming the pid of an unrelated live `sleep`: both show as
 *      "unknown — not started here", neither offers Cancel Run, Cancel from the palette finds nothing to cancel,
 *      the `sleep` lives on, the extension host keeps working, and Delete Run removes the shipped folder.
 * (ii) a pickle-only model folder ships `.model.safetensors.index.json.tmp` (and the other temp names the
 *      conversion ever used) as links to a victim file outside the workspace, and a tensor named like a shell
 *      command: after the consent dialog, *Convert Pickle Weights…* writes safetensors and leaves the victim
 *      unchanged.
 *
 * Needs what inspect.e2e.test.ts needs and a worker in .venv (the conversion is a real worker run).
 * Screenshots: test-artifacts/hostile-runs.png, hostile-runs-deleted.png, hostile-convert-consent.png,
 * hostile-convert.png.
 */
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CodeServerHarness, ensureVsix, log, REPO_ROOT, timed } from './harness';
import { keepFailures } from './suite';

const WORKER_PYTHON = path.join(REPO_ROOT, '.venv', 'bin', 'python');
const VICTIM_TEXT = "export PATH=/usr/bin  # the user's own file, which no write may reach\n";
const SHELL_NAME = '$(touch PWNED)`touch PWNED`';

function workerCanConvert(): boolean {
  if (!fs.existsSync(WORKER_PYTHON)) return false;
  return spawnSync(WORKER_PYTHON, ['-m', 'l3prune', 'convert-safetensors', '--help'], { encoding: 'utf8', timeout: 60_000 }).status === 0;
}

/** A run folder as a repository ships it: run.json only, claiming to be running. */
function shipRun(runsDir: string, id: string, pid: number, heartbeatAt: string, keep: number): string {
  const dir = path.join(runsDir, id);
  fs.mkdirSync(dir, { recursive: true });
  const spec = { model: '/nonexistent/shipped-model', data: '/nonexistent/data.jsonl', keep };
  // Written aside and renamed, as a live writer would: the extension never reads half a file.
  const tmp = path.join(dir, '.run.json.tmp');
  fs.writeFileSync(tmp, JSON.stringify({
    schemaVersion: 1, runId: id, verb: 'train', spec, status: 'running', pid,
    startedAt: '2026-01-01T00:00:00.000Z', heartbeatAt, endedAt: null, error: null, result: null,
  }, null, 2));
  fs.renameSync(tmp, path.join(dir, 'run.json'));
  if (!fs.existsSync(path.join(dir, 'events.jsonl'))) fs.writeFileSync(path.join(dir, 'events.jsonl'), '');
  return dir;
}

/** A llama config.json and two pickle shards with their index, written by the worker's own torch. */
function shipPickleModel(dir: string, victim: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    model_type: 'llama', architectures: ['LlamaForCausalLM'], num_hidden_layers: 2, hidden_size: 8, intermediate_size: 16,
    num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 16, tie_word_embeddings: true,
  }));
  const script = [
    'import json, sys, torch',
    'd, odd = sys.argv[1], sys.argv[2]',
    "names = ['model.embed_tokens.weight', 'model.norm.weight'] + [f'model.layers.{i}.{p}.weight' for i in range(2) for p in ('self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj', 'input_layernorm', 'post_attention_layernorm')]",
    'shapes = {n: ((16, 8) if "embed" in n else (8,) if "norm" in n else (16, 8) if ("gate" in n or "up" in n) else (8, 16) if "down" in n else (8, 8)) for n in names}',
    'state = {n: torch.randn(*s) for n, s in shapes.items()}',
    'state[odd] = torch.zeros(2)',
    'keys = sorted(state); wm = {}',
    'for i in range(2):',
    "    name = f'pytorch_model-{i + 1:05d}-of-00002.bin'",
    '    part = {k: state[k] for k in keys[i::2]}',
    "    torch.save(part, f'{d}/{name}')",
    '    wm.update({k: name for k in part})',
    "json.dump({'metadata': {}, 'weight_map': wm}, open(f'{d}/pytorch_model.bin.index.json', 'w'))",
  ].join('\n');
  const made = spawnSync(WORKER_PYTHON, ['-c', script, dir, SHELL_NAME], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(made.status, 0, `writing the pickle model failed: ${made.stderr}`);
  // Every temp name the conversion ever wrote through, each a link to the victim.
  const links = ['.model.safetensors.index.json.tmp', '.model.safetensors.tmp', '.model-00001-of-00002.safetensors.tmp', '.model-00002-of-00002.safetensors.tmp'];
  for (const name of links) fs.symlinkSync(victim, path.join(dir, name));
  return links;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('A hostile workspace in VS Code (code-server)', function () {
  this.bail(true);

  let h: CodeServerHarness;
  let scratch: string;
  let workspace: string;
  let runsDir: string;
  let victim: string;
  let sleeper: ChildProcess;
  let pickleModel: string;
  let plantedLinks: string[];
  // Keeps the foreign-pid run's heartbeat fresh while its "unknown" state is checked (stale, it reads as failed).
  let heartbeat: NodeJS.Timeout | undefined;
  const started = Date.now();

  before(async function () {
    if (!workerCanConvert()) {
      if (process.env.CI) assert.fail('a worker with the convert-safetensors verb is installed by scripts/setup.sh');
      this.skip();
    }
    const vsix = ensureVsix();
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'l3prune-e2e-hostile-'));
    workspace = path.join(scratch, 'workspace');
    runsDir = path.join(workspace, '.l3prune', 'runs');
    victim = path.join(scratch, 'home', '.bashrc');
    fs.mkdirSync(path.dirname(victim), { recursive: true });
    fs.writeFileSync(victim, VICTIM_TEXT);
    // An unrelated live process whose pid a shipped run names; it must outlive every click below.
    sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
    await new Promise<void>((resolve, reject) => { sleeper.once('spawn', resolve); sleeper.once('error', reject); });
    // Told apart in the tree by their keep (the label is "<model> · keep <n>"). The foreign-pid run gets its
    // fresh heartbeat once the window is up (a stale one would simply read as failed).
    shipRun(runsDir, 'shipped-pid-1', 1, '2999-01-01T00:00:00.000Z', 2);
    pickleModel = path.join(workspace, 'models', 'shipped-pickles');
    plantedLinks = shipPickleModel(pickleModel, victim);
    h = await CodeServerHarness.start({ workspace, vsix, machineSettings: { 'l3prune.pythonPath': WORKER_PYTHON } });
  });

  keepFailures('hostile', () => h);

  after(async function () {
    clearInterval(heartbeat);
    await h?.dispose();
    if (sleeper?.pid && sleeper.exitCode === null) sleeper.kill('SIGKILL');
    if (scratch && !process.env.E2E_KEEP_TMP) fs.rmSync(scratch, { recursive: true, force: true });
    log(`hostile e2e total: ${((Date.now() - started) / 1000).toFixed(1)}s`);
  });

  const runsPane = () => h.sidebarPane('Runs');
  const runRow = (text: RegExp) => runsPane().locator('.monaco-list-row[role="treeitem"]').filter({ hasText: text });
  const toast = (text: RegExp) => h.page.locator('.notifications-toasts .notification-list-item').filter({ hasText: text });
  const contextMenu = () => h.page.locator('.context-view .monaco-menu');
  const menuItem = (label: string) => contextMenu().locator('.action-item .action-label', { hasText: new RegExp(`^\\s*${label}\\s*$`) });

  /** Drags the sidebar's edge so a run's whole status fits in the screenshots. */
  async function widenSidebar(by: number): Promise<void> {
    const box = await h.page.locator('.part.sidebar').boundingBox();
    if (!box) return;
    const x = box.x + box.width - 1;
    const y = box.y + box.height / 2;
    await h.page.mouse.move(x, y);
    await h.page.mouse.down();
    await h.page.mouse.move(x + by, y, { steps: 8 });
    await h.page.mouse.up();
  }

  /** The labels of a row's context menu (left open). */
  async function contextMenuOf(row: ReturnType<typeof runRow>): Promise<string[]> {
    await row.locator('.label-name').click({ button: 'right' });
    await contextMenu().waitFor({ state: 'visible', timeout: 10_000 });
    const labels = (await contextMenu().locator('.action-item .action-label').allInnerTexts()).map((l) => l.trim()).filter(Boolean);
    return labels;
  }

  it('shows both shipped "running" runs as unknown, not started here, without Cancel', async function () {
    const beat = () => shipRun(runsDir, 'shipped-foreign-pid', sleeper.pid!, new Date().toISOString(), 3);
    beat();
    heartbeat = setInterval(beat, 5_000);
    await h.openSidebar('L³Prune');
    await runsPane().waitFor({ state: 'visible' });
    await widenSidebar(260);
    const rows = runRow(/unknown — not started here/);
    await rows.nth(1).waitFor({ state: 'visible', timeout: 30_000 }).catch(async () => {
      throw new Error(`runs shown: ${JSON.stringify(await runsPane().locator('.monaco-list-row[role="treeitem"]').allInnerTexts())}`);
    });
    assert.equal(await rows.count(), 2, 'both shipped runs are unknown');
    assert.equal(await runsPane().locator('.monaco-list-row[role="treeitem"] .codicon-sync').count(), 0, 'no run spins as running');
    for (let i = 0; i < 2; i++) {
      // No inline Cancel button on the row.
      await rows.nth(i).hover();
      assert.equal(await rows.nth(i).locator('.action-label[aria-label^="Cancel Run"]').count(), 0, 'no inline Cancel Run');
      const labels = await contextMenuOf(rows.nth(i));
      log(`context menu of row ${i}: ${labels.join(' | ')}`);
      assert.ok(!labels.includes('Cancel Run'), `Cancel Run is not offered (menu: ${labels.join(', ')})`);
      assert.ok(labels.includes('Delete Run'), `Delete Run is offered (menu: ${labels.join(', ')})`);
      if (i === 0) await h.screenshot('hostile-runs');
      await h.page.keyboard.press('Escape');
      await contextMenu().waitFor({ state: 'hidden' });
    }
  });

  it('finds nothing to cancel from the palette; nothing was signalled', async function () {
    await h.runCommand('L3Prune: Cancel Run');
    await toast(/There is no run to cancel/).waitFor({ state: 'visible', timeout: 15_000 }).catch(async () => {
      throw new Error(`no "nothing to cancel" notice; notifications: ${JSON.stringify(await h.notifications())}`);
    });
    assert.ok(alive(sleeper.pid!), 'the unrelated sleep process named by a shipped run is alive');
    assert.equal(sleeper.signalCode, null, 'and was never signalled');
    clearInterval(heartbeat);
  });

  it('deletes the pid-1 run from its context menu and the other from the palette; the host keeps working', async function () {
    this.timeout(120_000);
    const dialog = h.page.locator('.monaco-dialog-box');
    const confirmDelete = async (what: RegExp) => {
      await dialog.waitFor({ state: 'visible', timeout: 15_000 }).catch(async () => {
        throw new Error(`no delete confirmation; notifications: ${JSON.stringify(await h.notifications())}`);
      });
      assert.match(await dialog.innerText(), what);
      await dialog.locator('.monaco-button', { hasText: /^Delete$/ }).click();
      await dialog.waitFor({ state: 'hidden' });
    };
    const pid1Row = runRow(/keep 2.*unknown — not started here/);
    const labels = await contextMenuOf(pid1Row);
    assert.ok(labels.includes('Delete Run'), labels.join(', '));
    // A menu item takes a click as a person makes it: pointed at first, then pressed. Playwright's instant
    // click on a menu that has just opened is not taken (the menu stays open and nothing runs).
    await menuItem('Delete Run').hover();
    await h.page.waitForTimeout(300);
    await menuItem('Delete Run').click({ delay: 50 });
    await confirmDelete(/Delete run shipped-pid-1 /);
    await pid1Row.waitFor({ state: 'detached', timeout: 20_000 });
    assert.ok(!fs.existsSync(path.join(runsDir, 'shipped-pid-1')), 'the pid-1 run folder was deleted');

    // From the palette, with nothing selected in the Runs view: a pick among the runs that can be deleted.
    await h.runCommand('L3Prune: Delete Run');
    const choice = h.quickInputRows.filter({ hasText: 'shipped-foreign-pid' });
    await choice.first().waitFor({ state: 'visible', timeout: 15_000 });
    await choice.first().locator('input[type="checkbox"], .monaco-checkbox, .quick-input-list-checkbox').first().click();
    await h.page.keyboard.press('Enter');
    await confirmDelete(/Delete run shipped-foreign-pid /);
    await runRow(/keep 3.*unknown — not started here/).waitFor({ state: 'detached', timeout: 20_000 });
    assert.ok(!fs.existsSync(path.join(runsDir, 'shipped-foreign-pid')), 'the foreign-pid run folder was deleted');
    assert.ok(alive(sleeper.pid!) && sleeper.signalCode === null, 'the sleep process still lives, never signalled');
    // The sidebar Loss view forgets the deleted runs instead of linking to them.
    const lossView = await h.webview('#app');
    await lossView.locator('.run-links a').first().waitFor({ state: 'detached', timeout: 15_000 }).catch(async () => {
      throw new Error(`the Loss view still links to ${JSON.stringify(await lossView.locator('.run-links a').allInnerTexts())}`);
    });
    await h.screenshot('hostile-runs-deleted');
  });

  it('converts a shipped pickle-only model after consent without writing through its planted links', async function () {
    this.timeout(300_000);
    await h.runCommand('L3Prune: Convert Pickle Weights to Safetensors…');
    await h.pickFolderInSimpleDialog(pickleModel);
    const dialog = h.page.locator('.monaco-dialog-box');
    await dialog.waitFor({ state: 'visible', timeout: 15_000 });
    assert.match(await dialog.innerText(), /Convert the pickle weights of shipped-pickles/);
    await h.screenshot('hostile-convert-consent');
    await dialog.locator('.monaco-button', { hasText: /^Convert$/ }).click();
    await timed('convert', async () => {
      const index = path.join(pickleModel, 'model.safetensors.index.json');
      const deadline = Date.now() + 240_000;
      while (!fs.existsSync(index) && Date.now() < deadline) {
        const failed = (await h.notifications()).find((n) => /conver|fail|error/i.test(n) && !/^Converting/.test(n));
        if (failed) throw new Error(`conversion failed: ${failed}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.ok(fs.existsSync(index), `no index after the conversion; notifications: ${JSON.stringify(await h.notifications())}`);
    });
    // The model opens in the Models tree once converted.
    await h.treeItem('shipped-pickles', h.sidebarPane('Models')).waitFor({ state: 'visible', timeout: 60_000 });
    assert.equal(fs.readFileSync(victim, 'utf8'), VICTIM_TEXT, 'the victim file is unchanged');
    for (const name of plantedLinks) assert.equal(fs.readlinkSync(path.join(pickleModel, name)), victim, `${name} is left as it was`);
    const index = JSON.parse(fs.readFileSync(path.join(pickleModel, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    assert.ok(index.weight_map[SHELL_NAME], 'the odd tensor name is data in the index, nothing more');
    for (const f of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
      assert.ok(fs.lstatSync(path.join(pickleModel, f)).isFile(), `${f} is a regular file`);
    }
    assert.ok(!fs.existsSync(path.join(pickleModel, 'PWNED')) && !fs.existsSync(path.join(workspace, 'PWNED')), 'no command ran');
    await h.screenshot('hostile-convert');
  });
});
