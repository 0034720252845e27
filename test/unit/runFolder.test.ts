import * as assert from 'node:assert/strict';
import { appendFileSync, truncateSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { RunRecord } from '../../src/shared/protocol/workerEvents';
import { effectiveStatus, freshTail, HEARTBEAT_STALE_MS, readAllEvents, readNewEvents, readRunRecord } from '../../src/runs/runFolder';
import { subdir, useTempDir } from '../fixtures/tmp';

const T = '2026-11-29T01:58:33.547Z';
const line = (event: string, extra: Record<string, unknown> = {}) => `${JSON.stringify({ event, time: T, ...extra })}\n`;

describe('run folders', () => {
  const dir = useTempDir();
  const run = (name: string) => subdir(dir, name);

  it('tails events.jsonl across partial lines, reading each byte once', async () => {
    const folder = run('tail');
    const file = path.join(folder, 'events.jsonl');
    const progress = line('progress', { batch: 1, batches: 2 });
    writeFileSync(file, line('started') + progress.slice(0, 10));
    let result = await readNewEvents(folder, freshTail());
    assert.deepEqual(result.events.map((e) => e.event), ['started']);
    assert.equal(result.state.partial, progress.slice(0, 10), 'the half-written line waits');
    appendFileSync(file, progress.slice(10) + line('heartbeat'));
    result = await readNewEvents(folder, result.state);
    assert.deepEqual(result.events.map((e) => e.event), ['progress', 'heartbeat']);
    result = await readNewEvents(folder, result.state);
    assert.deepEqual(result.events, [], 'nothing new, nothing read');
  });

  it('starts over when the file shrinks (truncated or rewritten)', async () => {
    const folder = run('truncate');
    const file = path.join(folder, 'events.jsonl');
    writeFileSync(file, line('started') + line('heartbeat'));
    const first = await readNewEvents(folder, freshTail());
    truncateSync(file, 0);
    writeFileSync(file, line('cancelled'));
    const second = await readNewEvents(folder, first.state);
    assert.deepEqual(second.events.map((e) => e.event), ['cancelled']);
  });

  it('skips lines that are not events instead of failing', async () => {
    const folder = run('garbage');
    writeFileSync(path.join(folder, 'events.jsonl'), `${line('started')}not json\n{"no":"event"}\n${line('progress', { batch: 'x', batches: 1 })}${line('heartbeat')}`);
    const { events, skipped } = await readNewEvents(folder, freshTail());
    assert.deepEqual(events.map((e) => e.event), ['started', 'heartbeat']);
    assert.equal(skipped, 3);
  });

  it('reads a final line without newline once the writer is gone', async () => {
    const folder = run('nonewline');
    writeFileSync(path.join(folder, 'events.jsonl'), line('started') + line('cancelled').trimEnd());
    assert.deepEqual((await readAllEvents(folder)).map((e) => e.event), ['started', 'cancelled']);
  });

  it('a missing or corrupt run.json reads as no run, not a crash', async () => {
    assert.equal(await readRunRecord(run('empty')), undefined);
    writeFileSync(path.join(run('corrupt'), 'run.json'), '{"status": "runn');
    assert.equal(await readRunRecord(path.join(dir(), 'corrupt')), undefined);
  });

  it('shows a running run whose process or heartbeat is gone as failed', () => {
    const now = Date.parse(T);
    const record = { status: 'running', pid: 4242, heartbeatAt: T } as RunRecord;
    assert.equal(effectiveStatus(record, now + 1000, () => true), 'running');
    assert.equal(effectiveStatus(record, now + 1000, () => false), 'failed', 'dead process');
    assert.equal(effectiveStatus(record, now + HEARTBEAT_STALE_MS + 1, () => true), 'failed', 'stale heartbeat');
    assert.equal(effectiveStatus({ ...record, status: 'cancelled' }, now, () => false), 'cancelled');
  });
});
