import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import trainSchema from '../../protocol/specs/train.schema.json';
import { checkTrainingData, refusedData, refusedDataOf, stillRefused, ALIASES } from '../../src/runs/dataCheck';
import { isResumable, RunStore, type RunSummary } from '../../src/runs/runStore';
import { edit, initialState, remembered, toDefinition } from '../../src/runs/trainForm';
import { specFromDefinition } from '../../src/runs/trainDefinition';
import { parseTrainFormMessage } from '../../src/shared/protocol/trainFormMessages';
import type { DevicesReport } from '../../src/shared/protocol/generated/devices-report';
import { followedSchedule } from '../../src/shared/train/recipeDefaults';
import { hostileMessages } from '../fixtures/hostileMessages';

const root = path.resolve(__dirname, '../..');
const PYTHON = path.join(root, '.venv', 'bin', 'python');
const MODEL = path.join(root, '.demo', 'models', 'smollm2-135m');
const props = (trainSchema as { properties: Record<string, { default?: unknown }> }).properties;
const CPU_ONLY = { cuda: [] } as unknown as DevicesReport;

/** The worker's own answer (worker/l3prune), the reference the host's checks must agree with. */
function worker(script: string, input: unknown): unknown {
  const out = execFileSync(PYTHON, ['-c', script], { input: JSON.stringify(input), encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  return JSON.parse(out);
}
const haveWorker = fs.existsSync(PYTHON);

describe('training form: the schedule follows the steps', () => {
  it('keeps the paper’s ratios: 1000 steps give the schema’s own warm-up and checkpoint defaults', () => {
    assert.deepEqual(followedSchedule(props.steps.default as number), { warmupSteps: props.warmupSteps.default, checkpointEvery: props.checkpointEvery.default });
  });
  it('scales them for a short run, a checkpoint at least every step', () => {
    assert.deepEqual(followedSchedule(40), { warmupSteps: 12, checkpointEvery: 4 });
    assert.deepEqual(followedSchedule(1), { warmupSteps: 0, checkpointEvery: 1 });
    assert.deepEqual(followedSchedule(200), { warmupSteps: 60, checkpointEvery: 20 });
  });
});

describe('training form: defaults and edits', () => {
  const fresh = (report: DevicesReport | undefined = CPU_ONLY) => initialState(MODEL, 30, 14, '/data/t.jsonl', undefined, report);

  it('starts a CPU machine small (batch 8, 64 tokens, 200 steps) and a GPU one at the paper’s recipe', () => {
    const cpu = fresh().raw;
    assert.deepEqual([cpu.batchSize, cpu.maxLength, cpu.steps, cpu.warmupSteps, cpu.checkpointEvery], ['8', '64', '200', '60', '20']);
    const gpu = fresh({ cuda: [{ index: 0 }] } as unknown as DevicesReport).raw;
    assert.deepEqual([gpu.batchSize, gpu.maxLength, gpu.steps], [String(props.batchSize.default), String(props.maxLength.default), String(props.steps.default)]);
  });

  it('follows the steps until the user sets warm-up, and again once the field is emptied', () => {
    let s = edit(fresh(), 'steps', '40', CPU_ONLY);
    assert.deepEqual([s.raw.warmupSteps, s.raw.checkpointEvery], ['12', '4']);
    s = edit(s, 'warmupSteps', '5', CPU_ONLY);
    s = edit(s, 'steps', '80', CPU_ONLY);
    assert.deepEqual([s.raw.warmupSteps, s.raw.checkpointEvery], ['5', '8']);
    s = edit(s, 'warmupSteps', '', CPU_ONLY);
    assert.equal(s.raw.warmupSteps, '24');
  });

  it('names the wrong field in one sentence and launches nothing', () => {
    const s = edit(fresh(), 'loraDropout', '1.5', CPU_ONLY);
    const outcome = toDefinition(s, CPU_ONLY);
    assert.equal(outcome.definition, undefined);
    assert.match(outcome.problems.loraDropout ?? '', /^Dropout: /);
    assert.match(toDefinition(edit(fresh(), 'keep', '31', CPU_ONLY), CPU_ONLY).problems.keep ?? '', /from 1 to 30/);
    assert.match(toDefinition(edit(fresh(), 'devices', 'cuda:0', CPU_ONLY), CPU_ONLY).problems.devices ?? '', /does not have/);
  });

  it('remembers only what the user set, and a remembered form comes back with it', () => {
    const s = edit(edit(fresh(), 'steps', '40', CPU_ONLY), 'pooling', 'mean', CPU_ONLY);
    const memory = JSON.parse(JSON.stringify(remembered(s)));
    const back = initialState(MODEL, 30, 14, '/data/t.jsonl', memory, CPU_ONLY);
    assert.deepEqual([back.raw.steps, back.raw.pooling, back.raw.warmupSteps, back.raw.batchSize], ['40', 'mean', '12', '8']);
    // Anything else a memento holds is ignored, not put into the form.
    const hostile = initialState(MODEL, 30, 14, '/d', { set: ['steps', 'nonsense', 'keep'], raw: { steps: 7, keep: '1', nonsense: 'x' } }, CPU_ONLY);
    assert.deepEqual([hostile.raw.steps, hostile.raw.keep, hostile.set], ['200', '14', []]);
  });

  it('produces a definition the worker’s own spec check accepts, with every field set away from its default', function () {
    if (!haveWorker) this.skip();
    let s = fresh();
    const values: Record<string, string> = {
      steps: '40', warmupSteps: '3', learningRate: '0.0001', checkpointEvery: '5', scheduleSteps: '50', scheduleEpochs: '2', seed: '7',
      loraR: '8', loraAlpha: '4', loraDropout: '0.1', targetModules: 'q_proj, v_proj', pooling: 'last_token', scale: '20',
      precision: 'fp32', gradientCheckpointing: 'true', miniBatchSize: '4', batchSize: '16', maxLength: '32', devices: 'cpu',
      device: 'cpu', mergeAtEnd: 'false', taskHomogeneous: 'false', chatTemplate: 'off', dataColumns: 'query=anchor',
    };
    for (const [field, value] of Object.entries(values)) s = edit(s, field as never, value, CPU_ONLY);
    const { definition, problems } = toDefinition(s, CPU_ONLY);
    assert.deepEqual(problems, {});
    const spec = specFromDefinition(definition!);
    const verdict = worker(
      'import json,sys\nfrom l3prune import specs\nspec=json.load(sys.stdin)\ntry:\n  specs.check("train", spec); print(json.dumps("ok"))\nexcept Exception as e: print(json.dumps(str(e)))',
      spec,
    );
    assert.equal(verdict, 'ok');
    assert.deepEqual([spec.loraAlpha, spec.targetModules, spec.gradientCheckpointing, spec.dataColumns, spec.scheduleSteps], [4, ['q_proj', 'v_proj'], true, { query: 'anchor' }, 50]);
  });
});

describe('training form: the data file is checked in the host as the worker would read it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l3p-datacheck-'));
  const good = '{"query": "q", "positive": "p", "negative": "n"}';
  const files: Record<string, string> = {
    'csv-as-jsonl.jsonl': 'query,positive,negative\nq,p,n\n',
    'bad-json-line3.jsonl': `${good}\n\n{"query": "q", "positive": "p", "negative": }\n`,
    'missing-negative.jsonl': `${good}\n{"query": "q", "positive": "p"}\n`,
    'empty-positive.jsonl': `${good}\n${good}\n{"query": "q", "positive": " ", "negative": "n"}\n`,
    'number-query.jsonl': '{"query": 3, "positive": "p", "negative": "n"}\n',
    'anchor-names.jsonl': '{"anchor": "q", "pos": "p", "hard_negative": "n"}\n',
    'array-line.jsonl': `${good}\n[1, 2]\n`,
    'no-negative-column.csv': 'query,positive\nq,p\n',
    'good.csv': 'anchor,positive,negative\nq,p,n\n',
    'not-parquet.parquet': 'query,positive,negative\n',
    'blank.jsonl': '\n\n',
  };
  for (const [name, body] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), body);
  const demo = path.join(root, '.demo', 'data', 'triples.jsonl');

  it('agrees with the worker’s datasource.load on every file: refused or not, and on the same line', async function () {
    if (!haveWorker) this.skip();
    this.timeout(60_000);
    const paths = [...Object.keys(files).map((f) => path.join(dir, f)), demo, path.join(dir, 'nowhere.jsonl')];
    const verdicts = worker(
      'import json,sys\nfrom l3prune.datasource import load, DataError\nout=[]\nfor p in json.load(sys.stdin):\n  try:\n    load(p); out.append(None)\n  except DataError as e: out.append(str(e))\nprint(json.dumps(out))',
      paths,
    ) as Array<string | null>;
    for (const [i, file] of paths.entries()) {
      const ours = await checkTrainingData(file);
      const theirs = verdicts[i];
      assert.equal(ours === undefined, theirs === null, `${path.basename(file)}: host says ${ours ?? 'ok'}, worker says ${theirs ?? 'ok'}`);
      const line = (t: string | null | undefined) => t?.match(/:(\d+):/)?.[1];
      assert.equal(line(ours), line(theirs), `${path.basename(file)}: the same line (host: ${ours}; worker: ${theirs})`);
    }
  });

  it('quotes the first bad line with file:line and what to do', async () => {
    const message = await checkTrainingData(path.join(dir, 'csv-as-jsonl.jsonl'));
    assert.match(message ?? '', /csv-as-jsonl\.jsonl:1: not valid JSON, “query,positive,negative”; each line must be one JSON object/);
    assert.match((await checkTrainingData(path.join(dir, 'missing-negative.jsonl'))) ?? '', /:2: missing field 'negative' in “\{"query": "q", "positive": "p"\}”/);
  });

  it('uses the worker’s column names (datasource.ALIASES)', function () {
    if (!haveWorker) this.skip();
    const theirs = worker('import json\nfrom l3prune.datasource import ALIASES, REQUIRED\nprint(json.dumps({r: ALIASES[r] for r in REQUIRED}))', null);
    assert.deepEqual(theirs, ALIASES);
  });

  it('does not offer a data file a run refused again until it changes', async () => {
    const file = path.join(dir, 'csv-as-jsonl.jsonl');
    const later = new Date(Date.now() + 60_000).toISOString();
    const refused = refusedData([{ verb: 'train', status: 'failed', resumable: false, endedAt: later, data: file, message: `${file}:1: not valid JSON` }]);
    assert.equal(stillRefused(file, refused), true);
    // A refused model says nothing about the data.
    assert.equal(refusedData([{ verb: 'train', status: 'failed', resumable: false, endedAt: later, data: file, message: 'model folder lacks config.json' }]).size, 0);
    const earlier = refusedData([{ verb: 'train', status: 'failed', resumable: false, endedAt: new Date(0).toISOString(), data: file, message: file }]);
    assert.equal(stillRefused(file, earlier), false, 'changed since the refusal: offered again');
  });
});

