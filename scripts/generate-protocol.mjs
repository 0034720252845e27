// protocol/**/*.schema.json is the one definition of every contract between the worker and the extension;
// this script derives everything else from it:
//   src/shared/protocol/generated/<same path>.ts  TypeScript types (json-schema-to-typescript), one module per schema
//   src/shared/protocol/generated/defaults.ts     each verb spec's `default`s (TRAIN_DEFAULTS is the paper's recipe)
//   worker/l3prune/protocol/<same path>           byte-for-byte copies: the worker package's own copy
//   package.json's l3prune task definition        its spec fields' types and bounds, and every other field as a
//                                                 `recipe` property, so tasks.json completes and checks them
// `--check` writes nothing and exits 1 naming every file that differs from what it would write.
import { compile } from 'json-schema-to-typescript';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PROTOCOL = 'protocol';
const GENERATED = 'src/shared/protocol/generated';
const WORKER_COPY = 'worker/l3prune/protocol';
const SCHEMA_SUFFIX = '.schema.json';
/** Keywords that only describe; beside a $ref they add nothing to its type. */
const ANNOTATIONS = ['description', 'title', 'default', 'examples', '$comment', 'deprecated', 'readOnly', 'writeOnly'];

const check = process.argv.includes('--check');
const posix = (p) => p.split(path.sep).join('/');
const pascal = (s) => s.replace(/(^|[-_\s]+)(\w)/g, (_, _sep, c) => c.toUpperCase());
const constName = (s) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[-\s]+/g, '_').toUpperCase();

function schemaFiles(dir = PROTOCOL) {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true })
    .flatMap((entry) => {
      const rel = posix(path.join(dir, entry.name));
      if (entry.isDirectory()) return schemaFiles(rel);
      return entry.isFile() && entry.name.endsWith(SCHEMA_SUFFIX) ? [rel] : [];
    })
    .sort();
}

/** protocol/specs/train.schema.json → specs/train */
const moduleOf = (file) => posix(path.relative(PROTOCOL, file)).slice(0, -SCHEMA_SUFFIX.length);

/**
 * Type names: a verb's spec is <Verb>Spec, run.json is RunRecord, one events.jsonl line is WorkerEvent, any
 * other file is named after itself (encoder-manifest → EncoderManifest). A `$defs` entry is named after its
 * key, with "Event" added to an event kind (one whose `event` is a constant); a spec's after the spec
 * (TrainSpecResolved), since every spec has the same few.
 */
function rootName(module) {
  if (module.startsWith('specs/')) return `${pascal(module.slice('specs/'.length))}Spec`;
  return { run: 'RunRecord', events: 'WorkerEvent' }[module] ?? pascal(path.posix.basename(module));
}
const defName = (module, key, def) =>
  module.startsWith('specs/') ? `${rootName(module)}${pascal(key)}` : `${pascal(key)}${def?.properties?.event?.const !== undefined ? 'Event' : ''}`;

const schemas = new Map(schemaFiles().map((file) => [moduleOf(file), JSON.parse(readFileSync(path.join(ROOT, file), 'utf8'))]));

/** The TypeScript name a `$ref` found in `module` points at, and the module that declares it. */
function refTarget(module, ref) {
  const [file, pointer = ''] = ref.split('#');
  const target = file ? posix(path.posix.normalize(path.posix.join(path.posix.dirname(module), file))).slice(0, -SCHEMA_SUFFIX.length) : module;
  const schema = schemas.get(target);
  if (!schema) throw new Error(`${module}${SCHEMA_SUFFIX}: $ref ${ref} names no schema under ${PROTOCOL}/`);
  if (pointer === '' || pointer === '/') return { module: target, name: rootName(target) };
  const def = /^\/\$defs\/([^/]+)$/.exec(pointer);
  if (!def || !schema.$defs?.[def[1]]) throw new Error(`${module}${SCHEMA_SUFFIX}: $ref ${ref} is not a schema's root or one of its $defs`);
  return { module: target, name: defName(target, def[1], schema.$defs[def[1]]) };
}

/**
 * A copy json-schema-to-typescript turns into the types we want: every $ref becomes the name it points at
 * (imported from its module when it is another file's), so each type is declared once; if/then/else is
 * dropped, since TypeScript cannot say "spec is a TrainSpec when verb is train" on one object type (the
 * validators still check it); a root that is a oneOf of its $defs becomes their union.
 */
