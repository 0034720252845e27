import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseRunPlotMessage } from '../../src/shared/protocol/runPlotMessages';
import { alignSeries, smooth } from '../../webview/runPlot/smoothing';

describe('loss plot', () => {
  it('smooths like TensorBoard: debiased EMA, weight 0 is the raw series', () => {
    assert.deepEqual(smooth([1, 2, 3], 0), [1, 2, 3]);
    const s = smooth([4, 4, 4, 4], 0.9);
    s.forEach((v) => assert.ok(Math.abs(v - 4) < 1e-12), 'a constant stays constant (no pull towards 0)');
    const noisy = Array.from({ length: 200 }, (_, i) => (i % 2 ? 1 : 3));
    const smoothed = smooth(noisy, 0.9).slice(50);
    assert.ok(Math.max(...smoothed) - Math.min(...smoothed) < 0.3, 'alternation is flattened');
  });

  it('aligns runs with different steps on one x axis', () => {
    const [x, a, b] = alignSeries([
      { x: [1, 2, 3], y: [10, 20, 30] },
      { x: [2, 4], y: [5, 6] },
    ]);
    assert.deepEqual(x, [1, 2, 3, 4]);
    assert.deepEqual(a, [10, 20, 30, null]);
    assert.deepEqual(b, [null, 5, null, 6]);
  });

  it('aligns 100k points quickly', () => {
    const n = 100_000;
    const x = Array.from({ length: n }, (_, i) => i);
    const t0 = performance.now();
    alignSeries([{ x, y: smooth(x.map((i) => Math.sin(i)), 0.6) }, { x: x.filter((i) => i % 2 === 0), y: x.filter((i) => i % 2 === 0) }]);
    assert.ok(performance.now() - t0 < 1500);
  });

  it('accepts openRun only for a run the page was shown', () => {
    const shown = new Set(['/runs/a']);
    assert.deepEqual(parseRunPlotMessage({ type: 'openRun', id: '/runs/a' }, shown), { type: 'openRun', id: '/runs/a' });
    assert.equal(parseRunPlotMessage({ type: 'openRun', id: '/etc' }, shown), undefined);
    assert.equal(parseRunPlotMessage({ type: 'openRun', id: '/runs/a', extra: true }, shown), undefined);
    fc.assert(
      fc.property(fc.anything(), (raw) => {
        const parsed = parseRunPlotMessage(raw, shown);
        assert.ok(parsed === undefined || parsed.type === 'ready' || parsed.type === 'prefs' || shown.has(parsed.id));
      }),
      { numRuns: 3000, seed: 5 },
    );
  });
});
