/**
 * The Try Encoder page (bundled to dist/webview/tryEncoder.js): texts in a box, one per line; the host embeds
 * them and sends back the similarity matrix and timings. Styling goes through CSSOM (element.style), which the
 * webview CSP allows, since inline style attributes and <style> blocks are blocked.
 */
import type { ComparisonView, EncoderSummary, TryEncoderFromWebview, TryEncoderToWebview } from '../../src/shared/protocol/tryEncoderMessages';
import { MAX_TEXT_CHARS, MAX_TEXTS } from '../../src/shared/protocol/tryEncoderMessages';
import { button, registerComponents } from '../shared/components';
import { el, themeColor, vscodeApi } from '../shared/vscodeApi';

registerComponents();
const vscode = vscodeApi<{ text?: string; batchSize?: number }>();
const post = (message: TryEncoderFromWebview) => vscode.postMessage(message);
const app = document.getElementById('app')!;

const header = el('header');
const form = el('section');
const status = el('p', 'hint');
status.id = 'status';
const results = el('section');
results.id = 'results';
let textBox: HTMLTextAreaElement | undefined;
let batchInput: HTMLInputElement | undefined;

window.addEventListener('message', (event: MessageEvent<TryEncoderToWebview>) => {
  const message = event.data;
  switch (message?.type) {
    case 'encoder':
      showEncoder(message.encoder, message.texts);
      break;
    case 'busy':
      setStatus(message.message, 'hint');
      break;
    case 'result':
      setStatus('', 'hint');
      showResult(message.result);
      break;
    case 'error':
      setStatus(message.message, 'error');
      break;
  }
});
post({ type: 'ready' });

function showEncoder(encoder: EncoderSummary, texts: string[]): void {
  header.replaceChildren(
    el('h1', undefined, encoder.name),
    el(
      'p',
      'subtitle',
      `${encoder.numLayers} of ${encoder.originalNumLayers} layers · ${encoder.precision} · hidden ${encoder.hiddenSize} · ${encoder.pooling} pooling` +
        `${encoder.normalize ? ', normalised' : ''} · up to ${encoder.maxLength} tokens · from ${encoder.sourceModel}`,
    ),
    el('p', 'hint', encoder.folder),
  );
  const saved = vscode.getState();
  textBox = el('textarea');
  textBox.id = 'texts';
  textBox.rows = 8;
  textBox.value = saved?.text ?? texts.join('\n');
  textBox.setAttribute('aria-label', 'Texts to compare, one per line');
  Object.assign(textBox.style, {
    display: 'block',
    width: '100%',
    maxWidth: '900px',
    boxSizing: 'border-box',
    fontFamily: 'var(--vscode-editor-font-family)',
    color: 'var(--vscode-input-foreground)',
    background: 'var(--vscode-input-background)',
    border: '1px solid var(--vscode-input-border, transparent)',
  });
  const label = el('label', undefined, 'Batch size');
  label.htmlFor = 'batch-size';
  batchInput = el('input');
  Object.assign(batchInput, { type: 'number', id: 'batch-size', min: '1', max: '256', step: '1', value: String(saved?.batchSize ?? 16) });
  const run = button('Compare', 'compare', 'primary');
  run.addEventListener('click', submit);
  textBox.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) submit();
  });
  const controls = el('div', 'controls');
  controls.append(label, batchInput, run, el('span', 'hint', 'one text per line · Ctrl+Enter'));
  const textsLabel = el('label', undefined, 'Texts, one per line');
  textsLabel.htmlFor = 'texts';
  textsLabel.style.display = 'block';
  form.replaceChildren(textsLabel, textBox, controls);
  app.replaceChildren(header, form, status, results);
}

