import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { l3pruneCuts } from '../../src/shared/prune/cutRule';
import { isLayerLosses, parseRunEvent, parseRunRecord } from '../../src/shared/protocol/workerEvents';
import { readAllEvents } from '../../src/runs/runFolder';
import { DEMO, requireWorkerEnvironment, ROOT as root } from '../fixtures/demo';
import { protocolValidator } from '../fixtures/schemas';

const readJson = (file: string) => JSON.parse(readFileSync(path.join(root, file), 'utf8'));

describe('the L³Prune cut rule', () => {
  const { vectors } = readJson('protocol/cut-rule-vectors.json') as { vectors: Array<{ name: string; losses: number[]; small: number; large: number }> };
  it('has shared vectors to test against', () => assert.ok(vectors.length >= 10));
  for (const vector of vectors) {
    it(`${vector.name} → small ${vector.small}, large ${vector.large} (same vectors as the worker)`, () => {
      assert.deepEqual(l3pruneCuts(vector.losses), { small: vector.small, large: vector.large });
    });
  }
  it('refuses empty or non-finite curves', () => {
    assert.throws(() => l3pruneCuts([]));
    assert.throws(() => l3pruneCuts([1, Number.NaN, 2]));
  });
});

describe('worker protocol: real worker output against protocol/*.schema.json', function () {
  this.timeout(300_000);
  const { python, model, triples: data } = DEMO;
  let runDir = '';
  let tmp = '';

  before(function () {
    requireWorkerEnvironment(this);
    tmp = mkdtempSync(path.join(tmpdir(), 'l3prune-protocol-'));
    runDir = path.join(tmp, 'run');
    execFileSync(python, ['-m', 'l3prune', 'analyze', '--model', model, '--data', data, '--run-dir', runDir, '--samples', '8', '--batch-size', '4', '--max-length', '32'], {
      env: { ...process.env, HF_HUB_OFFLINE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  });
  after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

  it('every line of events.jsonl validates against the events schema and parses in TypeScript', async () => {
    const { ajv: validator, validatorFor } = protocolValidator();
    const validate = validatorFor('protocol/events.schema.json');
    const lines = readFileSync(path.join(runDir, 'events.jsonl'), 'utf8').trim().split('\n');
    assert.ok(lines.length >= 4);
    for (const line of lines) {
      const event = JSON.parse(line);
      assert.ok(validate(event), `${line.slice(0, 120)}: ${validator.errorsText(validate.errors)}`);
      assert.ok(parseRunEvent(event), `the TypeScript parser accepts ${event.event}`);
    }
    const events = await readAllEvents(runDir);
    const last = events[events.length - 1];
    assert.ok(isLayerLosses(last), 'a successful analyze ends with layer_losses');
    assert.equal(last.losses.length, 30);
    assert.deepEqual(l3pruneCuts(last.losses), { small: last.small, large: last.large }, 'both languages pick the same cuts');
  });

  it('run.json validates against the run schema and says succeeded', () => {
    const { ajv: validator, validatorFor } = protocolValidator();
    const validate = validatorFor('protocol/run.schema.json');
    const record = JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8'));
    assert.ok(validate(record), validator.errorsText(validate.errors));
    assert.equal(parseRunRecord(record)?.status, 'succeeded');
  });

  it('the TypeScript parsers refuse what the schema refuses', () => {
    const validate = protocolValidator().validatorFor('protocol/events.schema.json');
    const bad = [
      { event: 'layer_losses', time: '2026-11-29T01:58:33.547Z', losses: [], small: 1, large: 1, blockInfluence: [], angularDistance: [] },
      { event: 'layer_losses', time: '2026-11-29T01:58:33.547Z', losses: [1, 2], small: 3, large: 2, blockInfluence: [0, 0], angularDistance: [0, 0] },
      { event: 'progress', time: '2026-11-29T01:58:33.547Z', batch: -1, batches: 2 },
      { time: '2026-11-29T01:58:33.547Z' },
    ];
    for (const event of bad) {
      assert.equal(validate(event), false, `schema refuses ${JSON.stringify(event)}`);
      assert.equal(parseRunEvent(event), undefined, `parser refuses ${JSON.stringify(event)}`);
    }
  });
});