function prepare(module, schema) {
  const imports = new Map();
  const walk = (node) => {
    if (Array.isArray(node)) return node.map(walk);
    if (node === null || typeof node !== 'object') return node;
    const out = {};
    for (const [key, value] of Object.entries(node)) {
      if (key === 'if' || key === 'then' || key === 'else' || key === '$schema' || key === '$id') continue;
      out[key] = walk(value);
    }
    if (typeof node.$ref === 'string') {
      const target = refTarget(module, node.$ref);
      if (target.module !== module) imports.set(target.name, target.module);
      const extra = Object.keys(node).filter((key) => !['$ref', 'required', ...ANNOTATIONS].includes(key));
      if (extra.length) throw new Error(`${module}${SCHEMA_SUFFIX}: a $ref beside ${extra.join(', ')} has no TypeScript form here; move them into the referenced schema`);
      delete out.$ref;
      delete out.required;
      // {"$ref": "#", "required": [...]} is the same object with more fields present ($defs/resolved of a spec).
      out.tsType = Array.isArray(node.required) ? `${target.name} & Required<Pick<${target.name}, ${node.required.map((k) => `'${k}'`).join(' | ')}>>` : target.name;
    }
    if (Array.isArray(out.allOf)) {
      out.allOf = out.allOf.filter((part) => Object.keys(part).length > 0);
      if (!out.allOf.length) delete out.allOf;
    }
    return out;
  };
  const prepared = walk(schema);
  prepared.title = rootName(module);
  for (const [key, def] of Object.entries(prepared.$defs ?? {})) def.title = defName(module, key, schema.$defs[key]);
  if (Array.isArray(prepared.oneOf) && prepared.oneOf.every((member) => member.tsType)) {
    delete prepared.properties;
    delete prepared.required;
    delete prepared.type;
  }
  return { prepared, imports };
}

const header = (sources) => `/* generated by scripts/generate-protocol.mjs from ${sources}; do not edit */\n`;

const COMPILE_OPTIONS = {
  bannerComment: '',
  ignoreMinAndMaxItems: true,
  additionalProperties: true,
  strictIndexSignatures: false,
  style: { singleQuote: true, printWidth: 140 },
};
const DEFINITIONS = '__Definitions';

async function typesModule(module, schema) {
  const { prepared, imports } = prepare(module, schema);
  const { $defs, ...root } = prepared;
  // $defs are compiled on their own: json-schema-to-typescript declares them only beside an object root,
  // and events.schema.json's root is a union.
  let body = await compile(root, rootName(module), COMPILE_OPTIONS);
  if ($defs) {
    const holder = { title: DEFINITIONS, type: 'object', properties: {}, additionalProperties: false, $defs };
    body += `\n${await compile(holder, DEFINITIONS, { ...COMPILE_OPTIONS, unreachableDefinitions: true })}`;
    body = body.replace(new RegExp(`export interface ${DEFINITIONS} \\{\\}\\n`), '');
  }
  // Its note on where a definition came from names our holder; the schema's own description is what matters.
  body = body.replace(/(\/\*\*\n(?: \*.*\n)*?) \*\n \* This interface was referenced by `[^`]*`'s JSON-Schema\n \* via the `definition` "[^"]*"\.\n/g, '$1');
  body = body.replace(/\/\*\*\n \* This interface was referenced by `[^`]*`'s JSON-Schema\n \* via the `definition` "[^"]*"\.\n \*\/\n/g, '');
  const used = [...imports].filter(([name]) => new RegExp(`\\b${name}\\b`).test(body));
  const fromDir = path.posix.dirname(module);
  const importLines = used
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, target]) => {
      let rel = path.posix.relative(fromDir, target);
      if (!rel.startsWith('.')) rel = `./${rel}`;
      return `import type { ${name} } from '${rel}';\n`;
    })
    .join('');
  return `${header(`${PROTOCOL}/${module}${SCHEMA_SUFFIX}`)}${importLines}${importLines ? '\n' : ''}${body.trimStart()}`;
}

/** Verb specs: protocol/specs/<verb>.schema.json. */
const specs = () => [...schemas].filter(([module]) => module.startsWith('specs/')).map(([module, schema]) => ({ module, verb: module.slice('specs/'.length), schema }));

/** A default as TypeScript source, in the codebase's quote style. */
const literal = (value) => {
  if (typeof value === 'string') return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  if (Array.isArray(value)) return `[${value.map(literal).join(', ')}]`;
  if (value !== null && typeof value === 'object') return `{ ${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${literal(v)}`).join(', ')} }`;
  return JSON.stringify(value);
};

function defaultsModule() {
  const blocks = specs().map(({ module, verb, schema }) => {
    const entries = Object.entries(schema.properties ?? {}).filter(([, property]) => property.default !== undefined);
    const type = rootName(module);
    const keys = entries.map(([key]) => `'${key}'`).join(' | ') || 'never';
    const lines = entries.map(([key, property]) => `  ${/^[A-Za-z_$][\w$]*$/.test(key) ? key : `'${key}'`}: ${literal(property.default)},\n`).join('');
    const doc = verb === 'train' ? `/** train: the \`default\`s of ${PROTOCOL}/${module}${SCHEMA_SUFFIX}, the paper's recipe. */` : `/** ${verb}: the \`default\`s of ${PROTOCOL}/${module}${SCHEMA_SUFFIX}. */`;
    return { module, type, text: `${doc}\nexport const ${constName(verb)}_DEFAULTS: Readonly<Required<Pick<${type}, ${keys}>>> = {\n${lines}};\n` };
  });
  const imports = blocks.map(({ module, type }) => `import type { ${type} } from './${module}';\n`).join('');
  const sources = blocks.length ? `${PROTOCOL}/specs/*${SCHEMA_SUFFIX}` : `${PROTOCOL}/specs (none yet)`;
  return `${header(sources)}${imports}${imports ? '\n' : ''}${blocks.map((b) => b.text).join('\n')}`;
}

/**
 * package.json with the l3prune task's spec fields taken from the train spec: those the task lists at its
 * top level (model, keep, data, steps) get the schema's type and bounds under the task's own description;
 * every other field is a `recipe` property, defined as the schema defines it.
 */
