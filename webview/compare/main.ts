import uPlot from 'uplot';
import { costOf, latencyConditions, paretoPlotData, paretoRows, taskColumns, type CostAxis, type VariantRow } from '../../src/shared/compare/variants';
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
if (state.axis !== 'params' && state.axis !== 'latency') state.axis = 'params';

let rows: VariantRow[] = [];
let selected: string | undefined;
const chart = new ChartSlot(app, 240, () => 340);
let chartHost: HTMLElement | undefined;
let table: HTMLTableElement | undefined;
let note: HTMLElement | undefined;

window.addEventListener('message', (event: MessageEvent<CompareToWebview>) => {
  const message = event.data;
  if (message?.type === 'show') {
    rows = message.rows;
    if (message.highlight) selected = message.highlight;
    render();
  } else if (message?.type === 'exported' && note) {
    note.textContent = `Exported ${message.format.toUpperCase()} to ${message.path}`;
    note.dataset.exported = message.format;
  }
});
post({ type: 'ready' });

const AXIS_LABEL: Record<CostAxis, string> = { params: 'parameters', latency: 'latency (ms per batch)' };
const formatScore = (v: number | null | undefined) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(4) : '—');
const formatChange = (row: VariantRow) =>
  !row.onnx ? '' : typeof row.scoreChange === 'number' && Number.isFinite(row.scoreChange) ? `${row.scoreChange >= 0 ? '+' : '−'}${Math.abs(row.scoreChange).toFixed(4)}` : '—';
const formatOrtNode = (row: VariantRow) =>
  !row.onnx ? '' : row.ortNodeTextsPerSecond === undefined ? 'timing…' : row.ortNodeTextsPerSecond === null ? '—' : `${row.ortNodeTextsPerSecond.toFixed(1)}${row.ortNodeSpeedup !== undefined && row.onnx.precision !== 'fp32' ? ` (×${row.ortNodeSpeedup.toFixed(2)})` : ''}`;
const formatCost = (v: number, axis: CostAxis) => (axis === 'params' ? formatParams(Math.round(v)) : `${v >= 100 ? Math.round(v) : v.toFixed(1)} ms`);

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
  for (const option of ['params', 'latency'] as const) {
    const o = el('option', undefined, AXIS_LABEL[option]);
    o.value = option;
    o.selected = state.axis === option;
    axis.append(o);
  }
  axis.addEventListener('change', () => {
    state.axis = axis.value === 'latency' ? 'latency' : 'params';
    vscode.setState(state);
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

  const conditions = latencyConditions(rows);
  const warning = conditions.length > 1 ? el('p', 'warning', `Latencies were measured under different conditions (${conditions.join('; ')}); compare them with care.`) : undefined;

  chartHost = el('div', 'chart pareto');
  chartHost.id = 'pareto-plot';
  const hover = el('p', 'hint pareto-hover');
  hover.id = 'pareto-hover';
  hover.textContent = 'Hover a point to see its variant; ringed points are Pareto-optimal (no other variant is cheaper and better).';

  table = variantTable(tasks);
  const scroller = el('div', 'table-scroll');
  scroller.append(table);
  app.replaceChildren(...[header, controls, note, warning, chartHost, hover, el('h2', undefined, 'Variants'), scroller].filter((e): e is HTMLElement => !!e));
  markPareto();
  requestAnimationFrame(drawChart);
}

function variantTable(tasks: string[]): HTMLTableElement {
  const t = el('table', 'variants');
  t.id = 'variants';
  const head = el('thead');
  const headRow = el('tr');
  const columns = ['', 'Variant', 'Layers', 'Params', 'Size', ...tasks, 'Average', 'Latency (ms/batch)', 'Texts/s', 'Runtime', 'Δ average vs float', 'onnxruntime-node texts/s'];
  const titles: Record<string, string> = {
    'Latency (ms/batch)': 'measured by the worker: torch, or onnxruntime for an ONNX row',
    'Texts/s': 'measured by the worker: torch, or onnxruntime for an ONNX row',
    'Δ average vs float': 'an ONNX row’s average score minus that of the latest torch evaluation of the same variant',
    'onnxruntime-node texts/s': 'measured by the extension in onnxruntime-node on the same texts for every export; × is the speed-up over the fp32 export of the same variant',
  };
  columns.forEach((name, i) => {
    // MTEB names are long CamelCase words: let the header break between the words, not the table widen.
    const th = el('th', i >= 2 ? 'num' : undefined, name.replace(/(?<=[a-z])(?=[A-Z])/g, '\u200b'));
    th.title = titles[name] ?? name;
    th.scope = 'col';
    // Task columns say so: the columns around them change as the table grows (runtime, ONNX speed).
    if (i >= 5 && i < 5 + tasks.length) th.dataset.task = name;
    if (i === 0) th.title = 'Pareto-optimal for the cost axis chosen above';
    headRow.append(th);
  });
  head.append(headRow);
  const body = el('tbody');
  for (const row of rows) {
    const tr = el('tr', 'variant-row');
    tr.dataset.id = row.id;
    tr.dataset.layers = String(row.layers);
    tr.dataset.average = String(row.averageScore);
    tr.tabIndex = 0;
    tr.title = `${row.runId}: select to open this evaluation run`;
    tr.setAttribute('aria-selected', String(row.id === selected));
    const cells: Array<[string, string | undefined]> = [
      ['', 'pareto-mark'],
      [row.label, 'label'],
      [row.originalLayers ? `${row.layers} / ${row.originalLayers}` : String(row.layers), 'num'],
      [formatParams(row.params), 'num'],
      [formatBytes(row.bytes), 'num'],
      ...tasks.map((task): [string, string] => [formatScore(row.scores[task]), 'num score']),
      [formatScore(row.averageScore), 'num average'],
      [row.latencyMsPerBatch.toFixed(1), 'num'],
      [row.textsPerSecond.toFixed(1), 'num'],
      [row.onnx ? `ONNX ${row.onnx.precision}` : 'torch', 'runtime'],
      [formatChange(row), 'num score-change'],
      [formatOrtNode(row), 'num ort-node'],
    ];
    for (const [text, className] of cells) tr.append(el('td', className, text));
    const choose = () => {
      selected = row.id;
      for (const other of body.querySelectorAll('tr')) other.setAttribute('aria-selected', String(other === tr));
      post({ type: 'openRun', id: row.id });
    };
    tr.addEventListener('click', choose);
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        choose();
      }
    });
    body.append(tr);
  }
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
        setCursor: [
          (u) => {
            const idx = u.cursor.idx;
            const row = idx == null ? null : rowAt[idx];
            if (!hover) return;
            if (row == null) return;
            const r = rows[row];
            hover.textContent = `${r.label}: average ${formatScore(r.averageScore)} at ${formatCost(costOf(r, axis), axis)}`;
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

/** Room around the points, so the cheapest and the best variant are not drawn on the plot's edge. */
function padded(_u: uPlot, min: number | null, max: number | null): uPlot.Range.MinMax {
  if (min === null || max === null) return [0, 1];
  const span = max - min || Math.abs(max) || 1;
  // Values that are all non-negative keep a non-negative axis: padding must not invent negative costs.
  return [min >= 0 ? Math.max(0, min - span * 0.08) : min - span * 0.08, max + span * 0.08];
}
