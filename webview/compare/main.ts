import uPlot from 'uplot';
import {
  conditionFlags, conditionsOf, conditionValue, COST_AXES, costOf, flagText, paretoPlotData, paretoRows, taskColumns,
  type ConditionFlag, type CostAxis, type VariantRow,
} from '../../src/shared/compare/variants';
import { formatBytes, formatParams } from '../../src/shared/format/units';
import type { CompareFromWebview, CompareToWebview } from '../../src/shared/protocol/compareMessages';
import { ChartSlot } from '../shared/chart';
import { button, registerComponents } from '../shared/components';
import { el, themeColor, vscodeApi } from '../shared/vscodeApi';

interface ViewState {
  axis: CostAxis;
}

registerComponents();
const vscode = vscodeApi<ViewState>();
const post = (message: CompareFromWebview) => vscode.postMessage(message);
const app = document.getElementById('app')!;
const state: ViewState = { axis: 'params', ...vscode.getState() };
if (!COST_AXES.includes(state.axis)) state.axis = 'params';

let rows: VariantRow[] = [];
let flags: Array<ConditionFlag | undefined> = [];
let selected: string | undefined;
let detail: HTMLElement | undefined;
const chart = new ChartSlot(app, 240, () => 340);
let chartHost: HTMLElement | undefined;
let table: HTMLTableElement | undefined;
let note: HTMLElement | undefined;

window.addEventListener('message', (event: MessageEvent<CompareToWebview>) => {
  const message = event.data;
  if (message?.type === 'show') {
    rows = message.rows;
    flags = conditionFlags(rows);
    if (message.highlight) selected = message.highlight;
    render();
  } else if (message?.type === 'exported' && note) {
    note.textContent = `Exported ${message.format.toUpperCase()} to ${message.path}`;
    note.dataset.exported = message.format;
  }
});
post({ type: 'ready' });

const AXIS_LABEL: Record<CostAxis, string> = { params: 'parameters', latency: 'latency (ms per batch)', throughput: 'throughput (texts per second)' };
const formatScore = (v: number | null | undefined) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(4) : '—');
const formatChange = (row: VariantRow) =>
  !row.onnx ? '' : typeof row.scoreChange === 'number' && Number.isFinite(row.scoreChange) ? `${row.scoreChange >= 0 ? '+' : '−'}${Math.abs(row.scoreChange).toFixed(4)}` : '—';
const formatOrtNode = (row: VariantRow) =>
  !row.onnx ? '' : row.ortNodeTextsPerSecond === undefined ? 'timing…' : row.ortNodeTextsPerSecond === null ? '—' : `${row.ortNodeTextsPerSecond.toFixed(1)}${row.ortNodeSpeedup !== undefined && row.onnx.precision !== 'fp32' ? ` (×${row.ortNodeSpeedup.toFixed(2)})` : ''}`;
const formatCost = (v: number, axis: CostAxis) =>
  axis === 'params' ? formatParams(Math.round(v)) : `${v >= 100 ? Math.round(v) : v.toFixed(1)}${axis === 'latency' ? ' ms' : ' texts/s'}`;
/** What the hover line says after the cost: the unit's context on the axis shown. */
const costContext = (row: VariantRow, axis: CostAxis) => (axis === 'params' ? 'parameters' : `${axis === 'latency' ? 'per batch' : 'in batches'} of ${row.batchSize} (${row.device})`);

