import type { EvaluationResult } from '../protocol/workerEvents';

/**
 * The variant comparison as plain data: rows gathered from evaluate run folders, their Pareto front, the
 * expected-cost guide and the CSV/JSON exports. Free of VS Code and Node so the host, the webview and the
 * unit tests all compute the same thing.
 */
export interface VariantRow {
  /** The evaluate run's folder: the row's identity in the panel. */
  id: string;
  runId: string;
  label: string;
  model: string;
  modelName: string;
  /** The training run of a finetuned variant; absent for the base model cut at `layers`. */
  fromRun?: string;
  layers: number;
  /** Layers of the uncut model, when the run said (model_loaded). */
  originalLayers?: number;
  params: number;
  bytes: number;
  /** MTEB main score per task; null where the worker could not compute it. */
  scores: Record<string, number | null>;
  averageScore: number | null;
  latencyMsPerBatch: number;
  textsPerSecond: number;
  batchSize: number;
  maxLength: number;
  device: string;
  evaluatedAt: string;
}

export type CostAxis = 'params' | 'latency';
export const COST_AXES: readonly CostAxis[] = ['params', 'latency'];

/** The part of the run store's summary (src/runs/runStore) a row is read from; the store itself is host code. */
export interface VariantSource {
  id: string;
  runDir: string;
  verb: string;
  status: string;
  model?: string;
  fromRun?: string;
  evaluation?: { originalNumLayers?: number; result?: EvaluationResult };
  record: { endedAt: string | null; heartbeatAt: string };
}

const baseName = (p: string) => p.replace(/[\\/]+$/, '').split(/[\\/]/).pop() || p;

/** Every succeeded evaluate run with a complete result, grouped by model, deepest variant first. */
export function variantRows(runs: readonly VariantSource[]): VariantRow[] {
  const rows: VariantRow[] = [];
  const trimmed = (p: string) => p.replace(/[\\/]+$/, '');
  const byFolder = new Map(runs.map((r) => [trimmed(r.runDir), r]));
  for (const run of runs) {
    const result = run.evaluation?.result;
    if (run.verb !== 'evaluate' || run.status !== 'succeeded' || !result) continue;
    // A trained variant is loaded from its run's merged model/ folder; it belongs with its base model.
    const model = (run.fromRun ? byFolder.get(trimmed(run.fromRun))?.model : undefined) ?? run.model ?? '';
    const modelName = model ? baseName(model) : '?';
    const fromRun = run.fromRun;
    const originalLayers = run.evaluation?.originalNumLayers;
    const depth = originalLayers === undefined ? `keep ${result.numLayers}` : result.numLayers === originalLayers ? `full (${originalLayers} layers)` : `keep ${result.numLayers} of ${originalLayers}`;
    rows.push({
      id: run.runDir,
      runId: run.id,
      label: `${modelName} · ${depth}${fromRun ? ` · trained (${baseName(fromRun)})` : ''}`,
      model,
      modelName,
      fromRun,
      layers: result.numLayers,
      originalLayers,
      params: result.params,
      bytes: result.bytes,
      scores: { ...result.scores },
      averageScore: result.averageScore,
      latencyMsPerBatch: result.latencyMsPerBatch,
      textsPerSecond: result.textsPerSecond,
      batchSize: result.batchSize,
      maxLength: result.maxLength,
      device: result.device,
      evaluatedAt: run.record.endedAt ?? run.record.heartbeatAt,
    });
  }
  return rows.sort(
    (a, b) =>
      a.modelName.localeCompare(b.modelName) ||
      b.layers - a.layers ||
      Number(!!a.fromRun) - Number(!!b.fromRun) ||
      b.evaluatedAt.localeCompare(a.evaluatedAt),
  );
}

/** Task columns: every task any variant was scored on, alphabetically, so rows line up. */
export function taskColumns(rows: readonly VariantRow[]): string[] {
  return [...new Set(rows.flatMap((r) => Object.keys(r.scores)))].sort((a, b) => a.localeCompare(b));
}

export function costOf(row: VariantRow, axis: CostAxis): number {
  return axis === 'params' ? row.params : row.latencyMsPerBatch;
}

export interface Point {
  x: number;
  y: number;
}

/**
 * Which points no other point beats: none has a cost as low and a score as high, with one of the two
 * strictly better. Equal points are all on the front; non-finite ones never are.
 */
export function paretoFront(points: readonly Point[]): boolean[] {
  const finite = (p: Point) => Number.isFinite(p.x) && Number.isFinite(p.y);
  return points.map(
    (p) => finite(p) && !points.some((q) => finite(q) && q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y)),
  );
}

export function paretoRows(rows: readonly VariantRow[], axis: CostAxis): boolean[] {
  return paretoFront(rows.map((r) => ({ x: costOf(r, axis), y: r.averageScore ?? Number.NaN })));
}

/**
 * The paper's expectation that cost falls in proportion to the layers cut: each variant's cost predicted
 * from its model's deepest evaluated variant (the reference) as reference cost × layers / reference layers.
 * A variant whose measured cost lies right of its predicted one keeps more fixed cost (embeddings, head,
 * tokenisation) than the layer count alone suggests.
 */
