import { inspectModel } from './model/inspect';
import { isModelReadError } from './model/errors';
import { resolveModelTarget } from './model/hfCache';
import type { LayerStack } from './shared/model/stack';
import { PlanError, planKeep, planPrunePercent, type PrunePlan } from './shared/prune/plan';
import { formatBytes, formatDuration, formatGiB, formatParams, formatShare } from './shared/format/units';
import { GiB, gpuProfile, planOptions, planResources, type DeviceProfile, type PlanInput, type ResourcePlan } from './shared/prune/resources';
import * as path from 'node:path';
import { isResumable, RunStore } from './runs/runStore';

const USAGE = `usage:
  l3prune inspect PATH [--json]
  l3prune plan PATH (--keep N | --prune-percent P) [--json] [resource options]
  l3prune run RUN_DIR [--json]
PATH is a Hugging Face model folder (config.json + safetensors), an .onnx file or a .safetensors file, or the repo id
of a model in the Hugging Face cache (org/name, org/name@revision: a branch, tag or commit).
--prune-percent P keeps floor(N · (100 − P) / 100) layers, at least 1 (the paper's rule: 32 layers at 10 % keep 28).
plan also predicts each verb's peak memory and time (docs/planner.md) for the default recipe, changed by:
  --batch B  --max-length L  --precision bf16|fp32  --checkpointing on|off  --mini-batch M  --lora-r R
  --steps S  --world-size K  --attention sdpa|flash_attention_2|eager
  --gpu NAME [--gpu-memory GIB] [--tflops T]   a CUDA device (e.g. "H100", "RTX 4090"; T: measured bf16 TFLOP/s)
  --cpu [--memory GIB] [--tflops T]              a CPU (the default device; time needs --tflops)
RUN_DIR is a worker run folder (run.json + events.jsonl); \`run\` shows it as the extension does.`;

class UsageError extends Error {}

interface Parsed {
  verb: string;
  target: string;
  json: boolean;
  keep?: number;
  prunePercent?: number;
  resources: Omit<PlanInput, 'keep' | 'device'>;
  device: { gpu?: string; memoryGiB?: number; tflops?: number };
}

const NUMBER_FLAGS = { '--batch': 'batchSize', '--max-length': 'maxLength', '--mini-batch': 'miniBatchSize', '--lora-r': 'loraR', '--steps': 'steps', '--world-size': 'worldSize' } as const;
const CHOICE_FLAGS: Record<string, readonly string[]> = { '--precision': ['bf16', 'fp32'], '--checkpointing': ['on', 'off'], '--attention': ['sdpa', 'flash_attention_2', 'eager'] };

