import uPlot from 'uplot';
import { DEFAULT_RUN_PAGE_PREFS, type PlotRun, type RunPagePrefs, type RunPlotFromWebview, type RunPlotToWebview, type SummaryRow } from '../../src/shared/protocol/runPlotMessages';
import { ChartSlot } from '../shared/chart';
import { el, themeColor, vscodeApi } from '../shared/vscodeApi';
import { alignSeries, integerTicks, smooth } from './smoothing';

/** What VS Code keeps for a page across hiding and a window reload: the runs it shows (for the serializer) and the choices. */
interface ViewState {
  runIds: string[];
  prefs: RunPagePrefs;
}

const vscode = vscodeApi<ViewState>();
const post = (message: RunPlotFromWebview) => vscode.postMessage(message);
const app = document.getElementById('app')!;
const saved = vscode.getState();
let prefs: RunPagePrefs = { ...DEFAULT_RUN_PAGE_PREFS, ...saved?.prefs };
const PALETTE = ['--vscode-charts-blue', '--vscode-charts-orange', '--vscode-charts-green', '--vscode-charts-purple', '--vscode-charts-red', '--vscode-charts-yellow'];
const FALLBACK = ['#3794ff', '#d18616', '#89d185', '#b180d7', '#f14c4c', '#cca700'];
const colour = (i: number) => themeColor(PALETTE[i % PALETTE.length], FALLBACK[i % FALLBACK.length]);

type Metric = 'loss' | 'learningRate' | 'tokensPerSecond' | 'memory';
interface Chart {
  metric: Metric;
  slot: ChartSlot;
  host?: HTMLElement;
}

let runs: PlotRun[] = [];
let summary: SummaryRow[] = [];
let mode: 'compact' | 'full' = 'compact';
const charts: Chart[] = (['loss', 'learningRate', 'tokensPerSecond', 'memory'] as const).map((metric) => ({
  metric,
  slot: new ChartSlot(app, 200, () => (mode === 'compact' ? 160 : metric === 'loss' ? 320 : 170)),
}));
let summaryHost: HTMLElement | undefined;
let redrawQueued = false;

window.addEventListener('message', (event: MessageEvent<RunPlotToWebview>) => {
  const message = event.data;
  if (message?.type === 'series') {
    runs = message.runs;
    mode = message.mode;
    summary = message.summary;
    // The host's copy wins: it is the one kept when the tab was closed and opened again.
    if (mode === 'full') prefs = { ...message.prefs };
    vscode.setState({ runIds: runs.map((r) => r.id), prefs });
    build();
  } else if (message?.type === 'append') {
    const run = runs.find((r) => r.id === message.id);
    if (!run) return;
    const wasEmpty = run.step.length === 0;
    run.step.push(...message.step);
    run.loss.push(...message.loss);
    run.elapsedMs.push(...message.elapsedMs);
    run.learningRate.push(...message.learningRate);
    run.tokensPerSecond.push(...message.tokensPerSecond);
    run.memoryBytes.push(...message.memoryBytes);
    run.status = message.status;
    if (wasEmpty) build();
    else queueRedraw();
  } else if (message?.type === 'summary') {
    summary = message.summary;
    renderSummary();
  }
});
post({ type: 'ready' });

function savePrefs(): void {
  vscode.setState({ runIds: runs.map((r) => r.id), prefs });
  post({ type: 'prefs', ...prefs });
}

function build(): void {
  charts.forEach((c) => c.slot.clear());
  if (!runs.length) {
    app.replaceChildren(el('p', 'hint', mode === 'compact' ? 'Select a training run to see its loss.' : 'No training run to show.'));
    return;
  }
  const children: HTMLElement[] = [];
  const points = runs.reduce((n, r) => n + r.step.length, 0);
  if (mode === 'full') {
    summaryHost = el('section', 'run-summary');
    summaryHost.id = 'run-summary';
    children.push(summaryHost);
  }
  if (!points) {
    const live = runs.filter((r) => r.status === 'running');
    const waiting = el('p', 'hint waiting', live.length ? `Waiting for the first step of ${live.map((r) => r.label).join(', ')}…` : 'This run has no steps.');
    waiting.id = 'plot-waiting';
    children.push(waiting);
  } else {
    if (mode === 'full') children.push(controls());
    const grid = el('div', mode === 'full' ? 'run-charts' : 'run-charts compact');
    for (const chart of charts) {
      chart.host = undefined;
      if (mode === 'compact' && chart.metric !== 'loss') continue;
      if (chart.metric !== 'loss' && !shownMetric(chart.metric)) continue;
      if (chart.metric !== 'loss' && !runs.some((r) => values(r, chart.metric).some((v) => v !== null))) continue;
      const box = el('figure', `run-chart run-chart-${chart.metric}`);
      if (mode === 'full') box.append(el('figcaption', undefined, title(chart.metric)));
      chart.host = el('div', 'chart');
      chart.host.id = chart.metric === 'loss' ? 'loss-plot' : `${chart.metric}-plot`;
      box.append(chart.host);
      grid.append(box);
    }
    children.push(grid);
  }
  if (runs.length > 1 || mode === 'compact') children.push(legend());
  app.replaceChildren(...children);
  renderSummary();
  draw();
}

