import * as path from 'node:path';
import trainSchema from '../../protocol/specs/train.schema.json';
import { schemaCheck, type JsonSchema } from '../protocol/schemas';
import { TRAIN_DEFAULTS } from '../shared/protocol/generated/defaults';
import type { TrainSpec, TrainSpecResolved } from '../shared/protocol/generated/specs/train';
import { checkDevices, checkRendezvous, parseDevices, type Rendezvous } from './trainDevices';

/** Kept free of the vscode module so the task's validation is unit-tested like any other input check. */
export const TASK_TYPE = 'l3prune';

/**
 * Train spec fields a task sets at its top level; every other field of protocol/specs/train.schema.json is
 * a `recipe` field. package.json's taskDefinitions lists these and gets its recipe properties from the
 * schema (scripts/generate-protocol.mjs); test/unit/taskDefinition.test.ts keeps the three in step.
 */
export const TASK_SPEC_FIELDS = ['model', 'keep', 'data', 'steps', 'devices'] as const;

/** The recipe: any train spec field besides the task's own, each defaulting to the paper's value. */
export type TrainRecipe = Omit<TrainSpec, (typeof TASK_SPEC_FIELDS)[number]>;

/** What a tasks.json entry of type "l3prune" holds (package.json's taskDefinitions mirrors it). */
export interface TrainTaskDefinition {
  [key: string]: unknown;
  type: typeof TASK_TYPE;
  verb: 'train';
  model: string;
  keep: number;
  data: string;
  steps?: number;
  /** Any recipe field to override (learningRate, batchSize, loraR, …). */
  recipe?: TrainRecipe;
  /** Continue this run folder from its last checkpoint instead of starting a new run. */
  resumeRunDir?: string;
  /** auto, cpu, cpu:K, cuda:N, cuda:N,M,… or all (src/runs/trainDevices.ts); with resumeRunDir, the devices to continue on. */
  devices?: string;
  /** A multi-node run: this window launches this node's share (torchrun --nnodes/--node-rank/--rdzv-endpoint). */
  nnodes?: number;
  nodeRank?: number;
  rdzvEndpoint?: string;
}

const TRAIN_CHECK = schemaCheck(trainSchema as JsonSchema);
const REQUIRED = new Set((trainSchema as JsonSchema).required as string[]);
const PROPERTIES = (trainSchema as JsonSchema).properties as Record<string, { description?: string }>;

/**
 * Validates a definition from tasks.json or a command against the train spec's schema, the worker's own
 * definition of a valid spec, so a bad value fails here with its field named instead of in a worker log.
 * Returns one sentence on what is wrong.
 */
export function checkDefinition(definition: { [key: string]: unknown }): string | undefined {
  const d = definition as Partial<TrainTaskDefinition>;
  if (d.verb !== 'train') return 'an l3prune task needs "verb": "train"';
  if (d.resumeRunDir !== undefined && typeof d.resumeRunDir !== 'string') return '"resumeRunDir" must be a path';
  if (d.devices !== undefined && (typeof d.devices !== 'string' || !parseDevices(d.devices))) return checkDevices(String(d.devices), undefined);
  const rendezvous = checkRendezvous(d);
  if (rendezvous) return rendezvous;
  // A resumed run's spec is the one its run.json already holds.
  if (d.resumeRunDir) return undefined;
  const recipe: unknown = d.recipe ?? {};
  if (typeof recipe !== 'object' || recipe === null || Array.isArray(recipe)) return '"recipe" must be an object of recipe fields';
  const misplaced = TASK_SPEC_FIELDS.filter((field) => field in recipe);
  if (misplaced.length) return `${misplaced.map((f) => `"${f}"`).join(', ')} go${misplaced.length === 1 ? 'es' : ''} at the top of the task, not in "recipe"`;
  const spec: Record<string, unknown> = { ...recipe };
  for (const field of TASK_SPEC_FIELDS) if (d[field] !== undefined) spec[field] = d[field];
  const problems = TRAIN_CHECK.problems(spec).map((problem) => {
    const field = problem.field;
    if (!field) return problem.text;
    // A missing or mistyped required field reads best as what the task needs.
    if (REQUIRED.has(field) && (problem.keyword === 'missing' || problem.keyword === 'type' || problem.keyword === 'minLength')) {
      const what = PROPERTIES[field]?.description;
      return `an l3prune train task needs "${field}"${what ? `, the ${what}` : ''}`;
    }
    return TASK_SPEC_FIELDS.includes(field as (typeof TASK_SPEC_FIELDS)[number]) ? problem.text : `recipe field ${problem.text}`;
  });
  return problems.length ? problems.join('; ') : undefined;
}

/**
 * Spec fields that are consent, not configuration: a tasks.json is the workspace's (a cloned repository's)
 * text, so a recipe cannot grant them; a dialog does (worker/remoteCode), and the flag carries its answer.
 * (allowDownload: a model named by a repo id the cache lacks is downloaded only with --allow-download.)
 */
export const CONSENT_FIELDS = ['trustRemoteCode', 'allowDownload'] as const;

/** The consent fields a definition tried to set, to say in the log that they were dropped. */
export function consentFieldsIn(d: Pick<TrainTaskDefinition, 'recipe'>): string[] {
  const recipe = d.recipe as Record<string, unknown> | undefined;
  return recipe && typeof recipe === 'object' ? CONSENT_FIELDS.filter((field) => recipe[field] !== undefined && recipe[field] !== false) : [];
}

export function specFromDefinition(d: TrainTaskDefinition, workspaceRoot?: string): TrainSpecResolved {
  const resolve = (p: string) => (workspaceRoot ? path.resolve(workspaceRoot, p) : path.resolve(p));
  return {
    ...TRAIN_DEFAULTS,
    ...(d.recipe ?? {}),
    ...(d.steps ? { steps: d.steps } : {}),
    ...(d.devices ? { devices: d.devices } : {}),
    model: resolve(d.model),
    keep: d.keep,
    data: resolve(d.data),
    trustRemoteCode: false,
    allowDownload: false,
  };
}

export function taskName(d: TrainTaskDefinition): string {
  return d.resumeRunDir ? `resume ${path.basename(d.resumeRunDir)}` : `train ${path.basename(d.model)} keep ${d.keep}`;
}

/** The task's rendezvous fields, when it is one node of several (nnodes > 1). */
export function rendezvousOf(d: TrainTaskDefinition): Rendezvous | undefined {
  return d.nnodes !== undefined && d.nnodes > 1 ? { nnodes: d.nnodes, nodeRank: d.nodeRank ?? 0, rdzvEndpoint: d.rdzvEndpoint ?? '' } : undefined;
}
