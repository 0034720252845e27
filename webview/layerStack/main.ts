import uPlot from 'uplot';
import type { LayerStack } from '../../src/shared/model/stack';
import { cutConfidence, lossBand } from '../../src/shared/prune/cutStability';
import { planKeep, type PrunePlan } from '../../src/shared/prune/plan';
import { formatBytes, formatDuration, formatGiB, formatParams, formatShare } from '../../src/shared/format/units';
import { trainPlanOrNone, type DeviceProfile, type ResourcePlan } from '../../src/shared/prune/resources';
import type { InitialLossView, LayerStackFromWebview, LayerStackToWebview } from '../../src/shared/protocol/layerStackMessages';
import { ChartSlot } from '../shared/chart';
import { button, registerComponents, tag } from '../shared/components';
import { el, themeColor, vscodeApi } from '../shared/vscodeApi';

registerComponents();
const vscode = vscodeApi<{ keep?: number }>();
const post = (message: LayerStackFromWebview) => vscode.postMessage(message);
const app = document.getElementById('app')!;
const chart = new ChartSlot(app, 320, () => 220);

window.addEventListener('message', (event: MessageEvent<LayerStackToWebview>) => {
  const message = event.data;
  if (message?.type === 'show') render(message.stack, message.keep, message.initialLoss, message.device);
  else if (message?.type === 'error') app.replaceChildren(el('p', 'error', message.message));
});
post({ type: 'ready' });

/** Until the worker reports the real device, the paper's setting: a GPU, bf16, checkpointing, memory unknown. */
const SOME_GPU: DeviceProfile = { kind: 'cuda', name: 'a GPU', flopsSource: 'unknown' };

function trainPlan(stack: LayerStack, keep: number, device: DeviceProfile | undefined): ResourcePlan['train'] | undefined {
  return trainPlanOrNone(stack, { keep, device: device ?? SOME_GPU });
}

/** "55.5 GiB, fits RTX 4090 · 8.3 s a step" — what training at this cut costs on the device. */
function trainCost(plan: ResourcePlan['train'] | undefined, device: DeviceProfile | undefined): string {
  if (!plan) return '';
  const fit = plan.fits === null ? '' : plan.fits ? ' (fits)' : ' (does not fit)';
  const time = plan.totalSeconds === null ? '' : ` · ${formatDuration(plan.totalSeconds)} for ${plan.steps} steps`;
  return `train ${formatGiB(plan.peakBytes)}${device ? fit : ''}${time}`;
}

