import { inspectModel } from './model/inspect';
import { isModelReadError } from './model/errors';
import type { LayerStack } from './shared/model/stack';
import { PlanError, planKeep, planPrunePercent, type PrunePlan } from './shared/prune/plan';
import { formatBytes, formatParams, formatShare } from './shared/format/units';
import * as path from 'node:path';
import { isResumable, RunStore } from './runs/runStore';

const USAGE = `usage:
  l3prune inspect PATH [--json]
  l3prune plan PATH (--keep N | --prune-percent P) [--json]
  l3prune run RUN_DIR [--json]
PATH is a Hugging Face model folder (config.json + safetensors), an .onnx file or a .safetensors file.
--prune-percent P keeps floor(N · (100 − P) / 100) layers, at least 1 (the paper's rule: 32 layers at 10 % keep 28).
RUN_DIR is a worker run folder (run.json + events.jsonl); \`run\` shows it as the extension does.`;

class UsageError extends Error {}

interface Parsed {
  verb: string;
  target: string;
  json: boolean;
  keep?: number;
  prunePercent?: number;
}

function parseArgs(argv: string[]): Parsed {
  const [verb, ...rest] = argv;
  if (!verb || verb === '--help' || verb === '-h') throw new UsageError('');
  if (verb !== 'inspect' && verb !== 'plan' && verb !== 'run') throw new UsageError(`unknown command "${verb}"`);
  const positional: string[] = [];
  const parsed: Partial<Parsed> = { verb, json: false };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === '--json') parsed.json = true;
    else if (arg === '--keep' || arg === '--prune-percent') {
      const value = rest[++i];
      const number = Number(value);
      if (value === undefined || value.trim() === '' || !Number.isFinite(number)) throw new UsageError(`${arg} needs a number`);
      if (arg === '--keep') parsed.keep = number;
      else parsed.prunePercent = number;
    } else if (arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`);
    else positional.push(arg);
  }
  if (positional.length !== 1) throw new UsageError(verb === 'run' ? 'give exactly one RUN_DIR' : 'give exactly one model PATH');
  parsed.target = positional[0];
  if (verb === 'plan' && (parsed.keep === undefined) === (parsed.prunePercent === undefined)) {
    throw new UsageError('plan needs exactly one of --keep N or --prune-percent P');
  }
  return parsed as Parsed;
}

/** The JSON face of a stack: the fields scripts rely on, without per-tensor detail. */
export function stackSummary(stack: LayerStack) {
  return {
    path: stack.path,
    source: stack.source,
    family: stack.family,
    numLayers: stack.numLayers,
    hiddenSize: stack.hiddenSize ?? null,
    numHeads: stack.numHeads ?? null,
    numKeyValueHeads: stack.numKeyValueHeads ?? null,
    vocabSize: stack.vocabSize ?? null,
    tieWordEmbeddings: stack.tieWordEmbeddings ?? null,
    totalParams: stack.totalParams,
    totalBytes: stack.totalBytes,
    embeddingParams: stack.embeddingParams,
    headParams: stack.headParams,
    finalNormParams: stack.finalNormParams,
    otherParams: stack.otherParams,
    otherTensors: stack.other.tensors.map((t) => t.name),
    layers: stack.layers.map((l) => ({ index: l.index, params: l.params, bytes: l.bytes, tensors: l.tensors.length })),
    files: stack.files,
    io: stack.io ?? null,
    warnings: stack.warnings,
  };
}

function printStack(stack: LayerStack): string {
  const lines = [
    `${stack.name}: ${stack.family}, ${stack.numLayers} layers, hidden ${stack.hiddenSize ?? '?'}`,
    `total      ${formatParams(stack.totalParams).padStart(9)} params  ${formatBytes(stack.totalBytes).padStart(10)}`,
    `embedding  ${formatParams(stack.embeddingParams).padStart(9)}`,
    ...stack.layers.map((l) => `layer ${String(l.index).padEnd(4)} ${formatParams(l.params).padStart(9)} params  ${formatBytes(l.bytes).padStart(10)}`),
    `final norm ${formatParams(stack.finalNormParams).padStart(9)}`,
    `head       ${formatParams(stack.headParams).padStart(9)}${stack.tieWordEmbeddings ? ' (tied to the embedding)' : ''}`,
  ];
  if (stack.otherParams) lines.push(`other      ${formatParams(stack.otherParams).padStart(9)}`);
  for (const warning of stack.warnings) lines.push(`warning: ${warning}`);
  return lines.join('\n');
}

function printPlan(plan: PrunePlan): string {
  return [
    `keep ${plan.keep} of ${plan.numLayers} layers (prune ${plan.prunedLayers})`,
    `params ${formatParams(plan.params)} (−${formatShare(plan.paramsRemovedShare)}), ${formatBytes(plan.bytes)}`,
    `expected layer-stack speed-up ×${plan.expectedSpeedup.toFixed(2)}`,
  ].join('\n');
}

interface Output {
  write(text: string): unknown;
}

export async function main(argv: string[], out: Output = process.stdout, err: Output = process.stderr): Promise<number> {
  let args: Parsed;
  try {
    args = parseArgs(argv);
  } catch (e) {
    const message = (e as Error).message;
    err.write(`${message ? `l3prune: ${message}\n` : ''}${USAGE}\n`);
    return message ? 2 : 0;
  }
  if (args.verb === 'run') return showRun(args, out, err);
  try {
    const stack = await inspectModel(args.target);
    if (args.verb === 'inspect') {
      out.write(args.json ? `${JSON.stringify(stackSummary(stack))}\n` : `${printStack(stack)}\n`);
      return 0;
    }
    const plan = args.keep !== undefined ? planKeep(stack, args.keep) : planPrunePercent(stack, args.prunePercent!);
    out.write(args.json ? `${JSON.stringify(plan)}\n` : `${printPlan(plan)}\n`);
    return 0;
  } catch (e) {
    if (isModelReadError(e) || e instanceof PlanError) {
      err.write(`l3prune: ${e.message}\n`);
      return 1;
    }
    err.write(`l3prune: unexpected failure: ${(e as Error)?.stack ?? String(e)}\n`);
    return 70;
  }
}

/** A run folder as the Runs view sees it (a dead worker's "running" is "failed"), for scripts and tests. */
async function showRun(args: Parsed, out: Output, err: Output): Promise<number> {
  const runDir = path.resolve(args.target);
  const store = new RunStore(() => path.dirname(runDir), undefined, { include: (dir) => dir === runDir });
  await store.refresh();
  const run = store.get(runDir);
  if (!run) {
    err.write(`l3prune: ${runDir} is not a readable run folder (no valid run.json); pass a folder the worker created\n`);
    return 1;
  }
  const view = {
    id: run.id,
    verb: run.verb,
    status: run.status,
    resumable: isResumable(run),
    step: run.step ?? null,
    totalSteps: run.totalSteps ?? null,
    lastLoss: run.lastLoss ?? null,
    checkpoints: run.checkpoints,
    error: run.error ?? null,
  };
  out.write(args.json ? `${JSON.stringify(view)}\n` : `${run.id}: ${run.verb} ${run.status}${view.resumable ? ' (resumable)' : ''}${run.step !== undefined ? `, step ${run.step}/${run.totalSteps ?? '?'}` : ''}${run.error ? ` — ${run.error}` : ''}\n`);
  return 0;
}