function render(): void {
  chart.clear();
  const header = el('header');
  header.append(el('h1', undefined, 'Compare Variants'));
  if (!rows.length) {
    header.append(el('p', 'hint', 'No evaluated variant yet. Run “L3Prune: Evaluate…” on a model (full or cut) or on a finished training run; each evaluation becomes a row here.'));
    app.replaceChildren(header);
    return;
  }
  const tasks = taskColumns(rows);
  header.append(el('p', 'subtitle', `${rows.length} variant${rows.length === 1 ? '' : 's'} · ${tasks.length} task${tasks.length === 1 ? '' : 's'}: ${tasks.join(', ')}`));

  const controls = el('section', 'controls');
  const axisLabel = el('label', undefined, 'Cost');
  axisLabel.htmlFor = 'cost-axis';
  const axis = el('select');
  axis.id = 'cost-axis';
  for (const option of COST_AXES) {
    const o = el('option', undefined, AXIS_LABEL[option]);
    o.value = option;
    o.selected = state.axis === option;
    axis.append(o);
  }
  axis.addEventListener('change', () => {
    state.axis = COST_AXES.find((a) => a === axis.value) ?? 'params';
    vscode.setState(state);
    // The hover line names the cost on the axis shown; one from the other axis would mislead.
    const hoverLine = document.getElementById('pareto-hover');
    if (hoverLine) hoverLine.textContent = HOVER_HINT;
    drawChart();
    markPareto();
  });
  const csv = button('Export CSV', 'export-csv');
  csv.addEventListener('click', () => post({ type: 'export', format: 'csv' }));
  const json = button('Export JSON', 'export-json');
  json.addEventListener('click', () => post({ type: 'export', format: 'json' }));
  controls.append(axisLabel, axis, csv, json);
  note = el('p', 'hint');
  note.id = 'export-note';

  const warning = conditionsWarning();

  chartHost = el('div', 'chart pareto');
  chartHost.id = 'pareto-plot';
  const hover = el('p', 'hint pareto-hover');
  hover.id = 'pareto-hover';
  hover.textContent = HOVER_HINT;

  table = variantTable(tasks);
  const scroller = el('div', 'table-scroll');
  scroller.id = 'variants-scroll';
  scroller.append(table);
  detail = el('section', 'variant-detail');
  detail.id = 'variant-detail';
  detail.setAttribute('aria-live', 'polite');
  app.replaceChildren(...[header, controls, note, warning, el('h2', undefined, 'Variants'), scroller, detail, chartHost, hover].filter((e): e is HTMLElement => !!e));
  markPareto();
  renderDetail();
  requestAnimationFrame(drawChart);
}

const HOVER_HINT = 'Hover a point to see its variant; ringed points are Pareto-optimal (no other variant is cheaper and better).';

/** The rows measured under other conditions than their model's others, and the offer to measure them alike. */
function conditionsWarning(): HTMLElement | undefined {
  // A row already evaluated again under the reference keeps its badge, but is not offered again.
  const flagged = rows.flatMap((row, i) => (flags[i] && !flags[i]!.rematched ? [{ row, flag: flags[i]! }] : []));
  if (!flagged.length) return undefined;
  const names = [...new Set(flagged.flatMap(({ flag }) => flag.differences.map((d) => d.label)))];
  const box = el('section', 'conditions-warning');
  box.id = 'conditions-warning';
  box.append(
    el('p', 'warning', `${flagged.length} variant${flagged.length === 1 ? ' was' : 's were'} evaluated under other conditions than the other variants of ${flagged.length === 1 ? 'its' : 'their'} model (${names.join(', ')}), so ${flagged.length === 1 ? 'its' : 'their'} scores and latencies do not compare with the rest. Rows marked ≠ say which.`),
  );
  const again = button(`Re-evaluate ${flagged.length === 1 ? 'it' : `these ${flagged.length}`} to match`, 'reevaluate', 'primary');
  again.title = flagged.map(({ row, flag }) => `${row.label}: ${flag.differences.map((d) => `${d.label} ${d.value} → ${d.reference}`).join(', ')}`).join('\n');
  again.addEventListener('click', () => post({ type: 'reevaluate', ids: flagged.map(({ row }) => row.id) }));
  box.append(again);
  return box;
}

const CONDITION_SHORT = (row: VariantRow): string => {
  const c = conditionsOf(row);
  return `${c.maxLength} tok · batch ${c.batchSize} · ${conditionValue(c, 'maxExamples')}/task · ${c.device}`;
};