function render(stack: LayerStack, hostKeep: number, initialLoss: InitialLossView | undefined, device: DeviceProfile | undefined): void {
  const n = stack.layers.length;
  // The host tracks every change of the cut and re-sends it on each load, so it is the one source of truth.
  let keep = clamp(hostKeep, 1, n);

  const header = el('header');
  header.append(
    el('h1', undefined, stack.name),
    el('p', 'subtitle', `${stack.family} · ${n} layers · hidden ${stack.hiddenSize ?? '?'} · ${formatParams(stack.totalParams)} params · ${formatBytes(stack.totalBytes)}`),
  );

  const controls = el('section', 'controls');
  const label = el('label', undefined, 'Layers kept');
  label.htmlFor = 'keep-input';
  const slider = el('input');
  Object.assign(slider, { type: 'range', id: 'keep-slider', min: '1', max: String(n), step: '1' });
  slider.setAttribute('aria-label', 'Layers kept');
  const input = el('input');
  Object.assign(input, { type: 'number', id: 'keep-input', min: '1', max: String(n), step: '1' });
  controls.append(label, slider, input, el('span', 'of', `of ${n}`));

  const planSection = el('section');
  planSection.id = 'plan';
  const bars = el('section', 'stack');
  bars.setAttribute('aria-label', 'Layer stack drawn to scale');
  const barByLayer = drawStack(bars, stack);

  const lossSection = el('section', 'loss');
  if (initialLoss) {
    const cuts = el('div', 'cuts');
    for (const [variant, depth] of [['small', initialLoss.small], ['large', initialLoss.large]] as const) {
      const plan = planKeep(stack, depth);
      const action = button(`Prune at ${variant} cut: keep ${depth}`, `prune-${variant}`, variant === 'small' ? 'primary' : 'secondary');
      action.addEventListener('click', () => post({ type: 'pruneAt', keep: depth }));
      const cost = trainCost(trainPlan(stack, depth, device), device);
      const summary = el('span', 'cut-summary', `${formatParams(plan.params)} params, −${formatShare(plan.paramsRemovedShare)} params, −${formatBytes(plan.bytesRemoved)}${cost ? `, ${cost}` : ''}`);
      summary.dataset.variant = variant;
      summary.dataset.keep = String(depth);
      cuts.append(action, summary);
      if (initialLoss.cutStability) {
        // The cut is an argmin over a random sample of batches: say how often it wins when the batches are resampled.
        const confidence = cutConfidence(variant, depth, initialLoss.cutStability);
        const note = el('span', confidence.sure ? 'cut-confidence' : 'cut-confidence unsure', confidence.text);
        note.dataset.variant = variant;
        note.dataset.share = String(confidence.share);
        cuts.append(note);
      }
    }
    lossSection.append(el('h2', undefined, 'Initial loss by depth (L³Prune)'), cuts);
    const chartHost = el('div', 'chart');
    chartHost.id = 'loss-chart';
    lossSection.append(chartHost);
    requestAnimationFrame(() => drawLossChart(chartHost, initialLoss));
  } else {
    lossSection.append(
      el('p', 'hint', 'Run “L³Prune: Compute Initial Loss…” to see the loss at every depth and the two cut points L³Prune proposes.'),
    );
  }

  const update = (next: number, notify: boolean) => {
    keep = clamp(next, 1, n);
    slider.value = input.value = String(keep);
    showPlan(planSection, planKeep(stack, keep), trainPlan(stack, keep, device), device);
    barByLayer.forEach((bar, index) => bar.classList.toggle('pruned', index >= keep));
    vscode.setState({ keep });
    if (notify) post({ type: 'keepChanged', keep });
  };
  slider.addEventListener('input', () => update(Number(slider.value), true));
  input.addEventListener('change', () => {
    const value = Number(input.value);
    update(Number.isFinite(value) ? Math.round(value) : keep, true);
  });

  app.replaceChildren(header, lossSection, controls, planSection, bars);
  update(keep, false);
}

function showPlan(section: HTMLElement, plan: PrunePlan, train: ResourcePlan['train'] | undefined, device: DeviceProfile | undefined): void {
  Object.assign(section.dataset, {
    keep: String(plan.keep),
    params: String(plan.params),
    bytes: String(plan.bytes),
    removedShare: String(plan.paramsRemovedShare),
    speedup: String(plan.expectedSpeedup),
  });
  const rows: Array<[string, string]> = [
    ['Layers kept', `${plan.keep} of ${plan.numLayers} (prune ${plan.prunedLayers})`],
    ['Parameters after the cut', `${formatParams(plan.params)} (−${formatShare(plan.paramsRemovedShare)})`],
    ['Weights after the cut', `${formatBytes(plan.bytes)} (−${formatBytes(plan.bytesRemoved)})`],
    ['Expected layer-stack speed-up', `×${plan.expectedSpeedup.toFixed(2)}`],
  ];
  if (train) {
    const r = train.recipe;
    const recipe = `batch ${r.batchSize} × ${r.maxLength}, ${r.precision}, checkpointing ${r.gradientCheckpointing ? 'on' : 'off'}`;
    const verdict = train.fits === null ? '' : train.fits ? ' — fits' : ' — does not fit: lower the batch or max length, or use the gradient cache';
    rows.push([`Training memory (${recipe})`, `${formatGiB(train.peakBytes)} on ${device?.name ?? 'a GPU'}${verdict}`]);
    rows.push([
      `Training time (${r.steps} steps)`,
      train.totalSeconds === null ? 'known once the device is measured' : `${formatDuration(train.totalSeconds)} (${formatDuration(train.secondsPerStep!)} a step, ${device?.flopsSource ?? ''})`,
    ]);
    Object.assign(section.dataset, { trainPeakBytes: String(train.peakBytes), trainFits: String(train.fits) });
  }
  const table = el('table', 'plan-table');
  for (const [name, value] of rows) {
    const row = el('tr');
    row.append(el('th', undefined, name), el('td', undefined, value));
    table.append(row);
  }
  section.replaceChildren(table);
}

