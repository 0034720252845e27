/**
 * End-to-end harness: a real VS Code (code-server 4.100.3 = VS Code 1.100.3, installed offline by
 * scripts/setup-e2e.sh) driven through Debian's Chromium with playwright-core.
 *
 * Everything is local: code-server listens on 127.0.0.1, the browser never downloads anything, and all
 * state (user data, extensions, XDG dirs, browser profile) lives in a fresh temp dir per run, so runs do
 * not depend on each other or on the developer's own VS Code.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type FrameLocator, type Locator, type Page } from 'playwright-core';

export const REPO_ROOT = findRepoRoot();
export const ARTIFACTS_DIR = path.join(REPO_ROOT, 'test-artifacts');
export const CODE_SERVER_ENTRY = path.join(
  REPO_ROOT, '.tools', 'code-server', 'node_modules', 'code-server', 'out', 'node', 'entry.js');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const DEFAULT_VSIX = path.join(REPO_ROOT, 'dist', 'l3prune-studio.vsix');
/** publisher.name: the folder VS Code keeps the extension's logs in. */
const EXTENSION_ID = 'l3prune.l3prune-studio';

/** User settings that keep the workbench quiet and the run deterministic. */
export const DEFAULT_SETTINGS: Record<string, unknown> = {
  'workbench.startupEditor': 'none',
  // The quick-input file dialog is what code-server uses anyway; say so explicitly so that
  // showOpenDialog is always drivable by typing a path.
  'files.simpleDialog.enable': true,
  'workbench.tips.enabled': false,
  // A click on a tree row then only selects it; expanding is explicit (twistie, ArrowRight), so a test
  // that clicks a row never toggles it by accident.
  'workbench.tree.expandMode': 'doubleClick',
  'workbench.enableExperiments': false,
  'workbench.welcomePage.walkthroughs.openOnInstall': false,
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'extensions.ignoreRecommendations': true,
  'security.workspace.trust.enabled': false,
  'git.openRepositoryInParentFolders': 'never',
  'chat.commandCenter.enabled': false,
  'window.commandCenter': false,
  // Fixed look for screenshots regardless of the OS colour scheme Chromium reports.
  'workbench.colorTheme': 'Default Dark Modern',
  'window.autoDetectColorScheme': false,
};

export interface HarnessOptions {
  /** Folder opened as the workspace. */
  workspace: string;
  /** .vsix installed with `--install-extension` before the server starts. */
  vsix?: string;
  /** Extra user settings, merged over DEFAULT_SETTINGS. */
  settings?: Record<string, unknown>;
  /**
   * Remote ("Machine") settings. code-server is a remote window, where `machine` and `machine-overridable`
   * settings (interpreter paths) are read from here, not from user settings, exactly as under Remote-SSH.
   */
  machineSettings?: Record<string, unknown>;
  /** Browser viewport. */
  viewport?: { width: number; height: number };
  /** Extra environment for code-server and so the extension host (e.g. HF_HUB_CACHE). */
  env?: Record<string, string>;
}

/** Prints `[e2e +12.3s] message` so a slow step is easy to spot in CI logs. */
const t0 = Date.now();
export function log(message: string): void {
  console.log(`    [e2e +${((Date.now() - t0) / 1000).toFixed(1)}s] ${message}`);
}

export async function timed<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const start = Date.now();
  try {
    return await fn();
  } finally {
    log(`${what}: ${((Date.now() - start) / 1000).toFixed(1)}s`);
  }
}

export class CodeServerHarness {
  private server?: ChildProcess;
  private serverExited?: Promise<void>;
  private context?: BrowserContext;
  private disposed = false;
  // code-server runs in its own process group (so one signal reaches all its children), which also means
  // Ctrl-C or a CI timeout does not reach it: kill it when this process exits or is signalled.
  private readonly killOnExit = (): void => this.killServerGroup('SIGKILL');
  private readonly killOnSignal = (signal: NodeJS.Signals): void => {
    this.killServerGroup('SIGKILL');
    this.removeProcessHooks();
    process.kill(process.pid, signal); // re-raise: default handling (exit) now that our hook is gone
  };

