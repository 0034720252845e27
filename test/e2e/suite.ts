/**
 * What every end-to-end suite does around its tests: keep a picture and the notifications of a failed test, and
 * close its VS Code, its workers and its scratch folder at the end.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { log, REPO_ROOT, type CodeServerHarness } from './harness';

/** On a failed test: test-artifacts/FAILED-<suite>-<title>.png and the notifications then shown, in the log. */
export function keepFailures(suite: string, harness: () => CodeServerHarness | undefined): void {
  afterEach(async function () {
    const h = harness();
    if (this.currentTest?.state !== 'failed' || !h?.page) return;
    await h.screenshot(`FAILED-${suite}-${this.currentTest.title}`).catch(() => undefined);
    const notes = await h.notifications().catch(() => []);
    if (notes.length) log(`notifications: ${JSON.stringify(notes)}`);
  });
}

/**
 * Closes the suite's VS Code and removes its scratch folder (kept with E2E_KEEP_TMP). A CSP report of ours is
 * logged, not failed (the guide suite asserts there are none): something a webview meant to apply was blocked.
 * `beforeRemoving` stops what the suite left running in the folder.
 */
export async function closeSuite(h: CodeServerHarness | undefined, scratch: string | undefined, beforeRemoving?: () => void): Promise<void> {
  const csp = h?.cspViolations.filter((v) => v.includes('l3prune')) ?? [];
  if (csp.length) log(`WARNING: ${csp.length} CSP violation(s) in the extension's webview, e.g. ${csp[0].slice(0, 300)}`);
  await h?.dispose();
  beforeRemoving?.();
  if (scratch && !process.env.E2E_KEEP_TMP) fs.rmSync(scratch, { recursive: true, force: true });
}

/** The worker tests' tiny random Llama and a few triples, written by the worker's own test fixtures. */
export function writeTinyLlama(python: string, model: string, data: string, triples = 24): void {
  execFileSync(python, ['-c', [
    'import sys; from pathlib import Path',
    `sys.path.insert(0, ${JSON.stringify(path.join(REPO_ROOT, 'worker', 'tests'))})`,
    'from conftest import make_tiny_llama, write_triples',
    `make_tiny_llama(Path(${JSON.stringify(model)})); write_triples(Path(${JSON.stringify(data)}), ${triples})`,
  ].join('\n')], { env: { ...process.env, OMP_NUM_THREADS: '1' } });
}

/** A worker a failed test left running: killed by its process group (its pid in run.json is our child's group). */
export function stopDetachedWorkers(runsDir: string): void {
  if (!fs.existsSync(runsDir)) return;
  for (const name of fs.readdirSync(runsDir)) {
    try {
      const record = JSON.parse(fs.readFileSync(path.join(runsDir, name, 'run.json'), 'utf8'));
      if (record.status === 'running' && Number.isInteger(record.pid) && record.pid > 1) process.kill(-record.pid, 'SIGKILL');
    } catch {
      // no run.json, or the worker is already gone
    }
  }
}
