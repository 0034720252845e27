import trainSchema from '../../protocol/specs/train.schema.json';
import { schemaCheck, type JsonSchema } from '../protocol/schemas';
import { TRAIN_DEFAULTS } from '../shared/protocol/generated/defaults';
import type { DevicesReport } from '../shared/protocol/generated/devices-report';
import { TRAIN_FORM_FIELDS, type TrainFormField, type TrainFormFieldName } from '../shared/protocol/trainFormMessages';
import { deviceDefaults, followedSchedule, runsOnCpu } from '../shared/train/recipeDefaults';
import { CONSENT_FIELDS, TASK_SPEC_FIELDS, type TrainRecipe, type TrainTaskDefinition } from './trainDefinition';
import { checkDevices } from './trainDevices';

/**
 * The training form's model, free of the vscode module: the text of every field as the page shows it, which
 * fields the user set (the others follow the device's defaults and the step count), and from those the task
 * definition the form launches: the same TrainTaskDefinition a tasks.json entry holds.
 */
export interface TrainFormState {
  model: string;
  numLayers: number;
  raw: Record<TrainFormFieldName, string>;
  /** Fields the user typed in or that were remembered as typed; every other field shows its default. */
  set: TrainFormFieldName[];
}

const FOLLOWING: ReadonlySet<TrainFormFieldName> = new Set(['warmupSteps', 'checkpointEvery']);
const CHECK = schemaCheck(trainSchema as JsonSchema);

function text(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (Array.isArray(value)) return value.join(', ');
  if (typeof value === 'object') return Object.entries(value as Record<string, string>).map(([k, v]) => `${k}=${v}`).join(',');
  return String(value);
}

/** The form's defaults on the device the launch would use (devices as typed, the worker's report). */
export function defaultRaw(keep: number, data: string, devices: string, device: string, report: DevicesReport | undefined): Record<TrainFormFieldName, string> {
  const sized = deviceDefaults(runsOnCpu(devices, device, report?.cuda.length));
  const base: Record<string, unknown> = { ...TRAIN_DEFAULTS, ...sized, ...followedSchedule(sized.steps), keep, data };
  return Object.fromEntries(TRAIN_FORM_FIELDS.map((f) => [f.name, text(base[f.name])])) as Record<TrainFormFieldName, string>;
}

/** Every field the user did not set takes its default again, after any change (devices, steps). */
export function settle(state: TrainFormState, report: DevicesReport | undefined): TrainFormState {
  const set = new Set(state.set);
  const devices = set.has('devices') ? state.raw.devices.trim() : TRAIN_DEFAULTS.devices;
  const device = set.has('device') ? state.raw.device.trim() : TRAIN_DEFAULTS.device;
  const defaults = defaultRaw(Number(state.raw.keep), state.raw.data, devices, device, report);
  const raw = { ...state.raw };
  for (const field of TRAIN_FORM_FIELDS) if (!set.has(field.name) && field.name !== 'keep' && field.name !== 'data') raw[field.name] = defaults[field.name];
  const steps = Number(raw.steps);
  if (Number.isSafeInteger(steps) && steps >= 1) {
    const follow = followedSchedule(steps);
    for (const name of FOLLOWING) if (!set.has(name)) raw[name] = String(follow[name as keyof typeof follow]);
  }
  return { ...state, raw };
}

/** The user typed `value` into `field`; an emptied field that has a default goes back to following it. */
export function edit(state: TrainFormState, field: TrainFormFieldName, value: string, report: DevicesReport | undefined): TrainFormState {
  const spec = fieldOf(field);
  const set = new Set(state.set);
  if (value.trim() === '' && !spec.optional && field !== 'data') set.delete(field);
  else set.add(field);
  return settle({ ...state, raw: { ...state.raw, [field]: value }, set: [...set] }, report);
}

export function fieldOf(name: TrainFormFieldName): TrainFormField {
  return TRAIN_FORM_FIELDS.find((f) => f.name === name)!;
}

type Parsed = { ok: true; value: unknown } | { ok: false; problem: string };

function parseField(field: TrainFormField, raw: string): Parsed {
  const v = raw.trim();
  if (v === '' && field.optional) return { ok: true, value: null };
  switch (field.kind) {
    case 'int':
      return /^-?\d+$/.test(v) ? { ok: true, value: Number(v) } : { ok: false, problem: `${field.label}: a whole number${field.optional ? ', or empty for none' : ''}` };
    case 'number':
      return v !== '' && Number.isFinite(Number(v)) ? { ok: true, value: Number(v) } : { ok: false, problem: `${field.label}: a number${field.optional ? ', or empty for the default rule' : ''}` };
    case 'bool':
      return v === 'true' || v === 'false' ? { ok: true, value: v === 'true' } : { ok: false, problem: `${field.label}: on or off` };
    case 'enum': {
      const option = field.options!.find((o) => o === v);
      if (option === undefined) return { ok: false, problem: `${field.label}: one of ${field.options!.join(', ')}` };
      return { ok: true, value: option === 'true' ? true : option === 'false' ? false : option };
    }
    case 'list': {
      const items = v.split(/[\s,]+/).filter(Boolean);
      return items.length ? { ok: true, value: items } : { ok: false, problem: `${field.label}: at least one module name, comma-separated` };
    }
    case 'columns': {
      const entries = v.split(',').map((p) => p.trim()).filter(Boolean).map((p) => p.split('=').map((s) => s.trim()));
      if (entries.some((e) => e.length !== 2 || !e[0] || !e[1])) return { ok: false, problem: `${field.label}: role=column pairs, e.g. query=anchor,positive=pos` };
      return { ok: true, value: Object.fromEntries(entries) };
    }
    default:
      return v === '' ? { ok: false, problem: `${field.label} is needed` } : { ok: true, value: v };
  }
}

