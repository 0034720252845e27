/**
 * End-to-end: the flow between views (issue 14, item 5), with training runs launched from the workspace's tasks.json.
 *  - a finished training's notification offers the next steps (Evaluate…, both exports, Compare Variants), and its
 *    Compare Variants button opens the comparison;
 *  - the progress notification's Cancel asks first (a modal), and the cancelled run ends the task terminal with
 *    "cancelled at step k — resume with …" and exit code 0, not the failure mark;
 *  - the L³Prune output channel logs each worker launch (verb, pid, run folder, full command line) and its end with
 *    its reason, and the worker-package probe ran once for the two jobs.
 * The model is the worker tests' tiny Llama (worker/tests/conftest.py), so each run takes seconds of compute.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CodeServerHarness, ensureVsix, log, REPO_ROOT, timed } from './harness';
import { closeSuite, keepFailures, stopDetachedWorkers, writeTinyLlama } from './suite';

const WORKER_PYTHON = path.join(REPO_ROOT, '.venv', 'bin', 'python');
/** Every run here trains the tiny model at keep 2: notifications and dialogs name it by its name, not its folder. */
const RUN_NAME = 'tiny-llama · keep 2 · \\d{2}:\\d{2}';

describe('The flow between views in VS Code (code-server)', function () {
  this.bail(true);
  let h: CodeServerHarness;
  let scratch: string;
  let workspace: string;
  let runsDir: string;

  const toast = (text: RegExp) => h.page.locator('.notifications-toasts .notification-list-item').filter({ hasText: text });
  const trainDirs = () => (fs.existsSync(runsDir) ? fs.readdirSync(runsDir).filter((n) => n.startsWith('train-')).sort() : []);
  const readRun = (name: string) => JSON.parse(fs.readFileSync(path.join(runsDir, name, 'run.json'), 'utf8')) as { status: string; pid: number };

  async function runTask(label: string): Promise<string> {
    const before = new Set(trainDirs());
    await h.runCommand('Tasks: Run Task');
    await h.quickInputRows.filter({ hasText: label }).first().click();
    const deadline = Date.now() + 120_000;
    for (;;) {
      const fresh = trainDirs().find((n) => !before.has(n) && fs.existsSync(path.join(runsDir, n, 'run.json')));
      if (fresh) return fresh;
      if (Date.now() > deadline) throw new Error(`no new run folder for "${label}"; notifications: ${JSON.stringify(await h.notifications())}`);
      await h.page.waitForTimeout(300);
    }
  }

  before(async function () {
    if (!fs.existsSync(WORKER_PYTHON)) {
      if (process.env.CI) assert.fail('the worker environment .venv is installed by scripts/setup.sh');
      this.skip();
    }
    const vsix = ensureVsix();
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'l3prune-e2e-flow-'));
    workspace = path.join(scratch, 'workspace');
    runsDir = path.join(workspace, '.l3prune', 'runs');
    const model = path.join(workspace, 'tiny-llama');
    const data = path.join(workspace, 'triples.jsonl');
    fs.mkdirSync(path.join(workspace, '.vscode'), { recursive: true });
    writeTinyLlama(WORKER_PYTHON, model, data);
    const recipe = { batchSize: 2, maxLength: 16, warmupSteps: 0, mergeAtEnd: false };
    const tasks = [
      { type: 'l3prune', label: 'flow: short run', verb: 'train', model, keep: 2, data, steps: 4, recipe: { ...recipe, checkpointEvery: 2 }, problemMatcher: [] },
      // Long enough to be cancelled while it runs; a checkpoint every few steps, as a real run has.
      { type: 'l3prune', label: 'flow: long run', verb: 'train', model, keep: 2, data, steps: 5000, recipe: { ...recipe, checkpointEvery: 3 }, problemMatcher: [] },
    ];
    fs.writeFileSync(path.join(workspace, '.vscode', 'tasks.json'), JSON.stringify({ version: '2.0.0', tasks }, null, 2));
    h = await CodeServerHarness.start({
      workspace,
      vsix,
      // The DOM renderer, so the task terminal's text can be read.
      settings: { 'terminal.integrated.gpuAcceleration': 'off', 'l3prune.models': [model], 'l3prune.dataFile': data },
      machineSettings: { 'l3prune.pythonPath': WORKER_PYTHON },
      env: { OMP_NUM_THREADS: '1', L3PRUNE_LOCK_DIR: path.join(scratch, 'locks') },
    });
  });

  keepFailures('flow', () => h);

  after(async function () {
    await closeSuite(h, scratch, () => runsDir && stopDetachedWorkers(runsDir));
  });

  let shortRun = '';

  it('a finished training offers Evaluate, Export and Compare, and Compare Variants opens the comparison', async function () {
    this.timeout(420_000);
    await h.openSidebar('L³Prune');
    shortRun = await timed('short run', () => runTask('flow: short run'));
    const done = toast(new RegExp(`${RUN_NAME} trained`));
    await done.waitFor({ state: 'visible', timeout: 300_000 }).catch(async () => {
      throw new Error(`no "trained" notification; notifications: ${JSON.stringify(await h.notifications())}`);
    });
    const buttons = (await done.locator('.monaco-button').allInnerTexts()).map((b) => b.trim()).filter(Boolean);
    log(`trained notification: ${(await done.locator('.notification-list-item-message').innerText()).trim()} [${buttons.join(' | ')}]`);
    for (const b of ['Evaluate…', 'Export ONNX…', 'Export ST…', 'Compare']) assert.ok(buttons.includes(b), `"${b}" in ${JSON.stringify(buttons)}`);
    assert.match(await done.innerText(), /4\/4 steps, final loss \d/);
    await h.screenshot('flow-next-steps');
    assert.equal(readRun(shortRun).status, 'succeeded');
    // Each button shows its whole label (four share the toast's width).
    for (const button of await done.locator('.monaco-button').all()) {
      const fits = await button.evaluate((b) => b.scrollWidth <= b.clientWidth + 1);
      assert.ok(fits, `"${await button.innerText()}" is cut`);
    }
    await done.locator('.monaco-button', { hasText: /^Compare$/ }).click();
    await h.editorTab('Compare Variants').waitFor({ state: 'visible', timeout: 30_000 });
  });

  let longRun = '';

  it('the progress notification’s Cancel asks first, and the terminal ends with "cancelled" and exit code 0', async function () {
    this.timeout(420_000);
    await h.runCommand('Notifications: Clear All Notifications');
    longRun = await runTask('flow: long run');
    // Cancel once it is training: a step done and a checkpoint written, as a user's run would have.
    const deadline = Date.now() + 240_000;
    while (!fs.existsSync(path.join(runsDir, longRun, 'checkpoints')) || !fs.readdirSync(path.join(runsDir, longRun, 'checkpoints')).length) {
      if (Date.now() > deadline) throw new Error(`no checkpoint in ${longRun}; status ${readRun(longRun).status}`);
      await h.page.waitForTimeout(500);
    }
    const progress = toast(new RegExp(`Training ${RUN_NAME}`));
    await progress.waitFor({ state: 'visible', timeout: 30_000 });
    await progress.hover();
    await progress.locator('.monaco-button', { hasText: /^Cancel$/ }).click();
    const dialog = h.page.locator('.monaco-dialog-box');
    await dialog.waitFor({ state: 'visible', timeout: 15_000 }).catch(async () => {
      throw new Error(`no cancel confirmation; notifications: ${JSON.stringify(await h.notifications())}`);
    });
    const question = await dialog.innerText();
    assert.match(question, new RegExp(`Cancel run ${RUN_NAME}\\? A checkpoint is written first; you can resume it\\.`));
    const choices = (await dialog.locator('.monaco-button').allInnerTexts()).map((b) => b.trim()).filter(Boolean);
    assert.deepEqual(choices.sort(), ['Cancel Run', 'Keep Running']);
    await h.screenshot('flow-cancel-confirm');
    assert.equal(readRun(longRun).status, 'running', 'nothing is cancelled before the answer');
    await dialog.locator('.monaco-button', { hasText: /^Cancel Run$/ }).click();
    await dialog.waitFor({ state: 'hidden' });

    // The task runs with its terminal hidden (reveal: silent); the user opens it to see why it ended.
    await h.runCommand('Terminal: Focus Terminal');
    const longTab = h.page.locator('.terminal-tabs-entry').filter({ hasText: /flow: long run/ });
    // On its label: a hovered tab shows its actions (Rerun Task, Kill) over the middle of the row.
    await longTab.click({ position: { x: 24, y: 10 } });
    const terminalText = async () => (await h.page.locator('.terminal-wrapper .xterm-rows').allInnerTexts()).join('\n');
    const end = Date.now() + 120_000;
    for (;;) {
      const text = await terminalText();
      if (/cancelled at step \d+\/5000 — resume with “L³Prune: Resume Run”/.test(text)) break;
      if (Date.now() > end) throw new Error(`the terminal does not say "cancelled at step"; it shows:\n${text}`);
      await h.page.waitForTimeout(500);
    }
    assert.equal(readRun(longRun).status, 'cancelled');
    const text = await terminalText();
    assert.doesNotMatch(text, /exit code: 1|run cancelled|error:/, text);
    // VS Code marks a task terminal's tab by its exit code, with a check for 0 and an error for anything else, drawn
    // as a decoration (a codicon glyph in the label's ::after): compare that glyph with the codicons' own.
    await h.page.mouse.move(5, 5);
    // No named functions inside: the test runner's transform would wrap them in a helper the page does not have.
    const mark = async () => longTab.locator('.monaco-icon-label').first().evaluate((label) => {
      const [check, error] = ['check', 'error'].map((name) => {
        const probe = document.createElement('span');
        probe.className = `codicon codicon-${name}`;
        document.body.appendChild(probe);
        const content = getComputedStyle(probe, '::before').content;
        probe.remove();
        return content;
      });
      const shown = [label, ...label.querySelectorAll('*')].map((e) => getComputedStyle(e, '::after').content);
      return { check: shown.includes(check), error: shown.includes(error) };
    });
    const markDeadline = Date.now() + 15_000;
    let shownMark = await mark();
    while (!shownMark.check && Date.now() < markDeadline) {
      await h.page.waitForTimeout(500);
      shownMark = await mark();
    }
    assert.deepEqual(shownMark, { check: true, error: false }, 'the task terminal ends with the success mark, not the failure one');
    const cancelled = toast(new RegExp(`${RUN_NAME} cancelled at step`));
    await cancelled.waitFor({ state: 'visible', timeout: 30_000 });
    assert.ok((await cancelled.locator('.monaco-button').allInnerTexts()).some((b) => b.trim() === 'Resume'), 'the cancelled run offers Resume');
    const icon = (await cancelled.locator('.notification-list-item-icon').getAttribute('class')) ?? '';
    assert.match(icon, /codicon-info/, `informational, not an error: ${icon}`);
    await h.screenshot('flow-cancel-notification');
    // The terminal's whole last lines, without the toast over them.
    await h.runCommand('Notifications: Clear All Notifications');
    await h.screenshot('flow-cancel-terminal');
  });

  let keptRun = '';

  it('terminating the task asks too: Keep Running keeps the run, and the Runs view’s Cancel asks before it stops it', async function () {
    this.timeout(420_000);
    keptRun = await runTask('flow: long run');
    const deadline = Date.now() + 240_000;
    while (!/"event": ?"step"/.test(fs.existsSync(path.join(runsDir, keptRun, 'events.jsonl')) ? fs.readFileSync(path.join(runsDir, keptRun, 'events.jsonl'), 'utf8') : '')) {
      if (Date.now() > deadline) throw new Error(`no step in ${keptRun}`);
      await h.page.waitForTimeout(500);
    }
    await h.runCommand('Tasks: Terminate Task');
    // With one task running VS Code terminates it at once; with a pick, it is that one.
    await h.quickInputRows.filter({ hasText: 'flow: long run' }).first().click({ timeout: 3_000 }).catch(() => undefined);
    const dialog = h.page.locator('.monaco-dialog-box');
    await dialog.waitFor({ state: 'visible', timeout: 20_000 }).catch(async () => {
      throw new Error(`no confirmation after terminating the task; notifications: ${JSON.stringify(await h.notifications())}`);
    });
    assert.match(await dialog.innerText(), new RegExp(`Cancel run ${RUN_NAME}\\?`));
    await dialog.locator('.monaco-button', { hasText: /^Keep Running$/ }).click();
    await dialog.waitFor({ state: 'hidden' });
    const stepNow = () => (fs.readFileSync(path.join(runsDir, keptRun, 'events.jsonl'), 'utf8').match(/"event": ?"step"/g) ?? []).length;
    const before = stepNow();
    await h.page.waitForTimeout(6_000);
    assert.equal(readRun(keptRun).status, 'running', 'Keep Running keeps it running');
    assert.ok(stepNow() > before, 'and it goes on training');

    // The Runs view: the running row's own Cancel Run button (a click on the row itself would open its page).
    const row = h.sidebarPane('Runs').locator('.monaco-list-row[role="treeitem"]').filter({ has: h.page.locator('.codicon-debug-stop') }).first();
    await h.sidebarPane('Runs').locator('.monaco-list-row[role="treeitem"]').first().hover();
    await row.hover();
    await row.locator('.action-label.codicon-debug-stop').click();
    await dialog.waitFor({ state: 'visible', timeout: 20_000 });
    assert.match(await dialog.innerText(), new RegExp(`Cancel run ${RUN_NAME}\\? A checkpoint is written first`));
    await dialog.locator('.monaco-button', { hasText: /^Cancel Run$/ }).click();
    await dialog.waitFor({ state: 'hidden' });
    const end = Date.now() + 120_000;
    while (readRun(keptRun).status === 'running') {
      if (Date.now() > end) throw new Error(`${keptRun} still running after its cancel`);
      await h.page.waitForTimeout(500);
    }
    assert.equal(readRun(keptRun).status, 'cancelled');
  });

  it('a computed initial loss offers its two cuts, and one sets the cut for training', async function () {
    this.timeout(300_000);
    await h.runCommand('Notifications: Clear All Notifications');
    await h.runCommand('L3Prune: Compute Initial Loss…');
    await h.quickInputRows.filter({ hasText: 'triples.jsonl' }).first().click();
    // A custom small sample (16 triples, 2 batches of 8) keeps the run to seconds.
    await h.quickInputRows.filter({ hasText: 'Custom' }).first().click();
    await h.answerInput(/Triples to sample/, '16');
    await h.answerInput(/Triples per batch/, '8');
    const done = toast(/L³Prune cuts for tiny-llama/);
    await done.waitFor({ state: 'visible', timeout: 240_000 }).catch(async () => {
      throw new Error(`no cuts notification; notifications: ${JSON.stringify(await h.notifications())}`);
    });
    const text = (await done.locator('.notification-list-item-message').innerText()).trim();
    const [, small, large] = /small keeps (\d+) layers.*large keeps (\d+)/.exec(text) ?? [];
    assert.ok(small && large, text);
    const buttons = (await done.locator('.monaco-button').allInnerTexts()).map((b) => b.trim());
    assert.deepEqual(buttons, [`Prune at Small Cut (keep ${small})`, `Prune at Large Cut (keep ${large})`]);
    await h.screenshot('flow-analyze-next');
    await done.locator('.monaco-button', { hasText: /Prune at Large Cut/ }).click();
    const chosen = toast(new RegExp(`Cut chosen for tiny-llama: keep ${large} of 4 layers`));
    await chosen.waitFor({ state: 'visible', timeout: 30_000 }).catch(async () => {
      throw new Error(`the button did not choose the cut; notifications: ${JSON.stringify(await h.notifications())}`);
    });
  });

  it('the output channel logs each launch and its end, and the worker package was probed once for all four jobs', async function () {
    this.timeout(120_000);
    // The end of the cancelled run is logged once its process has exited (after it wrote "cancelled"), and the log
    // file is written a moment after the channel: wait for it.
    let lines = h.extensionLog();
    const deadline = Date.now() + 60_000;
    while (lines.filter((l) => l.includes('worker train ended')).length < 3 && Date.now() < deadline) {
      await h.page.waitForTimeout(500);
      lines = h.extensionLog();
    }
    // The worker exits 0 on success and 128 + 15 on the SIGTERM a cancel sends (worker/l3prune/__main__.py).
    for (const [name, exit, reason] of [[shortRun, 0, 'succeeded'], [longRun, 143, 'cancelled by user'], [keptRun, 143, 'cancelled by user']] as const) {
      const dir = path.join(runsDir, name);
      const started = lines.find((l) => l.includes('worker train started') && l.includes(`→ ${dir}:`));
      assert.ok(started, `a launch line for ${name}:\n${lines.join('\n')}`);
      assert.ok(started.includes(`${WORKER_PYTHON} -m l3prune train --run-dir ${dir} --spec ${path.join(dir, 'spec.json')}`), started);
      const pid = /\(pid (\d+)\)/.exec(started)?.[1];
      assert.equal(Number(pid), readRun(name).pid, 'the logged pid is the one run.json names');
      const ended = lines.find((l) => l.includes(`worker train ended (pid ${pid})`));
      assert.ok(ended, `an end line for ${name}`);
      assert.match(ended, new RegExp(`exit code ${exit} after \\d+\\.\\d s, ${reason}$`));
    }
    const probes = lines.filter((l) => /worker package check in .*: found/.test(l));
    assert.equal(probes.length, 1, `one worker-package probe for four jobs:\n${probes.join('\n')}`);
    await h.runCommand('Notifications: Clear All Notifications');
    await h.runCommand('Output: Show Output Channels...');
    await h.quickInputRows.filter({ hasText: /^L³Prune/ }).first().click();
    // Monaco draws spaces as no-break spaces, hence the dots.
    await h.page.locator('.part.panel .monaco-editor').filter({ hasText: /worker.train.ended/ }).first().waitFor({ state: 'visible', timeout: 30_000 });
    const analyze = lines.find((l) => /worker analyze ended \(pid \d+\): exit code 0 after [\d.]+ s, succeeded$/.test(l));
    assert.ok(analyze, 'the analysis run (the extension’s own child, not a task) is logged the same way');
    await h.screenshot('flow-output-log');
  });
});