/** Bars top to bottom as the model runs bottom to top: head, final norm, layers N-1..0, embedding. */
function drawStack(host: HTMLElement, stack: LayerStack): Map<number, HTMLElement> {
  const largest = Math.max(1, stack.embeddingParams, stack.headParams, ...stack.layers.map((l) => l.params));
  const byLayer = new Map<number, HTMLElement>();
  const bar = (label: string, params: number, bytes: number, className: string) => {
    const row = el('div', `bar-row ${className}`);
    const fill = el('div', 'bar-fill');
    fill.style.width = `${Math.max(0.5, (100 * params) / largest)}%`;
    row.title = `${label}: ${formatParams(params)} params, ${formatBytes(bytes)}`;
    row.append(el('span', 'bar-label', label), fill, el('span', 'bar-value', formatParams(params)));
    host.append(row);
    return row;
  };
  if (stack.head.tensors.length) bar('Head', stack.headParams, stack.head.bytes, 'bar-head');
  else if (stack.tieWordEmbeddings) host.append(tag('Head tied to the embedding'));
  if (stack.finalNorm.tensors.length) bar('Final norm', stack.finalNormParams, stack.finalNorm.bytes, 'bar-norm');
  for (const layer of [...stack.layers].reverse()) {
    byLayer.set(layer.index, bar(`Layer ${layer.index}`, layer.params, layer.bytes, 'layer-bar'));
  }
  bar('Embedding', stack.embeddingParams, stack.embedding.bytes, 'bar-embedding');
  if (stack.other.tensors.length) bar('Other', stack.otherParams, stack.other.bytes, 'bar-other');
  return byLayer;
}

function drawLossChart(host: HTMLElement, loss: InitialLossView): void {
  const depths = loss.losses.map((_, i) => i + 1);
  const foreground = themeColor('--vscode-foreground', '#ccc');
  const marker = (depth: number) => loss.losses.map((v, i) => (i + 1 === depth ? v : null));
  const band = loss.cutStability ? lossBand(loss.losses, loss.cutStability) : undefined;
  const bandStroke = themeColor('--vscode-charts-blue', '#3794ff');
  chart.draw(
    host,
    {
      scales: { x: { time: false } },
      axes: [
        // Depths are whole layers: integer ticks only.
        { label: 'layers kept', stroke: foreground, grid: { stroke: 'rgba(128,128,128,0.2)' }, incrs: [1, 2, 5, 10, 20, 50] },
        { label: 'initial loss', stroke: foreground, grid: { stroke: 'rgba(128,128,128,0.2)' } },
      ],
      series: [
        { label: 'depth' },
        { label: 'loss', stroke: themeColor('--vscode-charts-blue', '#3794ff'), width: 2 },
        { label: `small (${loss.small})`, stroke: 'transparent', points: { show: true, size: 10, fill: themeColor('--vscode-charts-green', '#89d185') } },
        { label: `large (${loss.large})`, stroke: 'transparent', points: { show: true, size: 10, fill: themeColor('--vscode-charts-orange', '#d18616') } },
        ...(band
          ? [
              { label: '+1 s.e.', stroke: bandStroke, width: 0.5, dash: [4, 4], points: { show: false } },
              { label: '−1 s.e.', stroke: bandStroke, width: 0.5, dash: [4, 4], points: { show: false } },
            ]
          : []),
      ],
      // The band: one standard error of the mean over the analysis batches on each side of the curve.
      bands: band ? [{ series: [4, 5], fill: 'rgba(55,148,255,0.15)' }] : undefined,
    },
    [depths, loss.losses, marker(loss.small), marker(loss.large), ...(band ? [band.upper, band.lower] : [])] as uPlot.AlignedData,
  );
  host.dataset.band = band ? 'shown' : 'none';
  host.dataset.points = String(loss.losses.length);
  host.dataset.small = String(loss.small);
  host.dataset.large = String(loss.large);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