function parseArgs(argv: string[]): Parsed {
  const [verb, ...rest] = argv;
  if (!verb || verb === '--help' || verb === '-h') throw new UsageError('');
  if (verb !== 'inspect' && verb !== 'plan' && verb !== 'run') throw new UsageError(`unknown command "${verb}"`);
  const positional: string[] = [];
  const parsed: Partial<Parsed> = { verb, json: false, resources: {}, device: {} };
  const res = parsed.resources!;
  const dev = parsed.device!;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === '--json') parsed.json = true;
    else if (arg === '--keep' || arg === '--prune-percent') {
      const value = rest[++i];
      const number = Number(value);
      if (value === undefined || value.trim() === '' || !Number.isFinite(number)) throw new UsageError(`${arg} needs a number`);
      if (arg === '--keep') parsed.keep = number;
      else parsed.prunePercent = number;
    } else if (verb === 'plan' && (arg in NUMBER_FLAGS || arg === '--gpu-memory' || arg === '--memory' || arg === '--tflops')) {
      const value = rest[++i];
      const number = Number(value);
      if (value === undefined || !Number.isFinite(number) || number <= 0) throw new UsageError(`${arg} needs a positive number`);
      if (arg in NUMBER_FLAGS) {
        if (!Number.isInteger(number)) throw new UsageError(`${arg} needs a whole number`);
        res[NUMBER_FLAGS[arg as keyof typeof NUMBER_FLAGS]] = number;
      } else if (arg === '--tflops') dev.tflops = number;
      else dev.memoryGiB = number;
    } else if (verb === 'plan' && arg in CHOICE_FLAGS) {
      const value = rest[++i];
      if (!CHOICE_FLAGS[arg].includes(value)) throw new UsageError(`${arg} takes ${CHOICE_FLAGS[arg].join(' or ')}`);
      if (arg === '--precision') res.precision = value as 'bf16' | 'fp32';
      else if (arg === '--checkpointing') res.gradientCheckpointing = value === 'on';
      else res.attention = value as PlanInput['attention'];
    } else if (verb === 'plan' && arg === '--gpu') {
      const value = rest[++i];
      if (!value || value.startsWith('--')) throw new UsageError('--gpu needs a device name, e.g. "H100"');
      dev.gpu = value;
    } else if (verb === 'plan' && arg === '--cpu') {
      dev.gpu = undefined;
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

function planDevice(d: Parsed['device']): DeviceProfile {
  const memory = d.memoryGiB !== undefined ? d.memoryGiB * GiB : undefined;
  const tflops = d.tflops !== undefined ? d.tflops * 1e12 : undefined;
  if (d.gpu) return gpuProfile(d.gpu, memory, tflops);
  return { kind: 'cpu', name: 'cpu', totalMemoryBytes: memory, flopsPerSecond: tflops, flopsSource: tflops ? 'calibrated' : 'unknown' };
}

const gib = formatGiB;
const duration = (seconds: number | null) => (seconds === null ? 'time unknown (give --tflops or a known --gpu)' : formatDuration(seconds));

function printPlan(plan: PrunePlan, resources: ResourcePlan): string {
  const r = resources.train.recipe;
  const lines = [
    `keep ${plan.keep} of ${plan.numLayers} layers (prune ${plan.prunedLayers})`,
    `params ${formatParams(plan.params)} (−${formatShare(plan.paramsRemovedShare)}), ${formatBytes(plan.bytes)}`,
    `expected layer-stack speed-up ×${plan.expectedSpeedup.toFixed(2)}`,
    `LoRA r ${r.loraR}: ${resources.model.loraParams.toLocaleString('en')} trainable params (${resources.model.loraTargetsFound.join(', ') || 'no target found'})`,
    `device ${resources.device.name}${resources.device.totalMemoryBytes ? `, ${gib(resources.device.totalMemoryBytes)}` : ''}; throughput ${resources.device.flopsPerSecond ? `${(resources.device.flopsPerSecond / 1e12).toFixed(1)} TFLOP/s (${resources.device.flopsSource})` : 'unknown'}`,
  ];
  for (const v of [resources.analyze, resources.train, resources.evaluate]) {
    const verdict = v.fits === null ? '' : v.fits ? ' — fits' : ' — does NOT fit';
    const what = v.verb === 'train'
      ? `train (batch ${r.batchSize} × ${r.maxLength}, ${r.precision}, checkpointing ${r.gradientCheckpointing ? 'on' : 'off'}${r.miniBatchSize ? `, gradient cache ${r.miniBatchSize}` : ''})`
      : v.verb;
    const time = v.secondsPerStep === null ? duration(null) : `${duration(v.secondsPerStep)} a ${v.verb === 'train' ? 'step' : 'batch'}, ${duration(v.totalSeconds)} for ${v.steps}`;
    lines.push(`${what}: peak ${gib(v.peakBytes)}${verdict}; ${time}`);
    for (const t of v.terms) lines.push(`  ${t.name.padEnd(48)} ${gib(t.bytes).padStart(11)}   ${t.formula}`);
  }
  for (const a of resources.train.advice) lines.push(`to fit: ${a.text}`);
  if (resources.train.fits === false && !resources.train.advice.length) lines.push('to fit: no recipe change is enough; keep fewer layers or use a device with more memory');
  for (const w of resources.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
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
    // A repo id (org/name[@revision]) that is no path names a snapshot of the Hugging Face cache.
    const stack = await inspectModel(await resolveModelTarget(args.target));
    if (args.verb === 'inspect') {
      out.write(args.json ? `${JSON.stringify(stackSummary(stack))}\n` : `${printStack(stack)}\n`);
      return 0;
    }
    const plan = args.keep !== undefined ? planKeep(stack, args.keep) : planPrunePercent(stack, args.prunePercent!);
    const resources = planResources(stack, planOptions({ ...args.resources, keep: plan.keep, device: planDevice(args.device) }));
    out.write(args.json ? `${JSON.stringify({ ...plan, resources })}\n` : `${printPlan(plan, resources)}\n`);
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