function packageJson() {
  const file = path.join(ROOT, 'package.json');
  const text = readFileSync(file, 'utf8');
  const train = schemas.get('specs/train');
  if (!train) return text;
  const manifest = JSON.parse(text);
  const task = manifest.contributes?.taskDefinitions?.find((d) => d.type === 'l3prune');
  if (!task?.properties?.recipe) throw new Error('package.json: contributes.taskDefinitions has no l3prune task with a "recipe" property');
  const topLevel = Object.keys(task.properties).filter((key) => key in train.properties);
  for (const key of topLevel) {
    const { description: _description, default: _default, ...constraints } = train.properties[key];
    task.properties[key] = { ...constraints, description: task.properties[key].description ?? train.properties[key].description };
  }
  const fields = Object.fromEntries(Object.entries(train.properties).filter(([key]) => !topLevel.includes(key)));
  task.properties.recipe = {
    type: 'object',
    description: `Recipe fields to override (${PROTOCOL}/specs/train${SCHEMA_SUFFIX}); every one left out keeps the paper's default.`,
    properties: fields,
    additionalProperties: false,
  };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

async function outputs() {
  const files = new Map();
  for (const [module, schema] of schemas) {
    files.set(`${GENERATED}/${module}.ts`, await typesModule(module, schema));
    files.set(`${WORKER_COPY}/${module}${SCHEMA_SUFFIX}`, readFileSync(path.join(ROOT, PROTOCOL, `${module}${SCHEMA_SUFFIX}`), 'utf8'));
  }
  // Data both sides read: the worker its copy (MFU), the host and pages a module (src/shared imports only src/shared).
  const peaks = readFileSync(path.join(ROOT, PROTOCOL, 'gpu-peaks.json'), 'utf8');
  files.set(`${WORKER_COPY}/gpu-peaks.json`, peaks);
  files.set(
    `${GENERATED}/gpu-peaks.ts`,
    `/* generated by scripts/generate-protocol.mjs from protocol/gpu-peaks.json; do not edit */\n` +
      `export const GPU_PEAKS: { description: string; efficiency: number; peaks: Array<{ match: string; name: string; bf16Flops: number }> } = ${JSON.stringify(JSON.parse(peaks), null, 2)};\n`,
  );
  files.set(`${GENERATED}/defaults.ts`, defaultsModule());
  files.set('package.json', packageJson());
  return files;
}

/** Files we wrote before for schemas that are gone. */
function leftovers(files) {
  const found = [];
  const walk = (dir, keep) => {
    if (!existsSync(path.join(ROOT, dir))) return;
    for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = posix(path.join(dir, entry.name));
      if (entry.isDirectory()) walk(rel, keep);
      else if (keep(rel) && !files.has(rel)) found.push(rel);
    }
  };
  walk(GENERATED, (rel) => rel.endsWith('.ts'));
  // The worker's folder may hold its own files (a loader, __init__.py); only schema copies are ours.
  walk(WORKER_COPY, (rel) => rel.endsWith(SCHEMA_SUFFIX));
  return found;
}

const files = await outputs();
const stale = [...files].filter(([rel, text]) => !existsSync(path.join(ROOT, rel)) || readFileSync(path.join(ROOT, rel), 'utf8') !== text).map(([rel]) => rel);
const extra = leftovers(files);
if (check) {
  for (const rel of stale) console.error(`generate-protocol: ${rel} is stale`);
  for (const rel of extra) console.error(`generate-protocol: ${rel} has no schema in ${PROTOCOL}/ any more`);
  if (stale.length || extra.length) {
    console.error('generate-protocol: run `node scripts/generate-protocol.mjs` and commit the result');
    process.exit(1);
  }
  console.log(`generate-protocol: ${files.size} files match ${PROTOCOL}/`);
} else {
  for (const rel of stale) {
    mkdirSync(path.dirname(path.join(ROOT, rel)), { recursive: true });
    writeFileSync(path.join(ROOT, rel), files.get(rel));
    console.log(`generate-protocol: wrote ${rel}`);
  }
  for (const rel of extra) {
    rmSync(path.join(ROOT, rel));
    console.log(`generate-protocol: removed ${rel}`);
  }
}
