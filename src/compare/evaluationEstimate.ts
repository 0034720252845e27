import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { RunSummary } from '../runs/runStore';

/**
 * What Evaluate…'s examples prompt tells before a long run starts: how many examples each built-in task has in the
 * data folder, and roughly how long the evaluation will take, from this model's own last evaluation.
 */

/** A built-in task's examples as the worker scores them (evaltasks.py's loaders), and what one is. */
export interface TaskCount {
  task: string;
  examples: number;
  unit: string;
}

const lines = async (file: string): Promise<string[]> => (await readFile(file, 'utf8')).split(/\r?\n/).filter((l) => l.trim() !== '');

/** The test rows of classification.jsonl: its train rows only fit the classifier, they are not scored. */
async function testRows(file: string): Promise<number> {
  let n = 0;
  for (const line of await lines(file)) {
    try {
      if ((JSON.parse(line) as { split?: unknown }).split === 'test') n++;
    } catch {
      // A malformed line is the worker's to report, with its line number; the count only skips it.
    }
  }
  return n;
}

const COUNTERS: Record<string, { unit: string; count: (dir: string) => Promise<number> }> = {
  sts: { unit: 'pairs', count: async (dir) => (await lines(path.join(dir, 'sts.jsonl'))).length },
  retrieval: { unit: 'queries', count: async (dir) => (await lines(path.join(dir, 'eval', 'retrieval', 'queries.jsonl'))).length },
  classification: { unit: 'test texts', count: (dir) => testRows(path.join(dir, 'eval', 'classification.jsonl')) },
  clustering: { unit: 'texts', count: async (dir) => (await lines(path.join(dir, 'eval', 'clustering.jsonl'))).length },
  pair_classification: { unit: 'pairs', count: async (dir) => (await lines(path.join(dir, 'eval', 'pair_classification.jsonl'))).length },
};

/**
 * The folder the worker reads the built-in tasks from when none is given ($L3PRUNE_DEMO_DATA, else its checkout's
 * .demo/data), asked of the worker itself so the counts are of the files it will score; undefined if it cannot say.
 */
export function workerDataDir(python: string): Promise<string | undefined> {
  const code = 'from l3prune.datadir import default_eval_data_dir\nprint(default_eval_data_dir())';
  return new Promise((resolve) => {
    execFile(python, ['-c', code], { timeout: 30_000, encoding: 'utf8' }, (error, stdout) => resolve(error ? undefined : stdout.trim() || undefined));
  });
}

/** The examples of each task in `dataDir`; a task whose file is missing or unreadable is left out (the worker says why). */
export async function countTaskExamples(dataDir: string, tasks: readonly string[]): Promise<TaskCount[]> {
  const counts = await Promise.all(
    tasks.map(async (task) => {
      const counter = COUNTERS[task];
      if (!counter) return undefined;
      const examples = await counter.count(dataDir).catch(() => undefined);
      return examples === undefined ? undefined : { task, examples, unit: counter.unit };
    }),
  );
  return counts.filter((c): c is TaskCount => c !== undefined);
}

/** "sts 1,225 pairs · retrieval 100 queries …", with what a cap keeps. */
export function countsText(counts: readonly TaskCount[], cap: number | undefined): string {
  return counts.map((c) => `${c.task} ${(cap === undefined ? c.examples : Math.min(cap, c.examples)).toLocaleString('en-US')}${cap !== undefined && cap < c.examples ? ` of ${c.examples.toLocaleString('en-US')}` : ''} ${c.unit}`).join(' · ');
}

/** A previous evaluation's time per task and examples, the measured basis of an estimate. */
export interface MeasuredEvaluation {
  runId: string;
  layers: number;
  /** task -> seconds it took, and the examples it scored (when recorded). */
  tasks: Record<string, { seconds: number; examples?: number }>;
}

/** The newest succeeded evaluation of `model` (any variant of it, torch) with per-task times. */
export function lastEvaluationOf(runs: readonly RunSummary[], model: string, modelOf: (run: RunSummary) => string | undefined): MeasuredEvaluation | undefined {
  const candidates = runs
    .filter((r) => r.verb === 'evaluate' && r.status === 'succeeded' && r.evaluation?.result && !r.evaluation.result.onnx && modelOf(r) === model && r.evaluation.tasks.length)
    .sort((a, b) => (b.record.endedAt ?? '').localeCompare(a.record.endedAt ?? ''));
  const run = candidates[0];
  if (!run?.evaluation?.result) return undefined;
  const examples = run.evaluation.result.examples ?? {};
  const tasks: MeasuredEvaluation['tasks'] = {};
  for (const t of run.evaluation.tasks) if (typeof t.seconds === 'number') tasks[t.task] = { seconds: t.seconds, examples: examples[t.task] };
  return { runId: run.id, layers: run.evaluation.result.numLayers, tasks };
}

/** The task names the worker reports for the built-in keys (evaltasks.py): a measured time is found by either. */
export const BUILTIN_TASK_NAMES: Record<string, string> = {
  sts: 'LeeDocumentSTS',
  retrieval: 'WordNetWordToGlossRetrieval',
  classification: 'WordNetLexnameClassification',
  clustering: 'WordNetLexnameClustering',
  pair_classification: 'WordNetSensePairClassification',
};

/**
 * Seconds the chosen tasks should take: each task's measured time scaled by the examples it will score over those it
 * scored, and by the layers (a layer's cost is the same at every depth). A task not measured before takes the
 * measured tasks' mean time per example. Undefined without a measurement.
 */
export function estimateSeconds(
  counts: readonly TaskCount[],
  cap: number | undefined,
  layers: number,
  measured: MeasuredEvaluation | undefined,
): number | undefined {
  if (!measured || !counts.length || measured.layers <= 0) return undefined;
  const perExample: number[] = [];
  const known = new Map<string, number>();
  for (const c of counts) {
    const m = measured.tasks[BUILTIN_TASK_NAMES[c.task] ?? c.task] ?? measured.tasks[c.task];
    if (m && m.examples && m.examples > 0) {
      known.set(c.task, m.seconds / m.examples);
      perExample.push(m.seconds / m.examples);
    }
  }
  if (!perExample.length) return undefined;
  const mean = perExample.reduce((a, b) => a + b, 0) / perExample.length;
  const total = counts.reduce((sum, c) => sum + (known.get(c.task) ?? mean) * (cap === undefined ? c.examples : Math.min(cap, c.examples)), 0);
  return (total * layers) / measured.layers;
}