export interface FormOutcome {
  /** What the form launches; undefined while any field is wrong. */
  definition?: TrainTaskDefinition;
  /** The recipe as the planner takes it (every parsed field, even while another is wrong). */
  recipe: TrainRecipe & { steps: number };
  keep: number;
  devices: string;
  /** One sentence per wrong field. */
  problems: Partial<Record<TrainFormFieldName, string>>;
}

/**
 * The definition the form stands for, checked by the train spec's own schema (the worker's bounds) and the
 * machine's devices. A recipe field equal to its default is left out, as a hand-written tasks.json would.
 */
export function toDefinition(state: TrainFormState, report: DevicesReport | undefined): FormOutcome {
  const problems: Partial<Record<TrainFormFieldName, string>> = {};
  const values: Record<string, unknown> = {};
  for (const field of TRAIN_FORM_FIELDS) {
    const parsed = parseField(field, state.raw[field.name] ?? '');
    if (parsed.ok) values[field.name] = parsed.value;
    else problems[field.name] = parsed.problem;
  }
  const keep = typeof values.keep === 'number' ? values.keep : 1;
  if (!problems.keep && (keep < 1 || keep > state.numLayers)) problems.keep = `Layers to keep: a whole number from 1 to ${state.numLayers}`;
  const spec = { ...values, model: state.model };
  for (const problem of CHECK.problems(spec)) {
    const name = problem.field as TrainFormFieldName | undefined;
    if (name && name in state.raw && !problems[name]) problems[name] = `${fieldOf(name).label}: ${problem.text}`;
  }
  const devices = typeof values.devices === 'string' ? values.devices : TRAIN_DEFAULTS.devices;
  const devicesProblem = problems.devices ? undefined : checkDevices(devices, report);
  if (devicesProblem) problems.devices = devicesProblem;
  const recipe: Record<string, unknown> = {};
  for (const field of TRAIN_FORM_FIELDS) {
    const name = field.name;
    if ((TASK_SPEC_FIELDS as readonly string[]).includes(name) || (CONSENT_FIELDS as readonly string[]).includes(name) || !(name in values)) continue;
    if (JSON.stringify(values[name]) !== JSON.stringify((TRAIN_DEFAULTS as Record<string, unknown>)[name])) recipe[name] = values[name];
  }
  const steps = typeof values.steps === 'number' && values.steps >= 1 ? values.steps : TRAIN_DEFAULTS.steps;
  const outcome: FormOutcome = { recipe: { ...(recipe as TrainRecipe), steps }, keep, devices, problems };
  if (Object.keys(problems).length) return outcome;
  outcome.definition = {
    type: 'l3prune',
    verb: 'train',
    model: state.model,
    keep,
    data: String(values.data),
    steps,
    ...(devices !== TRAIN_DEFAULTS.devices ? { devices } : {}),
    recipe: recipe as TrainRecipe,
  };
  return outcome;
}

/** What is remembered per model: the fields the user set and their text (keep comes from the cut each time). */
export interface RememberedForm {
  raw: Partial<Record<TrainFormFieldName, string>>;
  set: TrainFormFieldName[];
}

export function remembered(state: TrainFormState): RememberedForm {
  const set = state.set.filter((name) => name !== 'keep');
  return { raw: Object.fromEntries([...set, 'data'].map((name) => [name, state.raw[name as TrainFormFieldName]])), set };
}

/** The form for a model: its defaults, then what was remembered for it (only known fields, only text). */
export function initialState(
  model: string,
  numLayers: number,
  keep: number,
  data: string,
  memory: unknown,
  report: DevicesReport | undefined,
): TrainFormState {
  const names = new Set<string>(TRAIN_FORM_FIELDS.map((f) => f.name));
  const m = (memory ?? {}) as Partial<RememberedForm>;
  const set = Array.isArray(m.set) ? m.set.filter((n): n is TrainFormFieldName => names.has(n) && n !== 'keep' && n !== 'data') : [];
  const raw = defaultRaw(keep, data, TRAIN_DEFAULTS.devices, TRAIN_DEFAULTS.device, report);
  for (const name of set) {
    const value = m.raw?.[name];
    if (typeof value === 'string') raw[name] = value;
  }
  return settle({ model, numLayers, raw, set: set.filter((n) => typeof m.raw?.[n] === 'string') }, report);
}