  /** Content-Security-Policy violations reported in the browser console (workbench and webviews). */
  readonly cspViolations: string[] = [];
  /** The workbench page; valid after start(). */
  page!: Page;
  port = 0;
  readonly tmpDir: string;
  readonly serverLog: string;

  private constructor(private readonly options: HarnessOptions) {
    this.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3prune-e2e-'));
    fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
    this.serverLog = path.join(ARTIFACTS_DIR, 'code-server.log');
  }

  /** Installs the extension, starts code-server and opens the workbench in Chromium. */
  static async start(options: HarnessOptions): Promise<CodeServerHarness> {
    const harness = new CodeServerHarness(options);
    try {
      await harness.startAll();
    } catch (error) {
      await harness.dispose();
      throw error;
    }
    return harness;
  }

  private get dirs() {
    const d = this.tmpDir;
    return {
      userData: path.join(d, 'user-data'),
      extensions: path.join(d, 'extensions'),
      browserProfile: path.join(d, 'chromium-profile'),
      xdgConfig: path.join(d, 'xdg', 'config'),
      xdgData: path.join(d, 'xdg', 'data'),
      xdgCache: path.join(d, 'xdg', 'cache'),
      xdgState: path.join(d, 'xdg', 'state'),
    };
  }

  private env(): NodeJS.ProcessEnv {
    const d = this.dirs;
    // Run from a VS Code terminal, VSCODE_IPC_HOOK_CLI & co. would make code-server's CLI hand
    // --install-extension to that outer VS Code; the extension host would inherit them too.
    const inherited = Object.fromEntries(Object.entries(process.env)
      .filter(([key]) => !key.startsWith('VSCODE_') && key !== 'ELECTRON_RUN_AS_NODE'));
    return {
      ...inherited,
      // code-server keeps its config.yaml and state under XDG dirs: keep them out of $HOME.
      XDG_CONFIG_HOME: d.xdgConfig,
      XDG_DATA_HOME: d.xdgData,
      XDG_CACHE_HOME: d.xdgCache,
      XDG_STATE_HOME: d.xdgState,
      ...this.options.env,
    };
  }

  private commonArgs(): string[] {
    const d = this.dirs;
    return [
      '--user-data-dir', d.userData,
      '--extensions-dir', d.extensions,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
    ];
  }

