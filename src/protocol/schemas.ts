import Ajv2020, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';

/**
 * The protocol's JSON Schemas, compiled for the files the host reads from a workspace (tasks.json, an exported
 * encoder folder): the same definitions the worker validates against and the types in src/shared/protocol/
 * generated come from, so a bound changes in one place. Each problem is put as one phrase a user can act on
 * ('"keep" must be a whole number ≥ 1 (found 0)'), worded from the schema itself.
 */
export interface JsonSchema {
  [keyword: string]: unknown;
}

export interface SchemaCheck {
  /** Every problem with `value`, one phrase each; none when it is valid. */
  problems(value: unknown): Problem[];
  readonly schema: JsonSchema;
}

export interface Problem {
  /** The top-level field the problem is in; undefined for the value as a whole. */
  field?: string;
  /** What the problem is, e.g. "missing", or the JSON Schema keyword that failed. */
  keyword: string;
  /** '"keep" must be a whole number ≥ 1 (found 0)' */
  text: string;
}

export interface CheckOptions {
  /** Fill in the schema's `default`s where a field is missing (the value is changed in place). */
  useDefaults?: boolean;
  /** Nouns for fields or $defs whose type alone says too little, e.g. padTokenId → "a token id". */
  nouns?: Record<string, string>;
}

export function schemaCheck(schema: JsonSchema, options: CheckOptions = {}): SchemaCheck {
  let validate: ValidateFunction | undefined;
  return {
    schema,
    problems(value) {
      // Compiled on first use: activation should not pay for checks it may never need.
      validate ??= new Ajv2020({ allErrors: true, useDefaults: options.useDefaults ?? false }).compile(schema);
      if (validate(value)) return [];
      return phrase(validate.errors ?? [], schema, value, options.nouns ?? {});
    },
  };
}

