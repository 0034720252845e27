/**
 * TensorBoard's loss smoothing: an exponential moving average, debiased so the first points are not
 * pulled towards zero. weight 0 returns the raw series.
 */
export function smooth(values: ReadonlyArray<number>, weight: number): number[] {
  if (weight <= 0) return [...values];
  const out = new Array<number>(values.length);
  let last = 0;
  let count = 0;
  for (let i = 0; i < values.length; i++) {
    last = last * weight + (1 - weight) * values[i];
    count++;
    out[i] = last / (1 - weight ** count);
  }
  return out;
}

/**
 * uPlot draws series against one shared x array: the sorted union of every run's x values, each run's y
 * placed at its own x and null elsewhere (drawn across with spanGaps).
 */
export function alignSeries(runs: ReadonlyArray<{ x: ReadonlyArray<number>; y: ReadonlyArray<number> }>): [number[], ...Array<Array<number | null>>] {
  if (runs.length === 1) return [[...runs[0].x], [...runs[0].y]];
  const xs = [...new Set(runs.flatMap((r) => r.x))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = runs.map((r) => {
    const column = new Array<number | null>(xs.length).fill(null);
    r.x.forEach((x, i) => {
      column[index.get(x)!] = r.y[i];
    });
    return column;
  });
  return [xs, ...ys];
}

/**
 * Tick spacings for a step axis: whole numbers only (1, 2, 5, 10, 20, 50, …), so uPlot never puts a tick at
 * step 2.5 on a short run. The splits are multiples of the spacing, so whole too.
 */
export function integerTicks(max = 1e12): number[] {
  const out: number[] = [];
  for (let scale = 1; scale <= max; scale *= 10) out.push(scale, 2 * scale, 5 * scale);
  return out;
}
