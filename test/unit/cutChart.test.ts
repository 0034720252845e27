import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { inspectModel } from '../../src/model/inspect';
import type { LayerStack } from '../../src/shared/model/stack';
import { bootstrapBars, cutMarker, depthAt, depthRange } from '../../src/shared/prune/cutChart';
import type { CutStabilityView } from '../../src/shared/prune/cutStability';
import { LLAMA3_8B, writeLlamaFolder } from '../fixtures/checkpoints';
import { useTempDir } from '../fixtures/tmp';

describe('the cut chart of the layer-stack panel', () => {
  const dir = useTempDir();
  let llama: LayerStack;
  before(async () => {
    writeLlamaFolder(path.join(dir(), 'llama3-8b'), LLAMA3_8B, 2);
    llama = await inspectModel(path.join(dir(), 'llama3-8b'));
  });

  describe('a click on the curve picks a depth', () => {
    // uPlot's posToVal on a linear scale: min + (px / width) · (max − min). The click's pixel goes through it.
    const valueAt = (px: number, width: number, [min, max]: [number, number]) => min + (px / width) * (max - min);

    it('the pixel where depth d is drawn picks d, for every depth of a 32-layer stack', () => {
      const range = depthRange(32);
      const width = 640;
      for (let d = 1; d <= 32; d++) {
        const px = ((d - range[0]) / (range[1] - range[0])) * width;
        assert.equal(depthAt(valueAt(px, width, range), 32), d);
      }
    });

    it('anywhere within half a layer of a depth picks it; the frame edges pick 1 and N', () => {
      assert.equal(depthAt(7.49, 32), 7);
      assert.equal(depthAt(6.51, 32), 7);
      assert.equal(depthAt(0.5, 32), 1);
      assert.equal(depthAt(32.5, 32), 32, 'the right edge rounds up to N+1: clamped to N');
    });

    it('off the axis, or not a number, picks nothing', () => {
      for (const x of [0.49, 32.51, -3, Number.NaN, Number.POSITIVE_INFINITY]) assert.equal(depthAt(x, 32), undefined, String(x));
      assert.equal(depthAt(1, 0), undefined, 'no layers');
    });

    it('a one-layer stack still has a depth to click', () => {
      assert.deepEqual(depthRange(1), [0.5, 1.5]);
      assert.equal(depthAt(1.2, 1), 1);
    });
  });

  describe('the labels of the L³Prune cut markers', () => {
    it('name the cut and its cost in the published Llama 3 8B numbers (8,030,261,248 params, 218,112,000 a layer)', () => {
      const small = cutMarker(llama, 'small', 8);
      assert.equal(small.label, 'small · keep 8');
      // 8,030,261,248 − 24 · 218,112,000 = 2,795,573,248; uniform layers: ×32/8.
      assert.equal(small.cost, '2.80B params · 25 % of layers · ×4.00');
      assert.equal(small.confidence, undefined, 'no bootstrap, no claim');
      const large = cutMarker(llama, 'large', 29);
      assert.equal(large.label, 'large · keep 29');
      assert.equal(large.cost, `${((8_030_261_248 - 3 * 218_112_000) / 1e9).toFixed(2)}B params · 91 % of layers · ×${(32 / 29).toFixed(2)}`);
    });

    it('carry the bootstrap share of the reported cut', () => {
      const stability: CutStabilityView = {
        lossStd: Array(32).fill(0.1), batches: 16, resamples: 1000,
        smallShare: [], largeShare: [], small: 0.814, large: 0.5,
      };
      assert.equal(cutMarker(llama, 'small', 8, stability).confidence, 'won 81 % of resamples');
      assert.equal(cutMarker(llama, 'large', 29, stability).confidence, 'won 50 % of resamples');
    });

    it('refuse a cut outside the stack', () => {
      assert.throws(() => cutMarker(llama, 'small', 0), /keep must be a whole number of layers from 1 to 32/);
    });
  });

  describe('the bootstrap bars under the curve', () => {
    it('one bar per depth that won a resample, per half, nothing for depths that never won', () => {
      const stability: CutStabilityView = {
        lossStd: [0, 0, 0, 0], batches: 4, resamples: 200,
        smallShare: [0.6, 0.4, 0, 0], largeShare: [0, 0, 0.05, 0.95], small: 0.6, large: 0.95,
      };
      assert.deepEqual(bootstrapBars(stability, 4), [
        { depth: 1, variant: 'small', share: 0.6 },
        { depth: 2, variant: 'small', share: 0.4 },
        { depth: 3, variant: 'large', share: 0.05 },
        { depth: 4, variant: 'large', share: 0.95 },
      ]);
    });

    it('ignores shares beyond the stack or not numbers (an analysis of another model)', () => {
      const stability: CutStabilityView = {
        lossStd: [0, 0], batches: 2, resamples: 10,
        smallShare: [Number.NaN, 1, 0.5], largeShare: [0, 0, 1], small: 1, large: 1,
      };
      assert.deepEqual(bootstrapBars(stability, 2), [{ depth: 2, variant: 'small', share: 1 }]);
    });
  });
});
