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
  /** Cap per built-in task; null: the whole sets; undefined: an older worker's run, which did not record it. */
  maxExamples?: number | null;
  /** Examples each built-in task was scored on, when the worker recorded them. */
  examples?: Record<string, number>;
  /** The tasks it was asked for, built-in and MTEB (its resolved spec), so a re-evaluation asks the same. */
  spec?: { tasks: string[]; mtebTasks: string[] };
  evaluatedAt: string;
  /** evaluate --onnx: the exported graph this row scored (in onnxruntime in the worker); absent for torch. */
  onnx?: { folder: string; precision: OnnxPrecision };
  /**
   * An ONNX row's average score minus its float variant's (the latest torch evaluation of the same model, training
   * run and layers); null when there is none to compare with, or either average is undefined.
   */
  scoreChange?: number | null;
  /** The torch row `scoreChange` is measured against. */
  floatRunId?: string;
  /**
   * An ONNX row's texts per second in onnxruntime-node (the extension's own runtime), measured by the host; null when
   * it could not be measured; absent until it is.
   */
  ortNodeTextsPerSecond?: number | null;
  /** ortNodeTextsPerSecond over that of the fp32 export of the same variant, measured on the same texts. */
  ortNodeSpeedup?: number;
}

export type OnnxPrecision = 'fp32' | 'fp16' | 'int8';
const PRECISION_ORDER: Record<OnnxPrecision, number> = { fp32: 0, fp16: 1, int8: 2 };

/** What a variant costs: parameters, latency (lower is better), or throughput (texts per second: higher is better). */
export type CostAxis = 'params' | 'latency' | 'throughput';
export const COST_AXES: readonly CostAxis[] = ['params', 'latency', 'throughput'];

/** The part of the run store's summary (src/runs/runStore) a row is read from; the store itself is host code. */
export interface VariantSource {
  id: string;
  runDir: string;
  verb: string;
  status: string;
  model?: string;
  fromRun?: string;
  evaluation?: { originalNumLayers?: number; result?: EvaluationResult & { onnx?: { folder: string; precision: OnnxPrecision } } };
  record: { endedAt: string | null; heartbeatAt: string; spec?: unknown };
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
    const onnx = result.onnx ? { folder: result.onnx.folder, precision: result.onnx.precision } : undefined;
    rows.push({
      id: run.runDir,
      runId: run.id,
      label: `${modelName} · ${depth}${fromRun ? ` · trained (${baseName(fromRun)})` : ''}${onnx ? ` · ONNX ${onnx.precision}` : ''}`,
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
      ...(result.maxExamples !== undefined ? { maxExamples: result.maxExamples } : {}),
      ...(result.examples ? { examples: { ...result.examples } } : {}),
      spec: specTasks(run.record.spec),
      evaluatedAt: run.record.endedAt ?? run.record.heartbeatAt,
      ...(onnx ? { onnx } : {}),
    });
  }
  rows.sort(
    (a, b) =>
      a.modelName.localeCompare(b.modelName) ||
      b.layers - a.layers ||
      Number(!!a.fromRun) - Number(!!b.fromRun) ||
      // Each variant's torch row first, then its exports: fp32, fp16, int8.
      (a.onnx ? 1 + PRECISION_ORDER[a.onnx.precision] : 0) - (b.onnx ? 1 + PRECISION_ORDER[b.onnx.precision] : 0) ||
      b.evaluatedAt.localeCompare(a.evaluatedAt),
  );
  return withScoreChanges(rows);
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const specTasks = (spec: unknown): { tasks: string[]; mtebTasks: string[] } => {
  const { tasks, mtebTasks } = (spec ?? {}) as { tasks?: unknown; mtebTasks?: unknown };
  return { tasks: strings(tasks), mtebTasks: strings(mtebTasks) };
};

/**
 * What an evaluation was measured under. Scores move with the max length and the examples kept, latencies with all
 * four, so two rows compare honestly only when these are equal.
 */
export interface EvalConditions {
  maxLength: number;
  batchSize: number;
  /** null: every example; undefined: not recorded (a run of an older worker). */
  maxExamples: number | null | undefined;
  device: string;
}

export type ConditionName = keyof EvalConditions;
export const CONDITION_NAMES: readonly ConditionName[] = ['maxLength', 'batchSize', 'maxExamples', 'device'];
const CONDITION_LABEL: Record<ConditionName, string> = { maxLength: 'max length', batchSize: 'batch size', maxExamples: 'examples per task', device: 'device' };

export const conditionsOf = (row: VariantRow): EvalConditions => ({ maxLength: row.maxLength, batchSize: row.batchSize, maxExamples: row.maxExamples, device: row.device });