/** The chosen row, readably: its scores per task, the conditions they were measured under, and its runs. */
function renderDetail(): void {
  if (!detail) return;
  const index = rows.findIndex((r) => r.id === selected);
  if (index < 0) {
    detail.replaceChildren(el('p', 'hint', 'Select a row to see its scores per task, its evaluation conditions and its runs.'));
    delete detail.dataset.id;
    return;
  }
  const row = rows[index];
  const flag = flags[index];
  detail.dataset.id = row.id;
  const facts = el('dl', 'detail-facts');
  const fact = (term: string, value: string, key?: string) => {
    const dd = el('dd', undefined, value);
    if (key) dd.dataset.condition = key;
    facts.append(el('dt', undefined, term), dd);
  };
  const c = conditionsOf(row);
  fact('Max length', `${c.maxLength} tokens per text`, 'maxLength');
  fact('Batch size', String(c.batchSize), 'batchSize');
  fact('Examples per task', c.maxExamples === undefined ? 'not recorded (an older worker)' : c.maxExamples === null ? 'all' : `at most ${c.maxExamples}`, 'maxExamples');
  fact('Device', row.onnx ? `${c.device} (onnxruntime, ONNX ${row.onnx.precision})` : c.device, 'device');
  fact('Layers', row.originalLayers ? `${row.layers} of ${row.originalLayers}` : String(row.layers));
  fact('Parameters', `${formatParams(row.params)} (${formatBytes(row.bytes)})`);
  fact('Latency', `${row.latencyMsPerBatch.toFixed(1)} ms per batch of ${row.batchSize} · ${row.textsPerSecond.toFixed(1)} texts/s`);
  fact('Evaluated', row.evaluatedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC'));
  const scores = el('table', 'detail-scores');
  scores.id = 'detail-scores';
  const head = el('tr');
  for (const name of ['Task', 'Score', 'Examples']) {
    const th = el('th', name === 'Task' ? undefined : 'num', name);
    th.scope = 'col';
    head.append(th);
  }
  const thead = el('thead');
  thead.append(head);
  const tbody = el('tbody');
  for (const task of Object.keys(row.scores).sort((a, b) => a.localeCompare(b))) {
    const tr = el('tr');
    tr.dataset.task = task;
    tr.append(el('td', undefined, task), el('td', 'num', formatScore(row.scores[task])), el('td', 'num', row.examples?.[task] !== undefined ? String(row.examples[task]) : '—'));
    tbody.append(tr);
  }
  const average = el('tr', 'detail-average');
  average.append(el('td', undefined, 'Average'), el('td', 'num', formatScore(row.averageScore)), el('td'));
  tbody.append(average);
  scores.append(thead, tbody);
  const links = el('p', 'detail-links');
  const openEvaluation = button('Show evaluation in Runs', 'detail-open-run');
  openEvaluation.title = row.runId;
  openEvaluation.addEventListener('click', () => post({ type: 'openRun', id: row.id }));
  links.append(openEvaluation);
  if (row.fromRun) {
    const openTraining = button('Open training run', 'detail-open-training');
    openTraining.title = row.fromRun;
    openTraining.addEventListener('click', () => post({ type: 'openTraining', id: row.id }));
    links.append(openTraining);
  }
  const parts: HTMLElement[] = [el('h2', undefined, row.label)];
  if (flag) parts.push(el('p', 'warning condition-note', flagText(flag)));
  parts.push(facts, scores, links);
  detail.replaceChildren(...parts);
}

function variantTable(tasks: string[]): HTMLTableElement {
  const t = el('table', 'variants');
  t.id = 'variants';
  const head = el('thead');
  const headRow = el('tr');
  // Variant, Average and the costs first: on a narrow panel the task columns scroll, the verdict stays in view.
  const columns = ['Variant', 'Average', 'Params', 'Latency (ms/batch)', 'Texts/s', 'Conditions', 'Layers', 'Size', ...tasks, 'Runtime', 'Δ average vs float', 'onnxruntime-node texts/s'];
  const firstTask = 8;
  const titles: Record<string, string> = {
    Variant: 'the variant; ★: Pareto-optimal for the cost axis chosen above; ≠: evaluated under other conditions than its model’s other variants',
    Conditions: 'max length (tokens per text) · batch size · examples per built-in task · device: the conditions of the scores and latency',
    'Latency (ms/batch)': 'measured by the worker: torch, or onnxruntime for an ONNX row',
    'Texts/s': 'measured by the worker: torch, or onnxruntime for an ONNX row',
    'Δ average vs float': 'an ONNX row’s average score minus that of the latest torch evaluation of the same variant',
    'onnxruntime-node texts/s': 'measured by the extension in onnxruntime-node on the same texts for every export; × is the speed-up over the fp32 export of the same variant',
  };
  columns.forEach((name, i) => {
    // MTEB names are long CamelCase words: let the header break between the words, not the table widen.
    const th = el('th', i === 0 ? 'label' : i === 5 ? 'conditions' : 'num', name.replace(/(?<=[a-z])(?=[A-Z])/g, '\u200b'));
    th.title = titles[name] ?? name;
    th.scope = 'col';
    // Task columns say so: the columns around them change as the table grows (runtime, ONNX speed).
    if (i >= firstTask && i < firstTask + tasks.length) th.dataset.task = name;
    headRow.append(th);
  });
  head.append(headRow);
  const body = el('tbody');
  rows.forEach((row, index) => {
    const flag = flags[index];
    const tr = el('tr', 'variant-row');
    tr.dataset.id = row.id;
    tr.dataset.layers = String(row.layers);
    tr.dataset.average = String(row.averageScore);
    tr.dataset.flagged = String(!!flag);
    tr.tabIndex = 0;
    tr.title = `${row.runId}: select to see its scores, conditions and runs`;
    tr.setAttribute('aria-selected', String(row.id === selected));
    const name = el('td', 'label');
    name.append(el('span', 'pareto-mark'), el('span', 'variant-name', row.label));
    if (flag) {
      const badge = el('span', 'condition-flag', flag.rematched ? '≠ conditions (re-evaluated)' : '≠ conditions');
      badge.title = flagText(flag);
      badge.dataset.differs = flag.differences.map((d) => d.name).join(',');
      name.append(badge);
    }
    tr.append(name);
    const cells: Array<[string, string | undefined]> = [
      [formatScore(row.averageScore), 'num average'],
      [formatParams(row.params), 'num params'],
      [row.latencyMsPerBatch.toFixed(1), 'num latency'],
      [row.textsPerSecond.toFixed(1), 'num'],
      [CONDITION_SHORT(row), `conditions${flag ? ' differs' : ''}`],
      [row.originalLayers ? `${row.layers} / ${row.originalLayers}` : String(row.layers), 'num'],
      [formatBytes(row.bytes), 'num'],
      ...tasks.map((task): [string, string] => [formatScore(row.scores[task]), 'num score']),
      [row.onnx ? `ONNX ${row.onnx.precision}` : 'torch', 'runtime'],
      [formatChange(row), 'num score-change'],
      [formatOrtNode(row), 'num ort-node'],
    ];
    for (const [text, className] of cells) tr.append(el('td', className, text));
    const choose = () => {
      selected = row.id;
      for (const other of body.querySelectorAll('tr')) other.setAttribute('aria-selected', String(other === tr));
      renderDetail();
      detail?.scrollIntoView({ block: 'nearest' });
    };
    tr.addEventListener('click', choose);
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        choose();
      }
    });
    body.append(tr);
  });
  t.append(head, body);
  return t;
}