const shownMetric = (metric: Exclude<Metric, 'loss'>) => (metric === 'memory' ? prefs.memory : prefs[metric]);

function memoryKind(): string {
  const kinds = [...new Set(runs.map((r) => r.memoryKind).filter(Boolean))];
  return kinds.length === 1 ? kinds[0]! : 'memory';
}

function title(metric: Metric): string {
  if (metric === 'loss') return 'loss (hard-negative InfoNCE)';
  if (metric === 'learningRate') return 'learning rate';
  if (metric === 'tokensPerSecond') return 'tokens per second';
  return memoryKind() === 'accelerator' ? 'accelerator memory (peak allocated, MiB)' : memoryKind() === 'process RSS' ? 'process RSS (CPU run, MiB)' : 'memory (MiB)';
}

function values(run: PlotRun, metric: Metric): Array<number | null> {
  if (metric === 'loss') return run.loss;
  if (metric === 'memory') return run.memoryBytes.map((b) => (b === null ? null : b / 2 ** 20));
  return run[metric];
}

function legend(): HTMLElement {
  const box = el('div', 'run-legend');
  box.id = 'run-legend';
  runs.forEach((run, i) => {
    const entry = el('span', 'run-legend-entry');
    const swatch = el('span', 'swatch run-swatch');
    swatch.style.background = colour(i);
    const name = mode === 'compact' ? el('a', undefined, run.label) : el('span', undefined, run.label);
    if (name instanceof HTMLAnchorElement) {
      name.href = '#';
      name.title = `Open ${run.label}`;
      name.addEventListener('click', (e) => {
        e.preventDefault();
        post({ type: 'openRun', id: run.id });
      });
    }
    entry.append(swatch, name);
    box.append(entry);
  });
  return box;
}

function renderSummary(): void {
  if (!summaryHost) return;
  const table = el('dl', 'run-summary-list');
  for (const [label, value] of summary) {
    const term = el('dt', undefined, label);
    const detail = el('dd', undefined, value);
    detail.dataset.field = label;
    table.append(term, detail);
  }
  summaryHost.replaceChildren(table);
}

function checkbox(id: string, text: string, checked: boolean, onChange: (value: boolean) => void): HTMLElement {
  const label = el('label', 'check');
  const input = el('input');
  Object.assign(input, { type: 'checkbox', id, checked });
  input.addEventListener('change', () => onChange(input.checked));
  label.append(input, document.createTextNode(` ${text}`));
  return label;
}

function controls(): HTMLElement {
  const bar = el('section', 'controls');
  const label = el('label', undefined, 'Smoothing');
  label.htmlFor = 'smoothing';
  const slider = el('input');
  Object.assign(slider, { type: 'range', id: 'smoothing', min: '0', max: '0.99', step: '0.01', value: String(prefs.smoothing) });
  const value = el('span', 'of', prefs.smoothing.toFixed(2));
  value.id = 'smoothing-value';
  slider.addEventListener('input', () => {
    prefs.smoothing = Number(slider.value);
    value.textContent = prefs.smoothing.toFixed(2);
    queueRedraw();
  });
  slider.addEventListener('change', savePrefs);
  const axisLabel = el('label', undefined, 'x axis');
  axisLabel.htmlFor = 'x-axis';
  const axis = el('select');
  axis.id = 'x-axis';
  for (const option of ['step', 'time'] as const) {
    const o = el('option', undefined, option === 'step' ? 'step' : 'time (minutes)');
    o.value = option;
    o.selected = prefs.xAxis === option;
    axis.append(o);
  }
  axis.addEventListener('change', () => {
    prefs.xAxis = axis.value === 'time' ? 'time' : 'step';
    savePrefs();
    draw();
  });
  const toggle = (key: 'raw' | 'learningRate' | 'tokensPerSecond' | 'memory', text: string) =>
    checkbox(`show-${key}`, text, prefs[key], (on) => {
      prefs[key] = on;
      savePrefs();
      build();
    });
  bar.append(label, slider, value, axisLabel, axis, toggle('raw', 'raw loss'), toggle('learningRate', 'learning rate'), toggle('tokensPerSecond', 'tokens/s'), toggle('memory', 'memory'));
  return bar;
}