export function conditionValue(c: EvalConditions, name: ConditionName): string {
  if (name === 'maxExamples') return c.maxExamples === undefined ? 'not recorded' : c.maxExamples === null ? 'all' : String(c.maxExamples);
  return String(c[name]);
}

export const conditionsText = (c: EvalConditions): string => CONDITION_NAMES.map((n) => `${CONDITION_LABEL[n]} ${conditionValue(c, n)}`).join(' · ');

export interface ConditionDifference {
  name: ConditionName;
  label: string;
  value: string;
  reference: string;
}

export interface ConditionFlag {
  /** The conditions most of the model's rows were evaluated under (ties: the deepest variant's), to re-evaluate to. */
  reference: EvalConditions;
  differences: ConditionDifference[];
  /** Another evaluation of the same variant (same runtime) matches the reference: this one needs no re-evaluation. */
  rematched: boolean;
}

/**
 * Per row: how its conditions differ from its model's reference, or undefined where they match. The reference is the
 * conditions most of that model's rows share; a tie goes to the deepest variant's (the full model the cuts are
 * measured against), then the newest. An ONNX row always runs on the CPU, so its device is not held against it.
 */
export function conditionFlags(rows: readonly VariantRow[]): Array<ConditionFlag | undefined> {
  const reference = referenceConditions(rows);
  const differencesOf = (row: VariantRow): ConditionDifference[] => {
    const ref = reference.get(row.model)!;
    const own = conditionsOf(row);
    return CONDITION_NAMES.filter((n) => !(n === 'device' && row.onnx) && conditionValue(own, n) !== conditionValue(ref, n)).map((name) => ({
      name,
      label: CONDITION_LABEL[name],
      value: conditionValue(own, name),
      reference: conditionValue(ref, name),
    }));
  };
  const all = rows.map(differencesOf);
  const runtime = (row: VariantRow) => `${variantKey(row)}|${row.onnx?.precision ?? 'torch'}`;
  const matched = new Set(rows.flatMap((row, i) => (all[i].length ? [] : [runtime(row)])));
  return rows.map((row, i) => (all[i].length ? { reference: reference.get(row.model)!, differences: all[i], rematched: matched.has(runtime(row)) } : undefined));
}

/** Each model's reference conditions (see conditionFlags): what its next evaluation should match. */
export function referenceConditions(rows: readonly VariantRow[]): Map<string, EvalConditions> {
  const key = (c: EvalConditions) => JSON.stringify(CONDITION_NAMES.map((n) => conditionValue(c, n)));
  const reference = new Map<string, EvalConditions>();
  for (const model of new Set(rows.map((r) => r.model))) {
    const own = rows.filter((r) => r.model === model);
    const counts = new Map<string, { count: number; row: VariantRow }>();
    for (const row of own) {
      const k = key(conditionsOf(row));
      const entry = counts.get(k);
      const better = !entry || row.layers > entry.row.layers || (row.layers === entry.row.layers && row.evaluatedAt > entry.row.evaluatedAt);
      counts.set(k, { count: (entry?.count ?? 0) + 1, row: better ? row : entry.row });
    }
    const best = [...counts.values()].sort(
      (a, b) => b.count - a.count || b.row.layers - a.row.layers || b.row.evaluatedAt.localeCompare(a.row.evaluatedAt),
    )[0];
    reference.set(model, conditionsOf(best.row));
  }
  return reference;
}

/** The tooltip of a flag: each differing condition against the reference. */
export const flagText = (flag: ConditionFlag): string =>
  `Evaluated under other conditions than the model's other variants: ${flag.differences.map((d) => `${d.label} ${d.value} (others: ${d.reference})`).join(', ')}.` +
  (flag.rematched ? ' Another evaluation of this variant matches them.' : '');

/** One variant, however it runs: the model, the training run and the layers kept. */
const variantKey = (row: VariantRow) => JSON.stringify([row.model, row.fromRun ?? null, row.layers]);

/**
 * Each ONNX row's score change against its float variant: the latest torch evaluation of the same model, training
 * run and depth (rows are sorted newest first within a variant, so the first torch row seen is the latest).
 */
export function withScoreChanges(rows: VariantRow[]): VariantRow[] {
  const float = new Map<string, VariantRow>();
  for (const row of rows) if (!row.onnx && !float.has(variantKey(row))) float.set(variantKey(row), row);
  return rows.map((row) => {
    if (!row.onnx) return row;
    const base = float.get(variantKey(row));
    const change = base && row.averageScore !== null && base.averageScore !== null ? row.averageScore - base.averageScore : null;
    return { ...row, scoreChange: change, ...(base ? { floatRunId: base.runId } : {}) };
  });
}