function markPareto(): void {
  if (!table) return;
  const front = paretoRows(rows, state.axis);
  table.querySelectorAll<HTMLTableRowElement>('tbody tr').forEach((tr, i) => {
    tr.classList.toggle('pareto', front[i]);
    tr.dataset.pareto = String(front[i]);
    const mark = tr.querySelector('.pareto-mark');
    if (mark) mark.textContent = front[i] ? '★' : '';
  });
}

function drawChart(): void {
  if (!chartHost) return;
  const axis = state.axis;
  const { x, series, rowAt } = paretoPlotData(rows, axis);
  const foreground = themeColor('--vscode-foreground', '#ccc');
  const grid = { stroke: 'rgba(128,128,128,0.2)' };
  const blue = themeColor('--vscode-charts-blue', '#3794ff');
  const green = themeColor('--vscode-charts-green', '#89d185');
  const muted = themeColor('--vscode-descriptionForeground', '#999');
  const hover = document.getElementById('pareto-hover');
  const noLine = () => null;
  chart.draw(
    chartHost,
    {
      scales: { x: { time: false, range: padded }, y: { range: padded } },
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false }, points: { size: 10 } },
      axes: [
        { label: AXIS_LABEL[axis], stroke: foreground, grid, values: (_u, ticks) => ticks.map((v) => formatCost(v, axis)), size: 44, space: 72 },
        { label: 'average score', stroke: foreground, grid, size: 56, values: (_u, ticks) => ticks.map((v) => v.toFixed(3)) },
      ],
      series: [
        { label: AXIS_LABEL[axis], value: (_u, v) => (v == null ? '—' : formatCost(v, axis)) },
        ...series.map((s): uPlot.Series => {
          if (s.kind === 'variants') return { label: 'variants', stroke: blue, paths: noLine, points: { show: true, size: 8, fill: blue, stroke: blue } };
          if (s.kind === 'front') return { label: 'Pareto front', stroke: green, width: 1.5, spanGaps: true, points: { show: true, size: 14, width: 2, stroke: green, fill: 'transparent' } };
          return { label: s.label, stroke: muted, width: 1, dash: [6, 4], spanGaps: true, points: { show: false } };
        }),
      ],
      hooks: {
        // Each point named in the plot itself (HTML over the canvas, so it reads in any theme and can be found).
        draw: [(u) => labelPoints(u, x, rowAt, series[0].values)],
        setCursor: [
          (u) => {
            const idx = u.cursor.idx;
            const row = idx == null ? null : rowAt[idx];
            if (!hover) return;
            if (row == null) return;
            const r = rows[row];
            const flag = flags[row];
            hover.textContent = `${r.label}: average ${formatScore(r.averageScore)} at ${formatCost(costOf(r, axis), axis)} ${costContext(r, axis)}${flag ? ` — ≠ conditions: ${flag.differences.map((d) => `${d.label} ${d.value}`).join(', ')}` : ''}`;
            hover.dataset.axis = axis;
            hover.dataset.id = r.id;
          },
        ],
      },
    },
    [x, ...series.map((s) => s.values)] as uPlot.AlignedData,
  );
  const front = paretoRows(rows, axis);
  chartHost.dataset.axis = axis;
  chartHost.dataset.points = String(rowAt.filter((r) => r !== null).length);
  chartHost.dataset.front = String(front.filter(Boolean).length);
}

