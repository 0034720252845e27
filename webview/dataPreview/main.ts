import { formatShare } from '../../src/shared/format/units';
import { histogramBars, MAX_LENGTH_BOUNDS, type DataPreviewFromWebview, type DataPreviewToWebview } from '../../src/shared/protocol/dataPreviewMessages';
import type { DataPreview } from '../../src/shared/protocol/generated/data-preview';
import { button, registerComponents } from '../shared/components';
import { el, vscodeApi } from '../shared/vscodeApi';

registerComponents();
const vscode = vscodeApi<unknown>();
const post = (message: DataPreviewFromWebview) => vscode.postMessage(message);
const app = document.getElementById('app')!;
const SVG = 'http://www.w3.org/2000/svg';
const formatCount = (n: number) => n.toLocaleString('en-US');

let shown: DataPreview | undefined;

window.addEventListener('message', (event: MessageEvent<DataPreviewToWebview>) => {
  const message = event.data;
  if (message?.type === 'loading') {
    app.dataset.state = 'loading';
    // A recount keeps the report on the page until the new one arrives.
    if (shown && shown.data === message.data) return status(`Counting again at max length ${message.maxLength}…`, 'hint');
    shown = undefined;
    const header = el('header');
    header.append(el('h1', undefined, 'Preview Training Data'), el('p', 'subtitle', message.data));
    app.replaceChildren(header, el('p', 'hint', `Reading the data and counting its tokens with the tokenizer of ${message.model} (max length ${message.maxLength})…`));
  } else if (message?.type === 'failed') {
    app.dataset.state = 'failed';
    if (shown && shown.data === message.data) return status(message.message, 'error', 'preview-error');
    const header = el('header');
    header.append(el('h1', undefined, 'Preview Training Data'), el('p', 'subtitle', message.data));
    const error = el('p', 'error', message.message);
    error.id = 'preview-error';
    app.replaceChildren(header, error);
  } else if (message?.type === 'show') {
    shown = message.report;
    render(message.report);
    app.dataset.state = 'shown';
  }
});

/** One line under the controls: a recount in progress, or why it failed. */
function status(text: string, className: string, id = 'status'): void {
  const line = document.getElementById('status') ?? document.getElementById('preview-error');
  if (!line) return;
  line.id = id;
  line.className = className;
  line.textContent = text;
}
post({ type: 'ready' });

const FORMAT: Record<DataPreview['format'], string> = {
  jsonl: 'JSONL file',
  csv: 'CSV file',
  parquet: 'Parquet file',
  datasets: 'datasets folder (save_to_disk)',
  e5: 'E5 folder (LLM2Vec per-dataset files)',
};

function render(r: DataPreview): void {
  const header = el('header');
  header.append(el('h1', undefined, 'Preview Training Data'));
  header.append(el('p', 'subtitle', r.data));
  const facts = el('table', 'plan-table facts');
  facts.id = 'facts';
  const columns = Object.entries(r.columns)
    .filter(([, column]) => column !== null)
    .map(([role, column]) => (role === column ? role : `${role} ← ${column}`))
    .join(', ');
  const rows: Array<[string, string]> = [
    ['Format', FORMAT[r.format]],
    ['Triples', formatCount(r.rows)],
    ['Columns', r.format === 'e5' ? `${columns}; instruction, task and symmetric from each file's data set` : columns],
    ['Text as the model sees it', `${r.chatWrapped ? 'inside the model’s chat user turn' : 'as it is (no chat wrapper)'}; ` +
      (r.columns.instruction !== null || r.format === 'e5' ? `a query’s instruction before it as “${r.instructionFormat.replace('{instruction}', '…')}”` : 'no instructions')],
    ['Tokenizer', r.model],
    ...r.notes.map((note): [string, string] => ['Note', note]),
  ];
  for (const [name, value] of rows) {
    const tr = el('tr');
    tr.append(el('th', undefined, name), el('td', undefined, value));
    facts.append(tr);
  }
  header.append(facts);

  const controls = el('section', 'controls');
  const label = el('label', undefined, 'Max length');
  label.htmlFor = 'max-length';
  const input = el('input');
  input.type = 'number';
  input.id = 'max-length';
  input.min = String(MAX_LENGTH_BOUNDS.min);
  input.max = String(MAX_LENGTH_BOUNDS.max);
  input.value = String(r.maxLength);
  const recount = button('Count Again', 'recount');
  const send = () => {
    const n = Number(input.value);
    if (Number.isSafeInteger(n) && n >= MAX_LENGTH_BOUNDS.min && n <= MAX_LENGTH_BOUNDS.max) post({ type: 'recount', maxLength: n });
    else input.setCustomValidity(`a whole number from ${MAX_LENGTH_BOUNDS.min} to ${MAX_LENGTH_BOUNDS.max}`);
  };
  recount.addEventListener('click', send);
  input.addEventListener('keydown', (e) => e.key === 'Enter' && send());
  input.addEventListener('input', () => input.setCustomValidity(''));
  controls.append(label, input, recount);
  const line = el('p', 'hint');
  line.id = 'status';

  app.replaceChildren(header, controls, line, lengthsSection(r), tasksSection(r), samplesSection(r));
}