export function expectedCosts(rows: readonly VariantRow[], axis: CostAxis): Array<number | undefined> {
  const reference = new Map<string, VariantRow>();
  for (const row of rows) {
    const current = reference.get(row.model);
    // Among equally deep variants the base model is the natural reference: training does not change cost.
    if (!current || row.layers > current.layers || (row.layers === current.layers && !row.fromRun && !!current.fromRun)) {
      reference.set(row.model, row);
    }
  }
  return rows.map((row) => {
    const ref = reference.get(row.model)!;
    const cost = costOf(ref, axis);
    return Number.isFinite(cost) && ref.layers > 0 ? (cost * row.layers) / ref.layers : undefined;
  });
}

export interface PlotSeries {
  kind: 'variants' | 'front' | 'expected';
  label: string;
  values: Array<number | null>;
}

/**
 * uPlot's aligned layout for the Pareto plot: one shared, ascending x (measured and predicted costs),
 * each series null where it has no point. `rowAt[i]` is the row drawn at x[i] by the variants series.
 */
export function paretoPlotData(rows: readonly VariantRow[], axis: CostAxis): { x: number[]; series: PlotSeries[]; rowAt: Array<number | null> } {
  const front = paretoRows(rows, axis);
  const expected = expectedCosts(rows, axis);
  const models = [...new Set(rows.map((r) => r.model))];
  interface Entry {
    x: number;
    row: number | null;
    score: number | null;
    front: number | null;
    expected: Map<string, number>;
    layers: number;
  }
  const entries: Entry[] = [];
  rows.forEach((row, i) => {
    if (row.averageScore === null) return;
    const x = costOf(row, axis);
    if (Number.isFinite(x)) {
      entries.push({ x, row: i, score: row.averageScore, front: front[i] ? row.averageScore : null, expected: new Map(), layers: row.layers });
    }
    const predicted = expected[i];
    if (predicted !== undefined) {
      entries.push({ x: predicted, row: null, score: null, front: null, expected: new Map([[row.model, row.averageScore]]), layers: row.layers });
    }
  });
  // Ties in x keep the layer order so each model's guide is drawn shallow to deep.
  entries.sort((a, b) => a.x - b.x || a.layers - b.layers);
  const series: PlotSeries[] = [
    { kind: 'variants', label: 'variants', values: entries.map((e) => e.score) },
    { kind: 'front', label: 'Pareto front', values: entries.map((e) => e.front) },
    ...models.map((model) => ({
      kind: 'expected' as const,
      label: models.length > 1 ? `expected cost ∝ layers kept (${baseName(model)})` : 'expected cost ∝ layers kept',
      values: entries.map((e) => e.expected.get(model) ?? null),
    })),
  ];
  return { x: entries.map((e) => e.x), series, rowAt: entries.map((e) => e.row) };
}

/** Settings that make latencies comparable; more than one value means the rows were measured differently. */
export function latencyConditions(rows: readonly VariantRow[]): string[] {
  return [...new Set(rows.map((r) => `batch ${r.batchSize}, max length ${r.maxLength}, ${r.device}`))];
}

export interface ExportedVariant extends Omit<VariantRow, 'label' | 'modelName'> {
  paretoByParams: boolean;
  paretoByLatency: boolean;
}

function exportedVariants(rows: readonly VariantRow[]): ExportedVariant[] {
  const byParams = paretoRows(rows, 'params');
  const byLatency = paretoRows(rows, 'latency');
  return rows.map(({ label: _label, modelName: _modelName, ...row }, i) => ({ ...row, paretoByParams: byParams[i], paretoByLatency: byLatency[i] }));
}

export function toJson(rows: readonly VariantRow[]): string {
  return `${JSON.stringify({ tasks: taskColumns(rows), variants: exportedVariants(rows) }, null, 2)}\n`;
}

/**
 * RFC 4180 CSV: a field with a comma, quote or line break is quoted with its quotes doubled. A text field
 * that a spreadsheet would run as a formula (= + - @, tab, CR first) is prefixed with a quote mark.
 */
export function csvField(value: string | number | boolean | null | undefined): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') return String(value);
  const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(rows: readonly VariantRow[]): string {
  const tasks = taskColumns(rows);
  const header = ['run', 'model', 'from_run', 'layers_kept', 'layers_total', 'params', 'bytes', ...tasks, 'average', 'latency_ms_per_batch', 'texts_per_second', 'batch_size', 'max_length', 'device', 'pareto_by_params', 'pareto_by_latency'];
  const lines = exportedVariants(rows).map((v) => [
    v.runId, v.model, v.fromRun, v.layers, v.originalLayers, v.params, v.bytes, ...tasks.map((t) => v.scores[t]), v.averageScore,
    v.latencyMsPerBatch, v.textsPerSecond, v.batchSize, v.maxLength, v.device, v.paretoByParams, v.paretoByLatency,
  ]);
  return [header, ...lines].map((cells) => cells.map(csvField).join(',')).join('\r\n') + '\r\n';
}
