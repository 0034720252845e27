import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { RunEvent } from '../../src/shared/protocol/workerEvents';
import { runAnalyze } from '../../src/runs/analyzeRun';
import { readRunRecord } from '../../src/runs/runFolder';
import { DEMO, requireWorkerEnvironment } from '../fixtures/demo';

const { python, model, triples: data } = DEMO;

/** A cancellation token driven by the test, shaped like VS Code's. */
function tokenSource() {
  const listeners: Array<() => unknown> = [];
  const token = {
    isCancellationRequested: false,
    onCancellationRequested(listener: () => unknown) {
      listeners.push(listener);
      return { dispose() {} };
    },
  };
  return { token, cancel: () => { token.isCancellationRequested = true; listeners.forEach((l) => l()); } };
}

describe('analyze runs launched by the extension', function () {
  this.timeout(300_000);
  let tmp = '';
  before(function () {
    requireWorkerEnvironment(this);
    tmp = mkdtempSync(path.join(tmpdir(), 'l3prune-analyze-'));
  });
  after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

  it('cancel kills the worker’s process group and leaves the run folder saying "cancelled"', async () => {
    const runDir = path.join(tmp, 'cancelled');
    const { token, cancel } = tokenSource();
    const seen: string[] = [];
    let pid: number | undefined;
    const outcome = await runAnalyze(
      { python, model, data, runDir, samples: 4000, batchSize: 4, maxLength: 64 },
      (event: RunEvent) => {
        seen.push(event.event);
        if (event.event === 'started') pid = event.pid as number;
        if (event.event === 'progress') cancel();
      },
      token,
    );
    assert.equal(outcome.status, 'cancelled');
    assert.ok(seen.includes('progress'));
    const record = await readRunRecord(runDir);
    assert.equal(record?.status, 'cancelled');
    assert.ok(pid);
    assert.throws(() => process.kill(pid!, 0), 'the worker is gone');
  });

  it('a bad data file fails with the worker’s one-sentence reason', async () => {
    const runDir = path.join(tmp, 'failed');
    const outcome = await runAnalyze({ python, model, data: path.join(tmp, 'missing.jsonl'), runDir, samples: 4 }, () => undefined, tokenSource().token);
    assert.equal(outcome.status, 'failed');
    assert.match((outcome as { message: string }).message, /missing\.jsonl/);
    assert.equal((await readRunRecord(runDir))?.status, 'failed');
  });
});