/** A point's name: the variant without the model's name when every row is of one model. */
function pointLabel(row: VariantRow): string {
  const oneModel = rows.every((r) => r.model === row.model);
  return oneModel && row.label.startsWith(`${row.modelName} · `) ? row.label.slice(row.modelName.length + 3) : row.label;
}

function labelPoints(u: uPlot, x: number[], rowAt: Array<number | null>, y: Array<number | null>): void {
  for (const old of u.over.querySelectorAll('.point-label')) old.remove();
  x.forEach((value, i) => {
    const row = rowAt[i];
    const score = y[i];
    if (row == null || score == null) return;
    const label = el('span', 'point-label', pointLabel(rows[row]));
    label.dataset.id = rows[row].id;
    if (flags[row]) label.classList.add('differs');
    label.style.left = `${u.valToPos(value, 'x')}px`;
    label.style.top = `${u.valToPos(score, 'y')}px`;
    u.over.append(label);
  });
}

/** Room around the points, so the cheapest and the best variant are not drawn on the plot's edge. */
function padded(_u: uPlot, min: number | null, max: number | null): uPlot.Range.MinMax {
  if (min === null || max === null) return [0, 1];
  const span = max - min || Math.abs(max) || 1;
  // Values that are all non-negative keep a non-negative axis: padding must not invent negative costs.
  return [min >= 0 ? Math.max(0, min - span * 0.08) : min - span * 0.08, max + span * 0.08];
}
