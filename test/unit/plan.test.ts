import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { inspectModel } from '../../src/model/inspect';
import type { LayerStack } from '../../src/shared/model/stack';
import { keepForPrunePercent, PlanError, planKeep, planPrunePercent } from '../../src/shared/prune/plan';
import { LLAMA3_8B, writeLlamaFolder } from '../fixtures/checkpoints';
import { useTempDir } from '../fixtures/tmp';

describe('prune plans', () => {
  const dir = useTempDir();
  let llama: LayerStack;
  before(async () => {
    writeLlamaFolder(path.join(dir(), 'llama3-8b'), LLAMA3_8B, 2);
    llama = await inspectModel(path.join(dir(), 'llama3-8b'));
  });

  it('keeping every layer changes nothing', () => {
    const plan = planKeep(llama, 32);
    assert.equal(plan.params, llama.totalParams);
    assert.equal(plan.prunedLayers, 0);
    assert.equal(plan.paramsRemovedShare, 0);
    assert.equal(plan.expectedSpeedup, 1);
  });

  it('removes exactly the cut layers’ parameters and bytes', () => {
    const plan = planKeep(llama, 20);
    assert.equal(plan.prunedLayers, 12);
    assert.deepEqual(plan.prunedLayerIndices, [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31]);
    assert.equal(plan.params, 8_030_261_248 - 12 * 218_112_000);
    assert.equal(plan.bytes, 2 * plan.params);
    assert.equal(plan.paramsRemovedShare, (12 * 218_112_000) / 8_030_261_248);
    assert.equal(plan.expectedSpeedup, 32 / 20, 'uniform layers: speed-up is N/n');
  });

  it('turns a prune percentage into layers kept as the paper does: floor, in exact arithmetic', () => {
    assert.equal(keepForPrunePercent(32, 10), 28);
    assert.equal(keepForPrunePercent(32, 20), 25);
    assert.equal(keepForPrunePercent(32, 30), 22);
    assert.equal(keepForPrunePercent(30, 30), 21);
    assert.equal(keepForPrunePercent(30, 0), 30);
    assert.equal(keepForPrunePercent(5, 80), 1, 'exact: float int(5 * (1 - 0.8)) would give 0');
    assert.equal(keepForPrunePercent(30, 99.9), 1, 'at least one layer stays');
    assert.equal(planPrunePercent(llama, 50).keep, 16);
    assert.equal(planPrunePercent(llama, 10).keep, 28);
  });

  describe('the keep rule against protocol/keep-rule-vectors.json (the worker is tested against the same file)', () => {
    const file = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'protocol', 'keep-rule-vectors.json'), 'utf8')) as {
      vectors: Array<{ numLayers: number; percent: number; keep: number }>;
      invalid: Array<{ numLayers: number; percent: number }>;
    };
    it('has the paper’s cases among its vectors', () => {
      const has = (n: number, p: number, keep: number) => file.vectors.some((v) => v.numLayers === n && v.percent === p && v.keep === keep);
      assert.ok(has(32, 10, 28) && has(32, 20, 25) && has(30, 30, 21) && has(1, 50, 1));
    });
    for (const v of file.vectors) {
      it(`${v.numLayers} layers, ${v.percent} % → keep ${v.keep}`, () => assert.equal(keepForPrunePercent(v.numLayers, v.percent), v.keep));
    }
    for (const v of file.invalid) {
      it(`refuses ${v.numLayers} layers at ${v.percent} %`, () => assert.throws(() => keepForPrunePercent(v.numLayers, v.percent), PlanError));
    }
  });

  it('refuses keeps and percentages outside the stack', () => {
    for (const keep of [0, 33, 2.5, -1, Number.NaN]) assert.throws(() => planKeep(llama, keep), PlanError);
    for (const percent of [-1, 100, 250, Number.NaN, 12.345]) assert.throws(() => planPrunePercent(llama, percent), PlanError);
  });
});
