import type { TrainFormField, TrainFormFieldName, TrainFormFromWebview, TrainFormToWebview } from '../../src/shared/protocol/trainFormMessages';
import { button, registerComponents } from '../shared/components';
import { el, vscodeApi } from '../shared/vscodeApi';

registerComponents();
const vscode = vscodeApi<unknown>();
const post = (message: TrainFormFromWebview) => vscode.postMessage(message);
const app = document.getElementById('app')!;

type Input = HTMLInputElement | HTMLSelectElement;
const inputs = new Map<string, Input>();
const problems = new Map<string, HTMLElement>();
const follows = new Map<string, HTMLElement>();
const FOLLOWING = new Set(['warmupSteps', 'checkpointEvery']);
let timers = new Map<string, ReturnType<typeof setTimeout>>();

window.addEventListener('message', (event: MessageEvent<TrainFormToWebview>) => {
  const message = event.data;
  if (message?.type === 'init') render(message);
  else if (message?.type === 'state') update(message);
});
post({ type: 'ready' });

function render(m: Extract<TrainFormToWebview, { type: 'init' }>): void {
  inputs.clear();
  problems.clear();
  follows.clear();
  timers = new Map();
  const header = el('header');
  header.append(el('h1', undefined, `Prune and Finetune ${m.modelName}`), el('p', 'subtitle', m.model));
  const machine = el('p', 'hint', m.machine);
  machine.id = 'machine';
  const remembered = el('p', 'hint');
  remembered.id = 'remembered';
  const form = el('form', 'train-form');
  form.id = 'train-form';
  form.addEventListener('submit', (e) => e.preventDefault());
  const groups = new Map<string, HTMLFieldSetElement>();
  for (const field of m.fields) {
    let group = groups.get(field.group);
    if (!group) {
      group = el('fieldset', 'form-group');
      group.dataset.group = field.group;
      group.append(el('legend', undefined, field.group));
      groups.set(field.group, group);
      form.append(group);
    }
    group.append(row(field, m.numLayers));
  }
  const plan = el('section', 'plan-box');
  plan.id = 'plan-box';
  const planLine = el('p', 'plan-summary', 'Planning…');
  planLine.id = 'plan';
  const planDetail = el('p', 'hint');
  planDetail.id = 'plan-detail';
  plan.append(el('h2', undefined, 'Resource plan'), planLine, planDetail);
  const actions = el('div', 'actions');
  const start = button('Start Training', 'start', 'primary');
  start.addEventListener('click', () => post({ type: 'start' }));
  const reset = button('Reset to Defaults', 'reset');
  reset.addEventListener('click', () => post({ type: 'reset' }));
  const cancel = button('Cancel', 'cancel');
  cancel.addEventListener('click', () => post({ type: 'cancel' }));
  actions.append(start, reset, cancel);
  const status = el('p', 'hint');
  status.id = 'status';
  // The plan and Start stay in view (sticky) while the user scrolls through the groups.
  plan.append(actions, status);
  app.replaceChildren(header, machine, remembered, plan, form);
}

function row(field: TrainFormField, numLayers: number): HTMLElement {
  const wrap = el('div', 'form-row');
  wrap.dataset.field = field.name;
  const id = `field-${field.name}`;
  const label = el('label', undefined, field.name === 'keep' ? `${field.label} (of ${numLayers})` : field.label);
  label.htmlFor = id;
  let input: Input;
  if (field.kind === 'enum' || field.kind === 'bool') {
    const select = el('select');
    const options = field.kind === 'bool' ? ['true', 'false'] : field.options ?? [];
    for (const value of options) {
      const option = el('option', undefined, field.kind === 'bool' ? (value === 'true' ? 'on' : 'off') : value === 'true' ? 'on' : value === 'false' ? 'off' : value);
      option.value = value;
      select.append(option);
    }
    select.addEventListener('change', () => send(field.name, select.value, 0));
    input = select;
  } else {
    const text = el('input');
    text.type = 'text';
    text.spellcheck = false;
    if (field.kind === 'int' || field.kind === 'number') text.inputMode = 'decimal';
    text.addEventListener('input', () => send(field.name, text.value, field.name === 'data' ? 600 : 150));
    text.addEventListener('change', () => send(field.name, text.value, 0));
    input = text;
  }
  input.id = id;
  input.setAttribute('aria-describedby', `hint-${field.name} problem-${field.name}`);
  inputs.set(field.name, input);
  const controls = el('div', 'form-control');
  controls.append(input);
  if (field.name === 'data') {
    const browse = button('Browse…', 'browse-data');
    browse.addEventListener('click', () => post({ type: 'browseData' }));
    const preview = button('Preview', 'preview-data');
    preview.addEventListener('click', () => post({ type: 'previewData' }));
    controls.append(browse, preview);
  }
  const hint = el('span', 'hint', field.hint);
  hint.id = `hint-${field.name}`;
  const problem = el('span', 'error');
  problem.id = `problem-${field.name}`;
  problems.set(field.name, problem);
  wrap.append(label, controls, hint);
  if (FOLLOWING.has(field.name)) {
    const follow = el('span', 'tag');
    follow.id = `follow-${field.name}`;
    follows.set(field.name, follow);
    wrap.append(follow);
  }
  wrap.append(problem);
  return wrap;
}

function send(field: string, value: string, delay: number): void {
  clearTimeout(timers.get(field));
  const go = () => post({ type: 'edit', field: field as TrainFormFieldName, value });
  if (delay === 0) go();
  else timers.set(field, setTimeout(go, delay));
}

function update(m: Extract<TrainFormToWebview, { type: 'state' }>): void {
  for (const [name, input] of inputs) {
    const value = m.raw[name as TrainFormFieldName] ?? '';
    // The field being typed in keeps the user's text; every other field shows the host's (a default that followed).
    if (document.activeElement !== input && input.value !== value) input.value = value;
    input.dataset.set = String(m.set.includes(name as TrainFormFieldName));
    const problem = name === 'data' ? (m.problems.data ?? m.dataProblem) : m.problems[name as TrainFormFieldName];
    problems.get(name)!.textContent = problem ?? '';
    input.setAttribute('aria-invalid', String(!!problem));
  }
  for (const [name, tag] of follows) tag.textContent = m.set.includes(name as TrainFormFieldName) ? 'set by you' : 'follows the steps';
  const dataProblem = document.getElementById('problem-data');
  if (dataProblem) dataProblem.dataset.kind = m.dataProblem ? 'data' : '';
  const plan = document.getElementById('plan')!;
  plan.textContent = m.plan ? m.plan.summary : 'No plan: the worker’s devices or the model could not be read, or a field above is wrong.';
  plan.dataset.fits = m.plan ? String(m.plan.fits) : 'unknown';
  document.getElementById('plan-detail')!.textContent = m.plan?.detail ?? '';
  document.getElementById('remembered')!.textContent = m.remembered ? 'Prefilled with the values of your last run of this model; Reset to Defaults starts over.' : '';
  const status = document.getElementById('status')!;
  status.textContent = m.status;
  status.className = m.status.startsWith('Not started') ? 'error' : 'hint';
  document.getElementById('start')?.toggleAttribute('disabled', Object.keys(m.problems).length > 0);
}
