import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { checkDefinition, TASK_SPEC_FIELDS, TASK_TYPE } from '../../src/runs/trainDefinition';
import { TRAIN_DEFAULTS } from '../../src/shared/protocol/generated/defaults';
import { ROOT } from '../fixtures/demo';

type Schema = Record<string, unknown> & { properties?: Record<string, Schema>; required?: string[] };
const read = (file: string) => JSON.parse(readFileSync(path.join(ROOT, file), 'utf8'));
/** The keywords tasks.json checking and the worker's validation must agree on. */
const CONSTRAINTS = ['type', 'enum', 'const', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minItems', 'items', 'pattern'];
const constraintsOf = (schema: Schema) => Object.fromEntries(CONSTRAINTS.filter((k) => k in schema).map((k) => [k, schema[k]]));

describe('the l3prune task type and protocol/specs/train.schema.json', () => {
  const train = read('protocol/specs/train.schema.json') as Schema;
  const task = (read('package.json').contributes.taskDefinitions as Array<Schema & { type: string }>).find((d) => d.type === TASK_TYPE)!;
  const trainFields = Object.keys(train.properties!);

  it('package.json declares the task type', () => assert.ok(task?.properties));

  it('its top-level spec fields are the ones the host treats as such, typed and bounded as the schema says', () => {
    const topLevel = Object.keys(task.properties!).filter((key) => trainFields.includes(key));
    assert.deepEqual(topLevel.sort(), [...TASK_SPEC_FIELDS].sort());
    for (const field of TASK_SPEC_FIELDS) assert.deepEqual(constraintsOf(task.properties![field]), constraintsOf(train.properties![field]), field);
  });

  it('its recipe is every other field of the schema, with the schema’s own definition', () => {
    const recipe = task.properties!.recipe;
    const expected = Object.fromEntries(Object.entries(train.properties!).filter(([key]) => !(TASK_SPEC_FIELDS as readonly string[]).includes(key)));
    assert.deepEqual(recipe.properties, expected, 'run node scripts/generate-protocol.mjs after changing the train schema');
    assert.equal(recipe.additionalProperties, false);
  });

  it('every field the worker requires can be given at the task’s top level; only "verb" is required of every task (a resume needs no model)', () => {
    for (const field of train.required!) assert.ok((TASK_SPEC_FIELDS as readonly string[]).includes(field) && task.properties![field], field);
    assert.deepEqual(task.required, ['verb']);
  });

  it('the defaults are the schema’s, for every field but those the task must give', () => {
    const defaults = Object.fromEntries(Object.entries(train.properties!).filter(([, s]) => 'default' in s).map(([key, s]) => [key, s.default]));
    assert.deepEqual({ ...TRAIN_DEFAULTS }, defaults);
    for (const field of trainFields) assert.ok(field in TRAIN_DEFAULTS || train.required!.includes(field), `${field} has a default or is required`);
  });

  describe('checkDefinition checks a task against the schema', () => {
    const base = { type: TASK_TYPE, verb: 'train', model: 'models/m', keep: 12, data: 'data/t.jsonl' };

    it('accepts every recipe field at its default', () => {
      const { steps, devices, ...recipe } = TRAIN_DEFAULTS;
      assert.equal(checkDefinition({ ...base, steps, devices, recipe }), undefined);
    });

    it('names the recipe field, what it must be and what it got', () => {
      assert.match(checkDefinition({ ...base, recipe: { batchSize: 0 } })!, /recipe field "batchSize" must be a whole number ≥ 1 \(found 0\)/);
      assert.match(checkDefinition({ ...base, recipe: { learningRate: 0 } })!, /"learningRate" must be a number > 0/);
      assert.match(checkDefinition({ ...base, recipe: { pooling: 'max' } })!, /"pooling" must be "mean", "weighted_mean" or "last_token" \(found "max"\)/);
      assert.match(checkDefinition({ ...base, recipe: { loraDropout: 1 } })!, /"loraDropout" must be a number ≥ 0 and < 1/);
      assert.match(checkDefinition({ ...base, recipe: { learningrate: 1e-4 } })!, /"learningrate" is not a field/);
    });

    it('lists every problem at once', () => {
      const problem = checkDefinition({ ...base, keep: 0, recipe: { batchSize: 'big', seed: 1.5 } })!;
      for (const field of ['keep', 'batchSize', 'seed']) assert.match(problem, new RegExp(`"${field}"`));
    });

    it('keeps the task’s own fields out of the recipe', () => {
      assert.match(checkDefinition({ ...base, recipe: { keep: 3 } })!, /"keep" goes at the top of the task/);
    });
  });
});
