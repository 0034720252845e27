import uPlot from 'uplot';
import type { PlotRun, RunPlotFromWebview, RunPlotToWebview } from '../../src/shared/protocol/runPlotMessages';
import { ChartSlot } from '../shared/chart';
import { el, themeColor, vscodeApi } from '../shared/vscodeApi';
import { alignSeries, smooth } from './smoothing';

interface ViewState {
  smoothing: number;
  xAxis: 'step' | 'time';
}

const vscode = vscodeApi<ViewState>();
const post = (message: RunPlotFromWebview) => vscode.postMessage(message);
const app = document.getElementById('app')!;
const state: ViewState = { smoothing: 0.6, xAxis: 'step', ...vscode.getState() };
const PALETTE = ['--vscode-charts-blue', '--vscode-charts-orange', '--vscode-charts-green', '--vscode-charts-purple', '--vscode-charts-red', '--vscode-charts-yellow'];
const FALLBACK = ['#3794ff', '#d18616', '#89d185', '#b180d7', '#f14c4c', '#cca700'];

let runs: PlotRun[] = [];
let mode: 'compact' | 'full' = 'compact';
const chart = new ChartSlot(app, 200, () => (mode === 'compact' ? 160 : 380));
let chartHost: HTMLElement | undefined;
let redrawQueued = false;

window.addEventListener('message', (event: MessageEvent<RunPlotToWebview>) => {
  const message = event.data;
  if (message?.type === 'series') {
    runs = message.runs;
    mode = message.mode;
    build();
  } else if (message?.type === 'append') {
    const run = runs.find((r) => r.id === message.id);
    if (!run) return;
    run.step.push(...message.step);
    run.loss.push(...message.loss);
    run.elapsedMs.push(...message.elapsedMs);
    run.status = message.status;
    queueRedraw();
  }
});
post({ type: 'ready' });

function build(): void {
  chart.clear();
  if (!runs.length) {
    app.replaceChildren(el('p', 'hint', mode === 'compact' ? 'Select a training run to see its loss.' : 'No points yet.'));
    return;
  }
  const children: HTMLElement[] = [];
  if (mode === 'full') children.push(controls());
  chartHost = el('div', 'chart');
  chartHost.id = 'loss-plot';
  children.push(chartHost);
  if (mode === 'compact') {
    const links = el('div', 'run-links');
    for (const run of runs) {
      const link = el('a', undefined, `Open ${run.label}`);
      link.href = '#';
      link.addEventListener('click', (e) => {
        e.preventDefault();
        post({ type: 'openRun', id: run.id });
      });
      links.append(link);
    }
    children.push(links);
  }
  app.replaceChildren(...children);
  draw();
}

function controls(): HTMLElement {
  const bar = el('section', 'controls');
  const label = el('label', undefined, 'Smoothing');
  label.htmlFor = 'smoothing';
  const slider = el('input');
  Object.assign(slider, { type: 'range', id: 'smoothing', min: '0', max: '0.99', step: '0.01', value: String(state.smoothing) });
  const value = el('span', 'of', state.smoothing.toFixed(2));
  slider.addEventListener('input', () => {
    state.smoothing = Number(slider.value);
    value.textContent = state.smoothing.toFixed(2);
    vscode.setState(state);
    queueRedraw();
  });
  const axisLabel = el('label', undefined, 'x axis');
  axisLabel.htmlFor = 'x-axis';
  const axis = el('select');
  axis.id = 'x-axis';
  for (const option of ['step', 'time'] as const) {
    const o = el('option', undefined, option === 'step' ? 'step' : 'time (minutes)');
    o.value = option;
    o.selected = state.xAxis === option;
    axis.append(o);
  }
  axis.addEventListener('change', () => {
    state.xAxis = axis.value === 'time' ? 'time' : 'step';
    vscode.setState(state);
    draw();
  });
  bar.append(label, slider, value, axisLabel, axis);
  return bar;
}

function queueRedraw(): void {
  if (redrawQueued) return;
  redrawQueued = true;
  requestAnimationFrame(() => {
    redrawQueued = false;
    if (!chart.current) draw();
    else chart.current.setData(data());
    chartHost?.setAttribute('data-points', String(runs.reduce((n, r) => n + r.step.length, 0)));
  });
}

function data(): uPlot.AlignedData {
  const weight = mode === 'compact' ? 0.6 : state.smoothing;
  const series = runs.map((r) => ({ x: state.xAxis === 'time' ? r.elapsedMs.map((ms) => ms / 60_000) : r.step, y: smooth(r.loss, weight) }));
  return alignSeries(series) as uPlot.AlignedData;
}

function draw(): void {
  if (!chartHost) return;
  const foreground = themeColor('--vscode-foreground', '#ccc');
  const grid = { stroke: 'rgba(128,128,128,0.2)' };
  chart.draw(
    chartHost,
    {
      scales: { x: { time: false } },
      legend: { show: mode === 'full', live: true },
      cursor: { drag: { x: true, y: false } },
      axes: [
        { label: mode === 'full' ? (state.xAxis === 'time' ? 'minutes' : 'step') : undefined, stroke: foreground, grid },
        { label: mode === 'full' ? 'loss' : undefined, stroke: foreground, grid, size: 48 },
      ],
      series: [
        { label: state.xAxis === 'time' ? 'minutes' : 'step' },
        ...runs.map((run, i) => ({
          label: run.label,
          stroke: themeColor(PALETTE[i % PALETTE.length], FALLBACK[i % FALLBACK.length]),
          width: 1.5,
          spanGaps: true,
          points: { show: false },
          value: (_u: uPlot, v: number | null) => (v == null ? '—' : v.toFixed(4)),
        })),
      ],
    },
    data(),
  );
  chartHost.setAttribute('data-points', String(runs.reduce((n, r) => n + r.step.length, 0)));
  chartHost.setAttribute('data-runs', String(runs.length));
}