function phrase(errors: readonly ErrorObject[], schema: JsonSchema, value: unknown, nouns: Record<string, string>): Problem[] {
  const record = isRecord(value) ? value : {};
  const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const problems: Problem[] = [];
  const seen = new Set<string>();
  const add = (problem: Problem) => {
    if (seen.has(problem.text)) return;
    seen.add(problem.text);
    problems.push(problem);
  };
  for (const error of errors) {
    const field = fieldOf(error);
    if (field === undefined) {
      // The value as a whole: a oneOf/anyOf of required sets or the wrong type altogether.
      if (error.keyword === 'anyOf' || error.keyword === 'oneOf' || error.keyword === 'required') continue;
      add({ keyword: error.keyword, text: `must be ${describe(schema, schema, nouns)}` });
      continue;
    }
    // allOf/oneOf/anyOf only say that their parts failed; the parts' own errors say how.
    // Items that do not match `contains` are allowed; only the missing match is a problem.
    if (/\/contains\//.test(error.schemaPath)) continue;
    if (error.keyword === 'allOf' || ((error.keyword === 'oneOf' || error.keyword === 'anyOf') && errors.some((e) => e !== error && fieldOf(e) === field))) continue;
    if (error.keyword === 'additionalProperties') {
      add({ field, keyword: error.keyword, text: `"${field}" is not a field here` });
    } else if (error.keyword === 'contains') {
      const wanted = pointer(schema, error.schemaPath) as JsonSchema | undefined;
      if (wanted && 'const' in wanted) add({ field, keyword: error.keyword, text: `"${field}" must name ${JSON.stringify(wanted.const)} (found ${show(record[field])})` });
      else add({ field, keyword: error.keyword, text: `"${field}" lacks an item it needs (found ${show(record[field])})` });
    } else {
      const keyword = error.keyword === 'required' ? 'missing' : error.keyword;
      let expected = properties[field] ? describe(properties[field], schema, nouns, field) : 'valid';
      // A format the type alone does not say (a timestamp, a name without slashes) is shown as it is checked.
      if (error.keyword === 'pattern' && !(nouns[field] || usesNoun(properties[field], nouns))) expected += ` matching /${String(error.params.pattern)}/`;
      add({ field, keyword, text: `"${field}" must be ${expected} (found ${show(record[field])})` });
    }
  }
  // A field's several failed keywords (oneOf branches, pattern and not) are one problem: keep its first.
  const byField = new Map<string | undefined, Problem>();
  for (const problem of problems) {
    const key = problem.keyword === 'contains' || problem.field === undefined ? `${problem.field}|${problem.text}` : problem.field;
    if (!byField.has(key)) byField.set(key, problem);
  }
  return [...byField.values()];
}

/** The schema node at a JSON pointer ("#/properties/inputs/allOf/1"). */
function pointer(schema: JsonSchema, path: string): unknown {
  return path
    .replace(/^#\/?/, '')
    .split('/')
    .filter(Boolean)
    .reduce<unknown>((node, part) => (node && typeof node === 'object' ? (node as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), schema);
}

/** Whether a field's schema refers to a $defs entry that has a noun (its wording already says the format). */
const usesNoun = (node: JsonSchema | undefined, nouns: Record<string, string>): boolean =>
  [...JSON.stringify(node ?? {}).matchAll(/"\$ref":"#\/\$defs\/([^"]+)"/g)].some((match) => !!nouns[match[1]]);

function fieldOf(error: ErrorObject): string | undefined {
  if (error.instancePath === '') {
    if (error.keyword === 'required') return String(error.params.missingProperty);
    if (error.keyword === 'additionalProperties') return String(error.params.additionalProperty);
    return undefined;
  }
  return decodeURIComponent(error.instancePath.split('/')[1]).replace(/~1/g, '/').replace(/~0/g, '~');
}

/** What a schema asks for, in words: "a whole number ≥ 1", "\"left\" or \"right\"", "a file name inside the folder or null". */
export function describe(node: JsonSchema, root: JsonSchema, nouns: Record<string, string> = {}, name?: string): string {
  if (name && nouns[name]) return `${nouns[name]}${bounds(node, root)}`;
  if (typeof node.$ref === 'string') {
    const key = node.$ref.replace(/^#\/\$defs\//, '');
    const target = ((root.$defs ?? {}) as Record<string, JsonSchema>)[key];
    if (!target) return 'valid';
    return describe({ ...target, ...withoutRef(node) }, root, nouns, nouns[key] ? key : undefined);
  }
  const options = (node.oneOf ?? node.anyOf) as JsonSchema[] | undefined;
  if (options) return alternatives(options.map((option) => describe(option, root, nouns)));
  if ('const' in node) return JSON.stringify(node.const);
  if (Array.isArray(node.enum)) return alternatives(node.enum.map((v) => JSON.stringify(v)));
  const types = Array.isArray(node.type) ? (node.type as string[]) : typeof node.type === 'string' ? [node.type] : [];
  if (!types.length) return 'valid';
  return alternatives(
    types.map((type) => {
      switch (type) {
        case 'integer': return `a whole number${bounds(node, root)}`;
        case 'number': return `a number${bounds(node, root)}`;
        case 'boolean': return 'true or false';
        case 'string': return typeof node.minLength === 'number' && node.minLength > 0 ? 'a non-empty string' : 'a string';
        case 'array': return 'a list';
        case 'object': return 'an object';
        default: return type;
      }
    }),
  );
}

function withoutRef(node: JsonSchema): JsonSchema {
  const { $ref: _ref, ...rest } = node;
  return rest;
}

function bounds(node: JsonSchema, root: JsonSchema): string {
  if (typeof node.$ref === 'string') {
    const target = ((root.$defs ?? {}) as Record<string, JsonSchema>)[node.$ref.replace(/^#\/\$defs\//, '')];
    if (target) return bounds({ ...target, ...withoutRef(node) }, root);
  }
  const parts: string[] = [];
  if (typeof node.minimum === 'number') parts.push(`≥ ${node.minimum}`);
  if (typeof node.exclusiveMinimum === 'number') parts.push(`> ${node.exclusiveMinimum}`);
  // A maximum of Number.MAX_VALUE only says "finite"; it is no bound a user needs to hear about.
  if (typeof node.maximum === 'number' && node.maximum < Number.MAX_VALUE) parts.push(`≤ ${node.maximum}`);
  if (typeof node.exclusiveMaximum === 'number') parts.push(`< ${node.exclusiveMaximum}`);
  return parts.length ? ` ${parts.join(' and ')}` : '';
}

function alternatives(words: string[]): string {
  const unique = [...new Set(words)];
  return unique.length <= 1 ? (unique[0] ?? 'valid') : `${unique.slice(0, -1).join(', ')} or ${unique[unique.length - 1]}`;
}

export function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const json = JSON.stringify(value);
  return json.length > 60 ? `${json.slice(0, 57)}…` : json;
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
