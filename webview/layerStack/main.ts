import uPlot from 'uplot';
import type { LayerStack } from '../../src/shared/model/stack';
import { cutConfidence, lossBand } from '../../src/shared/prune/cutStability';
import { bootstrapBars, cutMarker, depthAt, depthRange, type BootstrapBar, type CutMarker } from '../../src/shared/prune/cutChart';
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
const chart = new ChartSlot(app, 320, () => 340);

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
  // The next step, from the cut the slider shows: offered before any analysis too (a cut can be chosen by hand).
  const train = button('Train at this cut…', 'train-at-cut', 'primary');
  train.addEventListener('click', () => post({ type: 'trainAt', keep }));
  controls.append(label, slider, input, el('span', 'of', `of ${n}`), train);

  const planSection = el('section');
  planSection.id = 'plan';
  const bars = el('section', 'stack');
  bars.setAttribute('aria-label', 'Layer stack drawn to scale');
  const barByLayer = drawStack(bars, stack);

  const lossSection = el('section', 'loss');
  let curve: LossCurve | undefined;
  if (initialLoss) {
    const cuts = el('div', 'cuts');
    for (const [variant, depth] of [['small', initialLoss.small], ['large', initialLoss.large]] as const) {
      const plan = planKeep(stack, depth);
      // Moves the slider (and the plan) to the cut; training starts from the one primary button.
      const goTo = button(`${variant === 'small' ? 'Small' : 'Large'} cut: keep ${depth}`, `cut-${variant}`);
      goTo.title = `Set the slider to L³Prune's ${variant} cut`;
      goTo.addEventListener('click', () => update(depth, true));
      const cost = trainCost(trainPlan(stack, depth, device), device);
      const summary = el(
        'span',
        'cut-summary',
        `${formatParams(plan.params)} params, −${formatShare(plan.paramsRemovedShare)} params, −${formatBytes(plan.bytesRemoved)}, ×${plan.expectedSpeedup.toFixed(2)} faster${cost ? `, ${cost}` : ''}`,
      );
      summary.dataset.variant = variant;
      summary.dataset.keep = String(depth);
      cuts.append(goTo, summary);
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
    chartHost.title = 'Click the curve to set the cut';
    const readout = el('p', 'chart-readout', 'Click the curve to set the cut; the slider below does the same from the keyboard.');
    readout.id = 'loss-readout';
    lossSection.append(chartHost, readout, legend(initialLoss));
    curve = new LossCurve(chartHost, readout, stack, initialLoss, () => keep, (depth) => update(depth, true));
    requestAnimationFrame(() => curve?.draw());
  } else {
    chart.clear();
    lossSection.append(
      el('p', 'hint', 'Run “L³Prune: Compute Initial Loss…” to see the loss at every depth and the two cut points L³Prune proposes.'),
    );
  }

  const update = (next: number, notify: boolean) => {
    keep = clamp(next, 1, n);
    slider.value = input.value = String(keep);
    train.title = `Prune ${stack.name} to its first ${keep} of ${n} layers and finetune`;
    showPlan(planSection, planKeep(stack, keep), trainPlan(stack, keep, device), device);
    barByLayer.forEach((bar, index) => bar.classList.toggle('pruned', index >= keep));
    curve?.markKeep();
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

/** The colours of the curve's marks: theme variables, so the canvas and the legend's swatches (CSS) agree. */
const COLORS = {
  curve: ['--vscode-charts-blue', '#3794ff'],
  small: ['--vscode-charts-green', '#89d185'],
  large: ['--vscode-charts-orange', '#d18616'],
  current: ['--vscode-foreground', '#cccccc'],
} as const;
const BAND_FILL = 'rgba(55,148,255,0.15)';
const BAR_ALPHA = 0.45;
/** The bootstrap bars take at most this share of the plot's height, under the curve. */
const BAR_HEIGHT = 0.25;
const SLIDER_STRIP = 22;

/**
 * The initial-loss curve where the cut is chosen: L³Prune's two cuts as labelled dashed verticals with their cost,
 * the slider's depth as a solid vertical, the bootstrap's shares per depth as bars along the bottom, and a click
 * that sets the cut. The marks are drawn on uPlot's canvas by a plugin, so they follow resizes and redraws.
 */
class LossCurve {
  private readonly markers: CutMarker[];
  private readonly bars: BootstrapBar[];

  constructor(
    private readonly host: HTMLElement,
    private readonly readout: HTMLElement,
    private readonly stack: LayerStack,
    private readonly loss: InitialLossView,
    private readonly keep: () => number,
    private readonly pick: (depth: number) => void,
  ) {
    this.markers = (['small', 'large'] as const).map((v) => cutMarker(stack, v, v === 'small' ? loss.small : loss.large, loss.cutStability));
    this.bars = loss.cutStability ? bootstrapBars(loss.cutStability, stack.layers.length) : [];
    const [min, max] = depthRange(stack.layers.length);
    Object.assign(host.dataset, {
      points: String(loss.losses.length),
      small: String(loss.small),
      large: String(loss.large),
      xMin: String(min),
      xMax: String(max),
      bootstrapBars: String(this.bars.length),
      cutLabels: this.markers.map((m) => m.label).join(' | '),
    });
  }

  draw(): void {
    const loss = this.loss;
    const n = this.stack.layers.length;
    const depths = loss.losses.map((_, i) => i + 1);
    const foreground = themeColor('--vscode-foreground', '#ccc');
    const band = loss.cutStability ? lossBand(loss.losses, loss.cutStability) : undefined;
    const blue = color('curve');
    const u = chart.draw(
      this.host,
      {
        // The legend is ours (real swatches for the marks uPlot does not draw); uPlot's own one is off.
        legend: { show: false },
        // A strip above the plot for the slider's label.
        padding: [SLIDER_STRIP, null, null, null],
        // A click picks a depth: no drag-to-zoom to get in its way.
        cursor: { drag: { x: false, y: false }, points: { show: false } },
        scales: {
          x: { time: false, range: depthRange(n) },
          // Room above the curve for the cut labels and below it for the bootstrap bars, so neither hides the curve.
          y: {
            range: (_u, min, max) => {
              const span = max - min || Math.abs(max) || 1;
              return [min - span * (this.bars.length ? 0.55 : 0.1), max + span * 0.45];
            },
          },
        },
        axes: [
          // Depths are whole layers: integer ticks only.
          { label: 'layers kept', stroke: foreground, grid: { stroke: 'rgba(128,128,128,0.2)' }, incrs: [1, 2, 5, 10, 20, 50], size: 36 },
          { label: 'initial loss', stroke: foreground, grid: { stroke: 'rgba(128,128,128,0.2)' } },
        ],
        series: [
          {},
          { stroke: blue, width: 2, points: { show: n <= 40, size: 4, fill: blue } },
          ...(band
            ? [
                { stroke: blue, width: 0.5, dash: [4, 4], points: { show: false } },
                { stroke: blue, width: 0.5, dash: [4, 4], points: { show: false } },
              ]
            : []),
        ],
        // The band: one standard error of the mean over the analysis batches on each side of the curve.
        bands: band ? [{ series: [2, 3], fill: BAND_FILL }] : undefined,
        hooks: {
          drawAxes: [(plot) => this.drawBars(plot)],
          draw: [(plot) => this.drawMarks(plot)],
          setCursor: [(plot) => this.showCursor(plot)],
        },
      },
      [depths, loss.losses, ...(band ? [band.upper, band.lower] : [])] as uPlot.AlignedData,
    );
    u.over.classList.add('pick-depth');
    u.over.addEventListener('click', (event) => {
      const depth = depthAt(u.posToVal(event.offsetX, 'x'), n);
      if (depth !== undefined) this.pick(depth);
    });
    this.host.dataset.band = band ? 'shown' : 'none';
    this.markKeep();
  }

  /** The slider moved: move its line. */
  markKeep(): void {
    this.host.dataset.markedKeep = String(this.keep());
    chart.current?.redraw(false, false);
  }

  private showCursor(u: uPlot): void {
    const depth = u.cursor.idx == null ? undefined : u.cursor.idx + 1;
    if (depth === undefined) return;
    const plan = planKeep(this.stack, depth);
    const shares = this.loss.cutStability;
    const won = shares
      ? ` · bootstrap: small ${Math.round(100 * (shares.smallShare[depth - 1] ?? 0))} %, large ${Math.round(100 * (shares.largeShare[depth - 1] ?? 0))} %`
      : '';
    this.readout.textContent = `keep ${depth}: loss ${this.loss.losses[depth - 1].toFixed(3)} · ${formatParams(plan.params)} params · ×${plan.expectedSpeedup.toFixed(2)}${won} — click to set the cut`;
  }

  private drawBars(u: uPlot): void {
    if (!this.bars.length) return;
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const step = width / this.stack.layers.length;
    const barWidth = Math.max(2, step * 0.7);
    ctx.save();
    ctx.globalAlpha = BAR_ALPHA;
    for (const bar of this.bars) {
      const x = u.valToPos(bar.depth, 'x', true);
      const h = bar.share * height * BAR_HEIGHT;
      ctx.fillStyle = color(bar.variant);
      ctx.fillRect(Math.max(left, x - barWidth / 2), top + height - h, barWidth, h);
    }
    ctx.restore();
  }

  private drawMarks(u: uPlot): void {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const px = uPlot.pxRatio;
    const lineHeight = 14 * px;
    const pad = 3 * px;
    const font = getComputedStyle(document.body).fontFamily || 'sans-serif';
    const fontOf = (bold: boolean) => `${bold ? '600 ' : ''}${12 * px}px ${font}`;
    const vertical = (depth: number, stroke: string, dash: number[], lineWidth: number) => {
      const x = Math.round(u.valToPos(depth, 'x', true));
      ctx.save();
      ctx.strokeStyle = stroke;
      ctx.lineWidth = lineWidth * px;
      ctx.setLineDash(dash.map((d) => d * px));
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      ctx.restore();
      return x;
    };
    type Label = { lines: Array<{ text: string; bold?: boolean }>; x: number; stroke: string; x0: number; x1: number; y: number; h: number };
    // Each label beside its line, outward (the small cut's to the left, the large cut's to the right, so close cuts
    // do not cover each other) where the plot has room on that side, else on the other; moved below any it would cover.
    const label = (lines: Label['lines'], x: number, stroke: string, y: number, outward: 'left' | 'right' | 'room'): Label => {
      let widest = 0;
      for (const l of lines) {
        ctx.font = fontOf(!!l.bold);
        widest = Math.max(widest, ctx.measureText(l.text).width);
      }
      const w = widest + 2 * pad;
      const roomLeft = x - 4 * px - w >= left;
      const roomRight = x + 4 * px + w <= left + width;
      const onLeft = outward === 'left' ? roomLeft || !roomRight : outward === 'right' ? !roomRight && roomLeft : x > left + width / 2;
      const x0 = onLeft ? x - 4 * px - w : x + 4 * px;
      return { lines, x, stroke, x0, x1: x0 + w, y, h: lines.length * lineHeight + 2 * pad };
    };
    const placed: Label[] = [];
    const place = (l: Label) => {
      for (let moved = true; moved; ) {
        moved = false;
        for (const other of placed) {
          if (l.x0 < other.x1 && other.x0 < l.x1 && l.y < other.y + other.h && other.y < l.y + l.h) {
            l.y = other.y + other.h + pad;
            moved = true;
          }
        }
      }
      placed.push(l);
    };
    // Text on a backing plate, so it stays legible over the curve and the grid.
    const paint = (l: Label) => {
      ctx.save();
      ctx.globalAlpha = 0.85;
      ctx.fillStyle = themeColor('--vscode-editor-background', '#1e1e1e');
      ctx.fillRect(l.x0, l.y, l.x1 - l.x0, l.h);
      ctx.globalAlpha = 1;
      ctx.textAlign = 'left';
      ctx.textBaseline = 'top';
      l.lines.forEach((line, i) => {
        ctx.font = fontOf(!!line.bold);
        ctx.fillStyle = i === 0 ? l.stroke : themeColor('--vscode-foreground', '#ccc');
        ctx.fillText(line.text, l.x0 + pad, l.y + pad + i * lineHeight);
      });
      ctx.restore();
    };
    const keep = this.keep();
    const labels: Label[] = [];
    for (const marker of this.markers) {
      const stroke = color(marker.variant);
      const x = vertical(marker.keep, stroke, [6, 4], 2);
      const lines = [{ text: marker.label, bold: true }, { text: marker.cost }, ...(marker.confidence ? [{ text: marker.confidence }] : [])];
      labels.push(label(lines, x, stroke, top + 2 * px, marker.variant === 'small' ? 'left' : 'right'));
    }
    const x = vertical(keep, color('current'), [], 1.5);
    // The slider's label flies above the plot (its own strip of padding), where it covers neither curve nor bars.
    labels.push(label([{ text: `slider · keep ${keep}`, bold: true }], x, color('current'), top - lineHeight - 2 * pad - 2 * px, 'room'));
    // Labels after every line, so no line crosses a label.
    for (const l of labels) {
      place(l);
      paint(l);
    }
  }
}

function color(mark: keyof typeof COLORS): string {
  const [variable, fallback] = COLORS[mark];
  return themeColor(variable, fallback);
}

/** Swatches drawn as the chart draws each mark (CSS classes on the same theme variables). */
function legend(loss: InitialLossView): HTMLElement {
  const list = el('ul', 'chart-legend');
  list.id = 'loss-legend';
  const entry = (swatch: string, text: string) => {
    const item = el('li');
    item.dataset.swatch = swatch;
    item.append(el('span', `swatch swatch-${swatch}`), el('span', undefined, text));
    list.append(item);
  };
  entry('curve', 'initial loss (mean over the batches)');
  if (loss.cutStability) entry('band', `±1 standard error over ${loss.cutStability.batches} batches`);
  entry('small', `small cut (L³Prune): keep ${loss.small}`);
  entry('large', `large cut (L³Prune): keep ${loss.large}`);
  entry('current', 'the slider’s cut');
  if (loss.cutStability) {
    entry('bars', `bootstrap: how often each depth was the cut in ${loss.cutStability.resamples.toLocaleString('en-US')} resamples (green small, orange large)`);
  }
  return list;
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