  private async startAll(): Promise<void> {
    if (!fs.existsSync(CODE_SERVER_ENTRY)) {
      throw new Error(`code-server is not installed (${CODE_SERVER_ENTRY}); run scripts/setup-e2e.sh`);
    }
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`no Chromium at ${CHROMIUM}; run scripts/setup-e2e.sh (or set CHROMIUM_PATH)`);
    }
    const d = this.dirs;
    for (const dir of Object.values(d)) fs.mkdirSync(dir, { recursive: true });
    fs.mkdirSync(path.join(d.userData, 'User'), { recursive: true });
    fs.writeFileSync(
      path.join(d.userData, 'User', 'settings.json'),
      JSON.stringify({ ...DEFAULT_SETTINGS, ...this.options.settings }, null, 2));
    fs.mkdirSync(path.join(d.userData, 'Machine'), { recursive: true });
    fs.writeFileSync(path.join(d.userData, 'Machine', 'settings.json'), JSON.stringify(this.options.machineSettings ?? {}, null, 2));

    if (this.options.vsix) await timed('install extension', () => this.installExtension(this.options.vsix!));
    await timed('start code-server', () => this.startServer());
    await timed('open workbench in Chromium', () => this.openWorkbench());
  }

  private async installExtension(vsix: string): Promise<void> {
    // spawnSync is fine here: nothing else needs to run meanwhile, and its own timeout bounds a hang.
    const result = spawnSync(process.execPath,
      [CODE_SERVER_ENTRY, ...this.commonArgs(), '--install-extension', vsix, '--force'],
      { env: this.env(), encoding: 'utf8', timeout: 120_000 });
    const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
    fs.writeFileSync(path.join(ARTIFACTS_DIR, 'install-extension.log'), output);
    if (result.status !== 0 || !/successfully installed/i.test(output)) {
      throw new Error(`--install-extension ${vsix} failed (status ${result.status}):\n${output}`);
    }
  }

  private async startServer(): Promise<void> {
    this.port = await freePort();
    const out = fs.openSync(this.serverLog, 'w');
    // detached: own process group, so teardown can kill code-server together with its extension host,
    // file watcher and pty host children in one signal.
    this.server = spawn(process.execPath, [
      CODE_SERVER_ENTRY,
      '--auth', 'none',
      '--bind-addr', `127.0.0.1:${this.port}`,
      ...this.commonArgs(),
      '--ignore-last-opened',
      this.options.workspace,
    ], { env: this.env(), detached: true, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    process.once('exit', this.killOnExit);
    process.once('SIGINT', this.killOnSignal);
    process.once('SIGTERM', this.killOnSignal);
    this.serverExited = new Promise((resolve) => this.server!.once('exit', () => resolve()));

    // Wait until it serves: poll /healthz (cheap, no workbench render) but give up as soon as the
    // process dies, with its log in the error.
    let exited = false;
    void this.serverExited.then(() => { exited = true; });
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (exited) throw new Error(`code-server exited early:\n${readTail(this.serverLog)}`);
      if (Date.now() > deadline) throw new Error(`code-server did not serve within 60s:\n${readTail(this.serverLog)}`);
      try {
        const res = await fetch(`${this.url}/healthz`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private async openWorkbench(): Promise<void> {
    const viewport = this.options.viewport ?? { width: 1400, height: 900 };
    this.context = await chromium.launchPersistentContext(this.dirs.browserProfile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport,
      args: [
        '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });
    this.page = this.context.pages()[0] ?? await this.context.newPage();
    this.page.setDefaultTimeout(30_000);
    // Browser-side errors are gold when a test fails; keep them next to the server log.
    const consoleLog = fs.createWriteStream(path.join(ARTIFACTS_DIR, 'browser-console.log'));
    this.page.on('console', (m) => {
      consoleLog.write(`[${m.type()}] ${m.text()} (${m.location().url})\n`);
      if (/Content Security Policy/.test(m.text())) this.cspViolations.push(`${m.text()} (${m.location().url})`);
    });
    this.page.on('pageerror', (e) => consoleLog.write(`[pageerror] ${e.message}\n`));

    const folder = encodeURIComponent(path.resolve(this.options.workspace));
    await this.page.goto(`${this.url}/?folder=${folder}`);
    await this.page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 60_000 });
    // The activity bar is rendered once the workbench layout has finished; before that keyboard
    // shortcuts can get lost.
    await this.page.locator('.part.activitybar').waitFor({ state: 'visible' });
  }

  // ---------------------------------------------------------------- UI helpers

  /** The command palette's text box. */
  get quickInput(): Locator {
    return this.page.locator('.quick-input-widget .quick-input-box input');
  }

  /** Rows of the open quick pick (command palette, quick pick, simple file dialog). */
  get quickInputRows(): Locator {
    return this.page.locator('.quick-input-widget .quick-input-list .monaco-list-row');
  }

  /**
   * Answers the input box titled `title` with `value`. Waits for that title first: a command's next box
   * opens in the same widget moments after the last one closes, and text typed in between is lost.
   */
  async answerInput(title: RegExp, value: string): Promise<void> {
    const titleBar = this.page.locator('.quick-input-widget .quick-input-title');
    await titleBar.filter({ hasText: title }).waitFor({ state: 'visible', timeout: 30_000 }).catch(async () => {
      throw new Error(`no input box titled ${title}; shown: "${await titleBar.innerText().catch(() => 'none')}"`);
    });
    await this.quickInput.fill(value);
    await this.page.waitForFunction((v) => document.querySelector<HTMLInputElement>('.quick-input-widget .quick-input-box input')?.value === v, value);
    await this.page.keyboard.press('Enter');
    // Accepted once that box is gone (hidden, or replaced by the next step's box).
    await titleBar.filter({ hasText: title }).waitFor({ state: 'hidden', timeout: 15_000 });
  }

  /** Picks the row labelled `row` in the quick pick titled `title`, once that pick (not the last one) shows. */
  async pick(title: RegExp, row: string | RegExp): Promise<void> {
    const titleBar = this.page.locator('.quick-input-widget .quick-input-title');
    await titleBar.filter({ hasText: title }).waitFor({ state: 'visible', timeout: 30_000 }).catch(async () => {
      throw new Error(`no quick pick titled ${title}; shown: "${await titleBar.innerText().catch(() => 'none')}"`);
    });
    await this.quickInputRows.filter({ hasText: row }).first().click();
    await titleBar.filter({ hasText: title }).waitFor({ state: 'hidden', timeout: 15_000 });
  }

  /**
   * Accepts the quick pick titled `title` as it stands (a multi-select pick: its ticked rows), once it shows and,
   * when `settled` is given, once its placeholder matches it (a pick that fills in its rows while shown).
   */
  async acceptPick(title: RegExp, settled?: { placeholder: RegExp; timeout: number; screenshot?: string }): Promise<void> {
    const titleBar = this.page.locator('.quick-input-widget .quick-input-title');
    await titleBar.filter({ hasText: title }).waitFor({ state: 'visible', timeout: 60_000 }).catch(async () => {
      throw new Error(`no quick pick titled ${title}; shown: "${await titleBar.innerText().catch(() => 'none')}"`);
    });
    if (settled) {
      const source = settled.placeholder.source;
      await this.page.waitForFunction((re) => new RegExp(re).test(document.querySelector<HTMLInputElement>('.quick-input-widget .quick-input-box input')?.placeholder ?? ''),
        source, { timeout: settled.timeout });
      if (settled.screenshot) await this.screenshot(settled.screenshot);
    }
    await this.page.keyboard.press('Enter');
    await titleBar.filter({ hasText: title }).waitFor({ state: 'hidden', timeout: 15_000 });
  }

  /** Opens the command palette; F1 is retried because the first key press can land before focus. */
  async openPalette(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await this.page.keyboard.press('F1');
      try {
        await this.quickInput.waitFor({ state: 'visible', timeout: 3_000 });
        return;
      } catch (error) {
        if (attempt >= 4) throw error;
        log(`command palette did not open on F1 (attempt ${attempt}); retrying`);
        // Give the workbench focus and try again. The title bar is inert (the command center is off
        // in DEFAULT_SETTINGS); status-bar items are not (the remote indicator opens a menu).
        await this.page.locator('.part.titlebar').click({ timeout: 2_000 }).catch(() => undefined);
      }
    }
  }

  /**
   * Runs a command by its palette title (e.g. "L3Prune: Show Layer Stack"). Picks the row whose label
   * equals the title exactly, so fuzzy matches or "recently used" ordering cannot pick another command.
   */
  async runCommand(title: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await this.openPalette();
      try {
        await this.quickInput.fill(`>${title}`, { timeout: 5_000 });
        break;
      } catch (error) {
        // A webview that opens late (a panel revealed by the previous command) takes the focus and closes the palette.
        if (attempt >= 3) throw error;
        log(`the palette closed before "${title}" was typed (attempt ${attempt}); retrying`);
      }
    }
    const row = this.quickInputRows.filter({
      has: this.page.locator('.label-name', { hasText: new RegExp(`^\\s*${escapeRegExp(title)}\\s*$`) }),
    }).first();
    try {
      await row.waitFor({ state: 'visible', timeout: 15_000 });
    } catch {
      const shown = await this.quickInputRows.allInnerTexts();
      await this.page.keyboard.press('Escape');
      throw new Error(`no command "${title}" in the palette; it shows: ${JSON.stringify(shown)}`);
    }
    await row.click();
    // Wait for the palette to go, so a caller waiting for the command's own quick input (which reuses the
    // same widget) cannot mistake the palette for it.
    await row.waitFor({ state: 'hidden', timeout: 10_000 });
  }

  /**
   * Answers an open-folder dialog. In code-server showOpenDialog is VS Code's "simple file dialog": a
   * quick input whose box holds a path and whose rows list `..` plus the sub-folders of that path.
   * Three races make a plain fill+Enter flaky, so this waits for conditions instead:
   *  - the dialog first shows a placeholder path, then (after listing its start folder) overwrites the
   *    box; typing before that is lost. Once rows are shown that overwrite has happened.
   *  - after typing, the listing of the typed folder is loaded asynchronously; Enter before it is done
   *    can accept the previous folder. So wait until the rows are exactly that folder's listing.
   *  - even then, about one Enter in ten is ignored (box and rows unchanged, dialog stays open; a second
   *    Enter accepts). So: Enter, and if the dialog is still open with the same path, Enter again.
   */
  async pickFolderInSimpleDialog(folder: string): Promise<void> {
    const target = path.resolve(folder).replace(/\/?$/, '/');
    const expectedRows = [...new Set(['..', ...fs.readdirSync(target, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name)])];
    // Runs in the page: the box holds `value` and every row is `..` or a sub-folder of it.
    const shows = ({ value, rows }: { value: string; rows: string[] }): boolean => {
      const widget = document.querySelector('.quick-input-widget');
      const input = widget?.querySelector<HTMLInputElement>('.quick-input-box input');
      if (!widget || input?.value !== value) return false;
      const labels = [...widget.querySelectorAll('.quick-input-list .monaco-list-row .label-name')]
        .map((e) => (e.textContent ?? '').trim());
      return labels.length > 0 && labels.every((l) => rows.includes(l));
    };
    const arg = { value: target, rows: expectedRows };
    const showsTargetNow = () => this.page.evaluate(shows, arg);
    const showsTargetSoon = () => this.page.waitForFunction(shows, arg, { timeout: 10_000 }).then(() => true, () => false);

    await this.quickInput.waitFor({ state: 'visible' });
    await this.quickInputRows.first().waitFor({ state: 'visible' });
    for (let attempt = 1; attempt <= 4; attempt++) {
      if (!(await showsTargetNow())) {
        await this.quickInput.fill(target);
        if (!(await showsTargetSoon())) {
          log(`simple file dialog does not show ${target} (attempt ${attempt}); typing it again`);
          continue;
        }
      }
      await this.quickInput.press('Enter');
      if (await this.quickInput.waitFor({ state: 'hidden', timeout: 3_000 }).then(() => true, () => false)) return;
      log(`simple file dialog still open after Enter (attempt ${attempt}); retrying`);
    }
    throw new Error(`simple file dialog did not accept ${target} (box: "${await this.quickInput.inputValue()}", `
      + `rows: ${JSON.stringify(await this.quickInputRows.allInnerTexts())})`);
  }

  /** Activity-bar entry of a view container, by its title (e.g. "L³Prune"). */
  activityBarItem(title: string | RegExp): Locator {
    const name = typeof title === 'string' ? new RegExp(`^${escapeRegExp(title)}`) : title;
    return this.page.locator('.part.activitybar').getByRole('tab', { name });
  }

  /** Opens (does not toggle closed) the sidebar for the container with this activity-bar title. */
  async openSidebar(title: string | RegExp): Promise<void> {
    const item = this.activityBarItem(title);
    await item.waitFor({ state: 'visible' });
    // Clicking an already-selected item would collapse the sidebar.
    if ((await item.getAttribute('aria-selected')) !== 'true') await item.click();
    await this.page.locator('.part.sidebar').waitFor({ state: 'visible' });
  }

  /** Sidebar pane (view) by its header title, e.g. "Models". */
  sidebarPane(title: string): Locator {
    return this.page.locator('.part.sidebar .pane').filter({
      has: this.page.locator('.pane-header', { hasText: new RegExp(`^\\s*${escapeRegExp(title)}`, 'i') }),
    });
  }

  /**
   * Tree row whose label is exactly `label` (descriptions are separate elements, so "Layer 1" does not
   * match "Layer 10"). Scope it with `within` (e.g. sidebarPane("Models")).
   */
  treeItem(label: string, within: Locator | Page = this.page): Locator {
    return within.locator('.monaco-list-row[role="treeitem"]').filter({
      has: this.page.locator('.label-name', { hasText: new RegExp(`^\\s*${escapeRegExp(label)}\\s*$`) }),
    });
  }

  /**
   * Expands a tree row without ever collapsing it. A twistie click toggles, and the extension may expand
   * the same row itself a moment later (reveal with expand), so a click can undo it. Instead: click the
   * label (only selects, as DEFAULT_SETTINGS sets workbench.tree.expandMode to doubleClick) and press
   * ArrowRight, which expands a collapsed row and does not collapse an expanded one.
   */
  async expandTreeItem(item: Locator): Promise<void> {
    const expanded = item.and(this.page.locator('[aria-expanded="true"]'));
    if (await expanded.count()) return;
    await item.locator('.label-name').click();
    if (!(await expanded.count())) await this.page.keyboard.press('ArrowRight');
    await expanded.waitFor({ state: 'visible', timeout: 10_000 });
  }

  /** The focused row of the tree that has keyboard focus. */
  focusedTreeItem(within: Locator | Page = this.page): Locator {
    return within.locator('.monaco-list-row[role="treeitem"].focused');
  }

  /** Editor tab by title. */
  editorTab(title: string | RegExp): Locator {
    const name = typeof title === 'string' ? new RegExp(`^${escapeRegExp(title)}`) : title;
    return this.page.locator('.tabs-container').getByRole('tab', { name });
  }

  /**
   * Content of the webview whose document contains `selector` (e.g. "#plan"), waiting for it to load.
   * VS Code nests an extension's document in two iframes: the outer `iframe.webview` (class `ready` once
   * loaded) hosts `iframe#active-frame`. Several webviews can be open at once (a panel plus webview views
   * in the sidebar), so pick by content, then pin the outer iframe by its unique `name`.
   */
  async webview(selector: string, timeout = 30_000): Promise<FrameLocator> {
    const outer = this.page.locator('iframe.webview.ready');
    const deadline = Date.now() + timeout;
    for (;;) {
      for (let i = 0, n = await outer.count(); i < n; i++) {
        const candidate = outer.nth(i);
        const inner = candidate.contentFrame().locator('iframe#active-frame').contentFrame();
        if (await inner.locator(selector).count().catch(() => 0)) {
          const name = await candidate.getAttribute('name');
          return this.page.frameLocator(`iframe.webview.ready[name="${name}"]`).frameLocator('iframe#active-frame');
        }
      }
      if (Date.now() > deadline) throw new Error(`no webview contains ${selector} after ${timeout} ms`);
      await new Promise((r) => setTimeout(r, 200)); // poll: webviews load asynchronously
    }
  }

  /**
   * Posts messages to the extension host as a webview page does: through the bridge that the page's
   * `acquireVsCodeApi().postMessage` calls (`__vscode_post_message__` of the host document around the page).
   * VS Code deletes `window.parent` inside the page once its API is set up, so the call is made from the host
   * document, the frame that owns the page's iframe; the host sees the same messages either way.
   */
  async postFromWebview(page: FrameLocator, messages: unknown[]): Promise<void> {
    // As JSON, parsed in the frame: Playwright's own argument transfer would turn an own "__proto__" key into a
    // prototype, and the case would no longer be the one generated.
    await page.owner().evaluate((_iframe, json) => {
      const bridge = (window as unknown as Record<string, unknown>)['__vscode_post_message__'];
      if (typeof bridge !== 'function') throw new Error('this VS Code build has no __vscode_post_message__ webview bridge');
      for (const message of JSON.parse(json) as unknown[]) (bridge as (channel: string, data: unknown) => void).call(window, 'onmessage', { message, transfer: [] });
    }, JSON.stringify(messages));
  }

  /** Lines of the extension's own log (the "L³Prune" output channel), across window reloads. */
  extensionLog(): string[] {
    const lines: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (entry.name.endsWith('.log') && full.includes(`${path.sep}${EXTENSION_ID}${path.sep}`)) lines.push(...fs.readFileSync(full, 'utf8').split('\n'));
      }
    };
    const logs = path.join(this.dirs.userData, 'logs');
    if (fs.existsSync(logs)) walk(logs);
    return lines;
  }

  /** Saves a full-window screenshot to test-artifacts/<name>.png and returns its path. */
  async screenshot(name: string): Promise<string> {
    const file = path.join(ARTIFACTS_DIR, `${name.replace(/[^\w.-]+/g, '_')}.png`);
    await this.page.screenshot({ path: file });
    log(`screenshot ${path.relative(REPO_ROOT, file)}`);
    return file;
  }

  /** Text of the notifications currently shown (handy in assertion messages). */
  async notifications(): Promise<string[]> {
    return this.page.locator('.notifications-toasts .notification-list-item-message').allInnerTexts();
  }

  // ---------------------------------------------------------------- teardown

  /** Closes the browser and kills code-server's whole process group. Safe to call more than once. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.context?.close().catch(() => undefined);
    if (this.server && this.server.exitCode === null && this.server.signalCode === null) {
      this.killServerGroup('SIGTERM');
      const stopped = await Promise.race([
        this.serverExited!.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 5_000)),
      ]);
      if (!stopped) this.killServerGroup('SIGKILL');
    }
    // Children (extension host, pty host) may outlive the parent's exit by a moment; make sure.
    this.killServerGroup('SIGKILL');
    this.removeProcessHooks();
    if (!process.env.E2E_KEEP_TMP) fs.rmSync(this.tmpDir, { recursive: true, force: true });
  }

  private removeProcessHooks(): void {
    process.removeListener('exit', this.killOnExit);
    process.removeListener('SIGINT', this.killOnSignal);
    process.removeListener('SIGTERM', this.killOnSignal);
  }

  private killServerGroup(signal: NodeJS.Signals): void {
    const pid = this.server?.pid;
    if (!pid) return;
    try {
      process.kill(-pid, signal); // negative pid: the whole process group
    } catch {
      // already gone
    }
  }
}

// ------------------------------------------------------------------ helpers

function findRepoRoot(): string {
  // Works whether mocha runs from the repo root or elsewhere, and under CJS or ESM.
  for (let dir = process.cwd(); ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, 'utf8')).name === 'l3prune-studio') return dir;
    if (path.dirname(dir) === dir) throw new Error('run the e2e tests from inside the l3prune-studio repo');
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function readTail(file: string, chars = 4000): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(-chars);
  } catch {
    return '(no log)';
  }
}

/** Waits until the element's text matches, and fails with the text it last had. */
export async function expectText(locator: Locator, pattern: RegExp, timeout = 30_000): Promise<string> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const text = (await locator.textContent({ timeout: Math.max(1, deadline - Date.now()) }).catch(() => null)) ?? '';
    if (pattern.test(text)) return text;
    if (Date.now() > deadline) throw new Error(`expected text matching ${pattern}, last saw: ${text.slice(0, 400)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Returns the .vsix to test. Runs `npm run package` when it is missing (the test script normally packages
 * before mocha). When it is older than its sources it only warns, since rebuilding here could race a
 * build someone else started; E2E_REBUILD=1 rebuilds then too.
 */
export function ensureVsix(vsix = DEFAULT_VSIX): string {
  const builtAt = fs.existsSync(vsix) ? fs.statSync(vsix).mtimeMs : 0;
  const sources = ['src', 'webview', 'media', 'package.json'].map((p) => path.join(REPO_ROOT, p));
  const stale = builtAt > 0 && newestMtime(sources) > builtAt;
  const name = path.relative(REPO_ROOT, vsix);
  if (builtAt === 0 || (stale && process.env.E2E_REBUILD)) {
    log(`${name} ${builtAt ? 'is older than its sources' : 'is missing'}: running \`npm run package\``);
    const result = spawnSync('npm', ['run', 'package'], { cwd: REPO_ROOT, stdio: 'inherit' });
    if (result.status !== 0 || !fs.existsSync(vsix)) throw new Error('`npm run package` failed');
  } else if (stale) {
    log(`WARNING: ${name} is older than src/, webview/, media/ or package.json; testing it anyway `
      + '(run `npm run package`, or set E2E_REBUILD=1)');
  }
  return vsix;
}

function newestMtime(paths: string[]): number {
  let newest = 0;
  for (const p of paths) {
    if (!fs.existsSync(p)) continue;
    const stat = fs.statSync(p);
    newest = Math.max(newest, stat.mtimeMs);
    if (stat.isDirectory()) {
      newest = Math.max(newest, newestMtime(fs.readdirSync(p).map((name) => path.join(p, name))));
    }
  }
  return newest;
}
