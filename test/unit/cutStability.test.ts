import * as assert from 'node:assert/strict';
import { cutConfidence, lossBand, SURE_SHARE, type CutStabilityView } from '../../src/shared/prune/cutStability';

describe('cut stability in the layer-stack panel', () => {
  const stability: CutStabilityView = {
    lossStd: [0.4, 0.2, 0.8, 0.1],
    batches: 16,
    resamples: 1000,
    smallShare: [0.55, 0.45, 0, 0],
    largeShare: [0, 0, 0.02, 0.98],
    small: 0.55,
    large: 0.98,
  };

  it('draws the band one standard error of the mean around the curve', () => {
    const { lower, upper } = lossBand([2, 1.5, 1.8, 1.2], stability);
    assert.deepEqual(upper.map((v) => +v.toFixed(6)), [2.1, 1.55, 2, 1.225]);
    assert.deepEqual(lower.map((v) => +v.toFixed(6)), [1.9, 1.45, 1.6, 1.175]);
  });

  it('a single batch has no band', () => {
    const { lower, upper } = lossBand([2, 1], { ...stability, batches: 1 });
    assert.deepEqual(lower, [2, 1]);
    assert.deepEqual(upper, [2, 1]);
  });

  it('says a clear winner is settled and names no rival under 5 %', () => {
    const large = cutConfidence('large', 4, stability);
    assert.equal(large.sure, true);
    assert.deepEqual(large.rivals, []);
    assert.equal(large.text, 'keep 4 won 98 % of 1,000 resamples of the 16 batches');
  });

  it(`suggests more samples when the winner carries less than ${SURE_SHARE * 100} %`, () => {
    const small = cutConfidence('small', 1, stability);
    assert.equal(small.sure, false);
    assert.deepEqual(small.rivals, [{ depth: 2, share: 0.45 }]);
    assert.match(small.text, /^not settled: keep 1 won only 55 % .*\(also 2: 45 %\); compute the initial loss on more samples$/);
  });
});