/** A measurement of one export in onnxruntime-node, keyed by its folder (the host's cache). */
export interface OrtNodeSpeed {
  textsPerSecond: number;
}

/**
 * The host's onnxruntime-node speeds put on the ONNX rows, with each export's speed-up over the fp32 export of
 * the same variant (both measured by the host on the same texts, so the ratio holds even on a busy machine).
 */
export function withOrtNodeSpeeds(rows: readonly VariantRow[], speeds: ReadonlyMap<string, OrtNodeSpeed>): VariantRow[] {
  const measured = rows.map((row): VariantRow => {
    const speed = row.onnx ? speeds.get(row.onnx.folder) : undefined;
    const { ortNodeTextsPerSecond: _old, ortNodeSpeedup: _oldRatio, ...rest } = row;
    if (!speed) return rest;
    return { ...rest, ortNodeTextsPerSecond: Number.isFinite(speed.textsPerSecond) && speed.textsPerSecond > 0 ? speed.textsPerSecond : null };
  });
  const fp32 = new Map<string, number>();
  for (const row of measured) {
    if (row.onnx?.precision === 'fp32' && typeof row.ortNodeTextsPerSecond === 'number' && !fp32.has(variantKey(row))) fp32.set(variantKey(row), row.ortNodeTextsPerSecond);
  }
  return measured.map((row) => {
    const reference = fp32.get(variantKey(row));
    return row.onnx && typeof row.ortNodeTextsPerSecond === 'number' && reference !== undefined ? { ...row, ortNodeSpeedup: row.ortNodeTextsPerSecond / reference } : row;
  });
}

/** The export folders whose rows still lack an onnxruntime-node measurement, each once. */
export function unmeasuredExports(rows: readonly VariantRow[], speeds: ReadonlyMap<string, unknown>): string[] {
  return [...new Set(rows.flatMap((r) => (r.onnx && !speeds.has(r.onnx.folder) ? [r.onnx.folder] : [])))];
}

/** Task columns: every task any variant was scored on, alphabetically, so rows line up. */
export function taskColumns(rows: readonly VariantRow[]): string[] {
  return [...new Set(rows.flatMap((r) => Object.keys(r.scores)))].sort((a, b) => a.localeCompare(b));
}

export function costOf(row: VariantRow, axis: CostAxis): number {
  return axis === 'params' ? row.params : axis === 'latency' ? row.latencyMsPerBatch : row.textsPerSecond;
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
  // More throughput is better, as less cost is: the front is found on its negation.
  const sign = axis === 'throughput' ? -1 : 1;
  return paretoFront(rows.map((r) => ({ x: sign * costOf(r, axis), y: r.averageScore ?? Number.NaN })));
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
    // Likewise torch over an export: the reference is the float model the cut is measured against.
    const better = (a: VariantRow, b: VariantRow) => (a.fromRun ? 1 : 0) - (b.fromRun ? 1 : 0) || (a.onnx ? 1 : 0) - (b.onnx ? 1 : 0);
    if (!current || row.layers > current.layers || (row.layers === current.layers && better(row, current) < 0)) {
      reference.set(row.model, row);
    }
  }
  return rows.map((row) => {
    const ref = reference.get(row.model)!;
    const cost = costOf(ref, axis);
    // Throughput is the inverse of cost: it grows as the layers kept shrink.
    if (axis === 'throughput') return Number.isFinite(cost) && row.layers > 0 ? (cost * ref.layers) / row.layers : undefined;
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
  const header = [
    'run', 'model', 'from_run', 'layers_kept', 'layers_total', 'params', 'bytes', ...tasks, 'average', 'latency_ms_per_batch', 'texts_per_second', 'batch_size', 'max_length', 'device', 'pareto_by_params', 'pareto_by_latency',
    'runtime', 'onnx_folder', 'score_change_vs_float', 'float_run', 'ort_node_texts_per_second', 'ort_node_speedup_vs_fp32',
  ];
  const lines = exportedVariants(rows).map((v) => [
    v.runId, v.model, v.fromRun, v.layers, v.originalLayers, v.params, v.bytes, ...tasks.map((t) => v.scores[t]), v.averageScore,
    v.latencyMsPerBatch, v.textsPerSecond, v.batchSize, v.maxLength, v.device, v.paretoByParams, v.paretoByLatency,
    v.onnx ? `onnx-${v.onnx.precision}` : 'torch', v.onnx?.folder, v.scoreChange, v.floatRunId, v.ortNodeTextsPerSecond, v.ortNodeSpeedup,
  ]);
  return [header, ...lines].map((cells) => cells.map(csvField).join(',')).join('\r\n') + '\r\n';
}