function lengthsSection(r: DataPreview): HTMLElement {
  const section = el('section');
  const L = r.lengths;
  section.append(el('h2', undefined, 'Token lengths'));
  const cut = el('p', L.truncated ? 'warning' : 'hint');
  cut.id = 'truncated';
  cut.dataset.truncated = String(L.truncated);
  cut.textContent = L.truncated
    ? `${formatCount(L.truncated)} of ${formatCount(L.texts)} texts (${formatShare(L.truncated / L.texts)}) are longer than ${r.maxLength} tokens and are cut: ` +
      `${formatCount(L.truncatedByKind.query)} queries, ${formatCount(L.truncatedByKind.positive)} positives, ${formatCount(L.truncatedByKind.negative)} negatives.`
    : `No text is longer than ${r.maxLength} tokens: nothing is cut.`;
  section.append(cut);
  section.append(histogram(r));
  const counted = L.sampled
    ? `${formatCount(L.rowsCounted)} of ${formatCount(r.rows)} triples drawn at random (seeded) and counted`
    : `all ${formatCount(r.rows)} triples counted`;
  const instructed = r.columns.instruction !== null || r.format === 'e5' ? ' with their instruction' : '';
  const wrapper = r.chatWrapped ? ', the chat wrapper' : '';
  section.append(el('p', 'hint', `${counted}: ${formatCount(L.texts)} texts (queries${instructed}, positives, negatives), special tokens${wrapper} included, before truncation. ` +
    `Median ${L.p50}, 95th percentile ${L.p95}, longest ${L.max}, mean ${L.mean.toFixed(1)} tokens.`));
  return section;
}