describe('training form: a run refused for its input is not resumable', () => {
  const run = (status: string, kind?: string, resumable?: false) =>
    ({ verb: 'train', status, record: { error: kind ? { message: 'x', kind, ...(resumable === false ? { resumable } : {}) } : status === 'failed' ? { message: 'x' } : null } }) as unknown as RunSummary;
  it('offers Resume for a crash, an out-of-memory, a busy device or a cancel, never for refused input', () => {
    assert.equal(isResumable(run('failed', 'user', false)), false);
    assert.equal(isResumable(run('failed', 'user')), true, 'a busy device: later, or elsewhere, a resume can run');
    assert.equal(isResumable(run('failed', 'resource')), true);
    assert.equal(isResumable(run('failed', 'internal')), true);
    assert.equal(isResumable(run('failed')), true);
    assert.equal(isResumable(run('cancelled')), true);
    assert.equal(isResumable(run('succeeded')), false);
  });
});

describe('training form: a run folder the worker wrote after refusing the data', () => {
  it('reads as failed, not resumable, and its data file is not offered again', async function () {
    if (!haveWorker || !fs.existsSync(MODEL)) this.skip();
    this.timeout(180_000);
    const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'l3p-refused-'));
    const data = path.join(runs, 'triples.jsonl');
    fs.writeFileSync(data, 'query,positive,negative\nq,p,n\n');
    const runDir = path.join(runs, 'train-refused');
    const args = ['-m', 'l3prune', 'train', '--run-dir', runDir, '--model', MODEL, '--keep', '2', '--data', data, '--steps', '1', '--device', 'cpu'];
    // A lock folder of its own: another run training on this CPU must not make the device busy for this one.
    const env = { ...process.env, OMP_NUM_THREADS: '1', L3PRUNE_LOCK_DIR: path.join(runs, 'locks') };
    try {
      execFileSync(PYTHON, args, { encoding: 'utf8', stdio: 'pipe', env });
      assert.fail('the worker accepted a CSV named .jsonl');
    } catch (e) {
      assert.equal((e as { status?: number }).status, 2, String((e as { stderr?: string }).stderr));
    }
    const store = new RunStore(() => runs, () => false);
    await store.refresh();
    const run = store.get(runDir)!;
    assert.equal(run.status, 'failed');
    assert.deepEqual([run.record.error?.kind, run.record.error?.resumable], ['user', false]);
    assert.equal(isResumable(run), false, 'no Resume for refused input');
    assert.equal(stillRefused(data, refusedDataOf(store.list())), true, 'the refused file is not offered again');
    // The host's own check refuses it before any spawn, at the line the worker named.
    assert.match((await checkTrainingData(data)) ?? '', new RegExp(`${path.basename(data)}:1: not valid JSON`));
    assert.match(run.error ?? '', new RegExp(`${path.basename(data)}:1: not valid JSON`));
  });
});

describe('training form: messages from the page', () => {
  it('accepts only known fields and text, drops everything else', () => {
    assert.deepEqual(parseTrainFormMessage({ type: 'edit', field: 'steps', value: '40' }), { type: 'edit', field: 'steps', value: '40' });
    for (const bad of [
      { type: 'edit', field: 'trustRemoteCode', value: 'true' },
      { type: 'edit', field: 'model', value: '/elsewhere' },
      { type: 'edit', field: 'steps', value: 40 },
      { type: 'edit', field: 'steps', value: 'x'.repeat(5000) },
      { type: 'start', definition: {} },
      { type: 'launch' },
      null,
    ]) assert.equal(parseTrainFormMessage(bad), undefined, JSON.stringify(bad)?.slice(0, 80));
  });
  it('drops every generated hostile message (the same generator as the e2e panels)', () => {
    for (const message of hostileMessages(['ready', 'edit', 'browseData', 'previewData', 'reset', 'start', 'cancel'], 500, 14)) {
      assert.equal(parseTrainFormMessage(message), undefined, JSON.stringify(message)?.slice(0, 120));
    }
  });
});
