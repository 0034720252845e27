import * as path from 'node:path';
import { PAPER_RECIPE, type TrainSpec } from '../protocol/trainSpec';

/** Kept free of the vscode module so the task's validation is unit-tested like any other input check. */
export const TASK_TYPE = 'l3prune';

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
  recipe?: Partial<TrainSpec>;
  /** Continue this run folder from its last checkpoint instead of starting a new run. */
  resumeRunDir?: string;
}

/** Validates a definition from tasks.json or a command; returns one sentence on what is wrong. */
export function checkDefinition(definition: { [key: string]: unknown }): string | undefined {
  const d = definition as Partial<TrainTaskDefinition>;
  if (d.verb !== 'train') return 'an l3prune task needs "verb": "train"';
  if (d.resumeRunDir !== undefined && typeof d.resumeRunDir !== 'string') return '"resumeRunDir" must be a path';
  if (d.resumeRunDir) return undefined;
  if (typeof d.model !== 'string' || !d.model) return 'an l3prune train task needs "model", a model folder';
  if (typeof d.data !== 'string' || !d.data) return 'an l3prune train task needs "data", a JSONL file of triples';
  if (!Number.isInteger(d.keep) || (d.keep as number) < 1) return '"keep" must be the number of layers to keep (1 or more)';
  if (d.steps !== undefined && (!Number.isInteger(d.steps) || d.steps < 1)) return '"steps" must be a positive whole number';
  if (d.recipe !== undefined && (typeof d.recipe !== 'object' || d.recipe === null || Array.isArray(d.recipe))) return '"recipe" must be an object of recipe fields';
  return undefined;
}

export function specFromDefinition(d: TrainTaskDefinition, workspaceRoot?: string): TrainSpec {
  const resolve = (p: string) => (workspaceRoot ? path.resolve(workspaceRoot, p) : path.resolve(p));
  return {
    ...PAPER_RECIPE,
    ...(d.recipe ?? {}),
    ...(d.steps ? { steps: d.steps } : {}),
    model: resolve(d.model),
    keep: d.keep,
    data: resolve(d.data),
  };
}

export function taskName(d: TrainTaskDefinition): string {
  return d.resumeRunDir ? `resume ${path.basename(d.resumeRunDir)}` : `train ${path.basename(d.model)} keep ${d.keep}`;
}