function queueRedraw(): void {
  if (redrawQueued) return;
  redrawQueued = true;
  requestAnimationFrame(() => {
    redrawQueued = false;
    for (const chart of charts) {
      if (!chart.host) continue;
      if (!chart.slot.current) draw();
      else chart.slot.current.setData(data(chart.metric));
    }
    marks();
  });
}

const xOf = (r: PlotRun) => (prefs.xAxis === 'time' ? r.elapsedMs.map((ms) => ms / 60_000) : r.step);

/** Loss: per run the raw series (faint, full page only) then the smoothed one; any other metric: one series per run. */
function data(metric: Metric): uPlot.AlignedData {
  const series: Array<{ x: number[]; y: Array<number | null> }> = [];
  for (const r of runs) {
    if (metric === 'loss') {
      const weight = mode === 'compact' ? 0.6 : prefs.smoothing;
      if (withRaw()) series.push({ x: xOf(r), y: r.loss });
      series.push({ x: xOf(r), y: smooth(r.loss, weight) });
    } else series.push({ x: xOf(r), y: values(r, metric) });
  }
  return alignSeries(series as Array<{ x: number[]; y: number[] }>) as uPlot.AlignedData;
}

const withRaw = () => mode === 'full' && prefs.raw;

function format(metric: Metric, v: number | null): string {
  if (v == null) return '—';
  if (metric === 'learningRate') return v.toExponential(2);
  if (metric === 'loss') return v.toFixed(4);
  return v.toFixed(1);
}

/** Axis labels: short enough for the sidebar's narrow axis (the legend and summary carry the full digits). */
function tick(metric: Metric, v: number): string {
  if (metric === 'learningRate') return v === 0 ? '0' : v.toExponential(1);
  if (metric === 'loss') return v.toFixed(2);
  return v >= 1000 ? v.toFixed(0) : String(+v.toFixed(1));
}

function draw(): void {
  const foreground = themeColor('--vscode-foreground', '#ccc');
  const grid = { stroke: 'rgba(128,128,128,0.2)' };
  const byStep = prefs.xAxis === 'step';
  for (const chart of charts) {
    if (!chart.host) {
      chart.slot.clear();
      continue;
    }
    const metric = chart.metric;
    const series: uPlot.Series[] = [{ label: byStep ? 'step' : 'minutes', value: (_u, v) => (v == null ? '—' : byStep ? String(Math.round(v)) : v.toFixed(2)) }];
    runs.forEach((run, i) => {
      const stroke = colour(i);
      if (metric === 'loss' && withRaw()) {
        series.push({ label: `${run.label} (raw)`, stroke, alpha: 0.3, width: 1, spanGaps: true, points: { show: false }, value: (_u, v) => format(metric, v) });
      }
      series.push({ label: run.label, stroke, width: metric === 'loss' ? 2 : 1.5, spanGaps: true, points: { show: false }, value: (_u, v) => format(metric, v) });
    });
    const host = chart.host;
    chart.slot.draw(
      host,
      {
        scales: { x: { time: false } },
        legend: { show: mode === 'full', live: true },
        cursor: { drag: { x: true, y: false } },
        axes: [
          {
            label: mode === 'full' ? (byStep ? 'step' : 'minutes') : undefined,
            stroke: foreground,
            grid,
            // Steps are whole: never a tick at 2.5.
            values: (_u: uPlot, splits: number[]) => {
              const text = splits.map((v) => (byStep ? String(Math.round(v)) : String(+v.toFixed(2))));
              // The labels as drawn, for tests: uPlot paints them on a canvas.
              host.setAttribute('data-x-ticks', text.join(','));
              return text;
            },
            ...(byStep ? { incrs: integerTicks() } : {}),
          },
          { label: mode === 'full' ? title(metric).replace(/ \(.*\)$/, '') : undefined, stroke: foreground, grid, size: metric === 'learningRate' ? 64 : 52, values: (_u, splits) => splits.map((v) => tick(metric, v)) },
        ],
        series,
      },
      data(metric),
    );
  }
  marks();
}

function marks(): void {
  const points = String(runs.reduce((n, r) => n + r.step.length, 0));
  for (const chart of charts) {
    chart.host?.setAttribute('data-points', points);
    chart.host?.setAttribute('data-runs', String(runs.length));
  }
  app.dataset.smoothing = prefs.smoothing.toFixed(2);
  app.dataset.mode = mode;
}