function submit(): void {
  if (!textBox || !batchInput) return;
  const texts = textBox.value.split('\n').map((t) => t.trim()).filter(Boolean);
  const batchSize = Math.round(Number(batchInput.value));
  vscode.setState({ text: textBox.value, batchSize });
  if (texts.length < 2) return setStatus('Enter at least two texts, one per line.', 'error');
  if (texts.length > MAX_TEXTS) return setStatus(`At most ${MAX_TEXTS} texts at a time.`, 'error');
  if (texts.some((t) => t.length > MAX_TEXT_CHARS)) return setStatus(`A text may have at most ${MAX_TEXT_CHARS} characters.`, 'error');
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 256) return setStatus('The batch size must be a whole number from 1 to 256.', 'error');
  post({ type: 'compare', texts, batchSize });
}

function setStatus(text: string, kind: 'hint' | 'error'): void {
  status.className = kind;
  status.textContent = text;
}

function showResult(r: ComparisonView): void {
  const timing = el('table', 'plan-table');
  timing.id = 'timing';
  Object.assign(timing.dataset, { msPerBatch: String(r.msPerBatch), textsPerSecond: String(r.textsPerSecond), batchSize: String(r.batchSize) });
  const rows: Array<[string, string]> = [
    ['Latency', `${r.msPerBatch.toFixed(1)} ms per batch of up to ${r.batchSize} (median of ${r.batches} timed batches, after a warm-up pass)`],
    ['Throughput', `${r.textsPerSecond.toFixed(1)} texts/s`],
    ['First pass', `${r.firstPassMs.toFixed(1)} ms (includes ONNX Runtime’s first-run set-up)`],
    ['Longest batch', `${r.maxSeq} token${r.maxSeq === 1 ? '' : 's'}`],
  ];
  for (const [name, value] of rows) {
    const row = el('tr');
    row.append(el('th', undefined, name), el('td', undefined, value));
    timing.append(row);
  }

  const matrix = el('table');
  matrix.id = 'similarity';
  matrix.setAttribute('aria-label', 'Cosine similarity between every pair of texts');
  Object.assign(matrix.style, { borderCollapse: 'collapse', margin: '8px 0', fontVariantNumeric: 'tabular-nums' });
  const head = el('tr');
  head.append(el('th'));
  r.texts.forEach((_, j) => head.append(cell('th', `T${j + 1}`)));
  matrix.append(head);
  const accent = themeColor('--vscode-charts-blue', '#3794ff');
  r.matrix.forEach((row, i) => {
    const tr = el('tr');
    tr.append(cell('th', `T${i + 1}`));
    row.forEach((value, j) => {
      const td = cell('td', value.toFixed(3));
      td.dataset.i = String(i);
      td.dataset.j = String(j);
      td.dataset.value = String(value);
      td.title = `T${i + 1} · T${j + 1}: ${value.toFixed(4)}`;
      // Shade by similarity, clamped at 0: negative cosines are as unrelated as it gets here.
      td.style.background = withAlpha(accent, Math.max(0, Math.min(1, value)) * 0.6);
      tr.append(td);
    });
    matrix.append(tr);
  });

  const legend = el('ol');
  r.texts.forEach((text, i) => {
    const item = el('li', undefined, text);
    item.title = `${r.tokens[i]} tokens`;
    legend.append(item);
  });
  results.replaceChildren(el('h2', undefined, 'Cosine similarity'), matrix, legend, el('h2', undefined, 'Speed on this machine'), timing);
}

function cell(tag: 'td' | 'th', text: string): HTMLElement {
  const c = el(tag, undefined, text);
  Object.assign(c.style, { padding: '4px 8px', textAlign: 'right', border: '1px solid var(--vscode-panel-border, rgba(128,128,128,0.3))' });
  return c;
}

/** Theme colours come as #rrggbb (or rgb()); the cell needs the same colour with an alpha. */
function withAlpha(color: string, alpha: number): string {
  const hex = /^#([0-9a-f]{6})$/i.exec(color);
  if (hex) {
    const n = parseInt(hex[1], 16);
    return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha.toFixed(3)})`;
  }
  const rgb = /^rgba?\((\d+),\s*(\d+),\s*(\d+)/i.exec(color);
  return rgb ? `rgba(${rgb[1]}, ${rgb[2]}, ${rgb[3]}, ${alpha.toFixed(3)})` : `rgba(55, 148, 255, ${alpha.toFixed(3)})`;
}