function svg<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Bars drawn as SVG (theme colours from CSS classes, no inline style: the page's CSP allows none). */
function histogram(r: DataPreview): SVGSVGElement {
  const bars = histogramBars(r.lengths, r.maxLength);
  const W = 720, H = 240, left = 56, right = 12, top = 18, bottom = 40;
  const x0 = bars[0].from, x1 = bars[bars.length - 1].to;
  const peak = Math.max(1, ...bars.map((b) => b.count));
  const x = (v: number) => left + ((v - x0) / (x1 - x0)) * (W - left - right);
  const y = (v: number) => top + (1 - v / peak) * (H - top - bottom);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'histogram', role: 'img', 'aria-label': `token-length histogram, ${bars.length} bins` });
  root.id = 'length-histogram';
  root.dataset.bins = String(bars.length);
  root.dataset.maxLength = String(r.maxLength);
  for (const tick of [0, 0.5, 1].map((f) => Math.round(f * peak))) {
    root.append(svg('line', { x1: left, x2: W - right, y1: y(tick), y2: y(tick), class: 'grid' }));
    root.append(svg('text', { x: left - 6, y: y(tick) + 4, 'text-anchor': 'end', class: 'axis' }, formatCount(tick)));
  }
  for (const b of bars) {
    const rect = svg('rect', { x: x(b.from) + 0.5, width: Math.max(1, x(b.to) - x(b.from) - 1), y: y(b.count), height: Math.max(0, y(0) - y(b.count)), class: b.truncated ? 'bar cut' : 'bar' });
    rect.append(svg('title', {}, `${b.from}–${b.to - 1} tokens: ${formatCount(b.count)} texts`));
    root.append(rect);
  }
  const every = Math.max(1, Math.ceil(bars.length / 10));
  bars.forEach((b, i) => {
    if (i % every === 0) root.append(svg('text', { x: x(b.from), y: H - bottom + 16, 'text-anchor': 'middle', class: 'axis' }, String(b.from)));
  });
  root.append(svg('text', { x: (left + W - right) / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis' }, 'tokens per text'));
  // A text of n tokens occupies [n, n + 1) on the axis: the kept lengths end at maxLength + 1.
  if (r.maxLength + 1 <= x1) {
    const cutX = x(r.maxLength + 1);
    root.append(svg('line', { x1: cutX, x2: cutX, y1: top - 6, y2: y(0), class: 'max-length' }));
    const anchor = cutX > W - 160 ? 'end' : 'start';
    root.append(svg('text', { x: cutX + (anchor === 'end' ? -6 : 6), y: top + 4, 'text-anchor': anchor, class: 'max-length-label' },
      `max length ${r.maxLength}: ${formatCount(r.lengths.truncated)} cut`));
  } else {
    // Far past the longest text: said at the plot's right edge rather than squeezing the bars to its left.
    root.append(svg('text', { x: W - right, y: top + 4, 'text-anchor': 'end', class: 'max-length-label' }, `max length ${r.maxLength} → (past the longest text)`));
  }
  root.append(svg('text', { x: 12, y: (top + H - bottom) / 2, 'text-anchor': 'middle', class: 'axis', transform: `rotate(-90 12 ${(top + H - bottom) / 2})` }, 'texts'));
  return root;
}

function tasksSection(r: DataPreview): HTMLElement {
  const section = el('section');
  section.append(el('h2', undefined, `Tasks (${r.tasks.length})`));
  const table = el('table', 'variants tasks');
  table.id = 'tasks';
  const head = el('tr');
  for (const [name, cls] of [['Task', undefined], ['Triples', 'num'], ['Share', 'num']] as const) {
    const th = el('th', cls, name);
    th.scope = 'col';
    head.append(th);
  }
  const thead = el('thead');
  thead.append(head);
  const body = el('tbody');
  for (const t of r.tasks.slice(0, 200)) {
    const tr = el('tr', 'task-row');
    tr.append(el('td', 'label', t.name ?? '(no task)'), el('td', 'num', formatCount(t.rows)), el('td', 'num', formatShare(t.rows / r.rows)));
    body.append(tr);
  }
  table.append(thead, body);
  const scroller = el('div', 'table-scroll');
  scroller.append(table);
  section.append(scroller);
  if (r.tasks.length > 200) section.append(el('p', 'hint', `and ${r.tasks.length - 200} more tasks`));
  if (r.tasks.length === 1) section.append(el('p', 'hint', 'One task: task-homogeneous batches are the same as mixed ones here.'));
  return section;
}

function samplesSection(r: DataPreview): HTMLElement {
  const section = el('section');
  section.append(el('h2', undefined, 'Sample triples, as the model sees them'));
  for (const s of r.samples) {
    const card = el('article', 'sample');
    card.append(el('p', 'hint', `row ${formatCount(s.row)}${s.task ? ` · task ${s.task}` : ''}${s.instruction ? ` · instruction “${s.instruction}”` : ''}${s.symmetric ? ' · symmetric (documents get the instruction too)' : ''}`));
    for (const [role, text, tokens] of [['Query', s.query, s.queryTokens], ['Positive', s.positive, s.positiveTokens], ['Negative', s.negative, s.negativeTokens]] as const) {
      const row = el('div', 'sample-text');
      row.append(el('span', 'sample-role', role), el('pre', undefined, text), el('span', tokens > r.maxLength ? 'sample-tokens warning' : 'sample-tokens', `${tokens} tokens`));
      card.append(row);
    }
    section.append(card);
  }
  return section;
}
