/**
 * The resource planner: for a model's layer stack, a cut and a recipe, the peak accelerator memory of `analyze`,
 * `train` and `evaluate` split into named terms, and the time per step and per run from the recipe's FLOPs and
 * the device's throughput. One source for the CLI (`l3prune plan … --json`), the layer-stack panel and *Prune and
 * Finetune…*'s fit verdict; docs/planner.md gives every formula and the figures for Llama-3-8B.
 *
 * Exact where headers make it exact (weights, the LoRA parameter count from the target projections' shapes),
 * counted from what autograd keeps elsewhere: the activation coefficients are the tensors one decoder layer
 * saves for its backward under LoRA, as test/fixtures/measure_train_memory.py counts them through
 * `saved_tensors_hooks` (test/unit/resources.test.ts holds the planner to that count on two model shapes). The
 * plan predicts allocated tensor memory (what `torch.cuda.max_memory_allocated` reports); the CUDA context and
 * the allocator's fragmentation come on top, which is why a plan "fits" only under FIT_SHARE of the device.
 */
import type { LayerStack, TensorSummary } from '../model/stack';
import type { DevicesReport } from '../protocol/generated/devices-report';
import type { TrainSpec } from '../protocol/generated/specs/train';
import { GPU_PEAKS as gpuPeaks } from '../protocol/generated/gpu-peaks';
import { TRAIN_DEFAULTS, EVALUATE_DEFAULTS, ANALYZE_DEFAULTS } from '../protocol/generated/defaults';

export type Precision = 'bf16' | 'fp32';
export type AttentionImplementation = 'sdpa' | 'flash_attention_2' | 'eager';

export interface TrainRecipe {
  /** Triples per device and step; each triple is three texts (query, positive, hard negative). */
  batchSize: number;
  maxLength: number;
  precision: Precision;
  gradientCheckpointing: boolean;
  /** Gradient cache: texts per chunk (null: the whole batch at once). */
  miniBatchSize: number | null;
  loraR: number;
  loraDropout: number;
  targetModules: readonly string[];
  steps: number;
  /** Processes (devices) of a torchrun launch; the batch is per device, the loss sees all of them. */
  worldSize: number;
  attention: AttentionImplementation;
}

export interface AnalyzeRecipe {
  /** Triples per batch (the paper's 64) and the texts encoded per pass (null: one text group at once). */
  batchSize: number;
  miniBatchSize: number | null;
  samples: number;
  maxLength: number;
  precision: Precision;
}

export interface EvaluateRecipe {
  batchSize: number;
  maxLength: number;
  precision: Precision;
  /** Texts the built-in tasks embed in all (their embeddings are kept until scored). */
  texts: number;
}

export interface DeviceProfile {
  kind: 'cuda' | 'cpu';
  name: string;
  /** Memory the plan must fit in (a GPU's total; on a CPU, RAM), when known. */
  totalMemoryBytes?: number;
  /** Dense matmul throughput at the recipe's precision, and where the figure comes from. */
  flopsPerSecond?: number;
  flopsSource: 'calibrated' | 'peak×efficiency' | 'unknown';
}

export interface MemoryTerm {
  name: string;
  bytes: number;
  /** The formula with this plan's numbers in it, so a reader can redo the arithmetic. */
  formula: string;
}

export interface VerbPlan {
  verb: 'analyze' | 'train' | 'evaluate';
  terms: MemoryTerm[];
  peakBytes: number;
  /** FLOPs of one step (train), one batch (analyze, evaluate), and how many of them the run takes. */
  flopsPerStep: number;
  steps: number;
  secondsPerStep: number | null;
  totalSeconds: number | null;
  /** true / false against the device's memory; null when the device's memory is unknown. */
  fits: boolean | null;
}

export interface ModelShape {
  numLayers: number;
  keep: number;
  hiddenSize: number;
  kvSize: number;
  intermediateSize: number;
  /** query projection width (heads × head dim): the attention's FLOPs. */
  querySize: number;
  numHeads: number;
  /** Parameters AutoModel loads: embedding, the kept layers, final norm, others (no LM head unless tied). */
  loadedParams: number;
  fullLoadedParams: number;
  keptLayerParams: number;
  loraParams: number;
  loraTargetsFound: string[];
  /** LoRA targets per layer whose input is the hidden state, and whose input is the MLP's inner state. */
  loraHiddenInputs: number;
  loraInnerInputs: number;
}

export interface ResourcePlan {
  model: ModelShape;
  device: DeviceProfile;
  train: VerbPlan & { recipe: TrainRecipe; tokensPerStep: number; usefulFlopsPerStep: number; advice: Advice[] };
  analyze: VerbPlan & { recipe: AnalyzeRecipe };
  evaluate: VerbPlan & { recipe: EvaluateRecipe };
  warnings: string[];
}

/** Allocated memory a plan may use of a device: the rest is CUDA context, workspace and fragmentation. */
export const FIT_SHARE = 0.9;
/** Share of a GPU's peak dense rate a LoRA step reaches, when no calibration is at hand (protocol/gpu-peaks.json). */
export const ASSUMED_EFFICIENCY = gpuPeaks.efficiency;

/** Dense bf16 tensor-core peaks, the worker's MFU table too (protocol/gpu-peaks.json). */
export const GPU_PEAK_BF16: ReadonlyArray<{ match: RegExp; name: string; flops: number }> = gpuPeaks.peaks.map((p) => ({
  match: new RegExp(p.match, 'i'),
  name: p.name,
  flops: p.bf16Flops,
}));

/** A GPU by name (as torch reports it, or as a user types it), with its memory when given. */
export function gpuProfile(name: string, totalMemoryBytes?: number, calibratedFlops?: number): DeviceProfile {
  if (calibratedFlops) return { kind: 'cuda', name, totalMemoryBytes, flopsPerSecond: calibratedFlops, flopsSource: 'calibrated' };
  const known = GPU_PEAK_BF16.find((g) => g.match.test(name));
  return known
    ? { kind: 'cuda', name, totalMemoryBytes, flopsPerSecond: known.flops * ASSUMED_EFFICIENCY, flopsSource: 'peak×efficiency' }
    : { kind: 'cuda', name, totalMemoryBytes, flopsSource: 'unknown' };
}

export const GiB = 2 ** 30;

const LINEAR = /\.([A-Za-z0-9_]+)\.weight$/;

function linears(tensors: TensorSummary[]): Map<string, TensorSummary> {
  const out = new Map<string, TensorSummary>();
  for (const t of tensors) {
    const m = LINEAR.exec(t.name);
    if (m && t.shape.length === 2) out.set(m[1], t);
  }
  return out;
}

/** The shapes the formulas need, read from the headers of the kept layers. */
export function modelShape(stack: LayerStack, keep: number, loraR: number, targetModules: readonly string[]): { shape: ModelShape; warnings: string[] } {
  const warnings: string[] = [];
  const n = stack.layers.length;
  if (!Number.isInteger(keep) || keep < 1 || keep > n) throw new RangeError(`keep must be 1..${n}; got ${keep}`);
  const embed = stack.embedding.tensors.find((t) => t.shape.length === 2);
  const h = stack.hiddenSize ?? embed?.shape[1] ?? 0;
  if (!h) throw new RangeError(`${stack.name}: no hidden size in config.json or the embedding's shape; the planner needs it`);
  const first = linears(stack.layers[0]?.tensors ?? []);
  const heads = stack.numHeads ?? 1;
  const q = first.get('q_proj')?.shape[0] ?? h;
  const kv = first.get('k_proj')?.shape[0] ?? (stack.numKeyValueHeads && stack.numHeads ? (h * stack.numKeyValueHeads) / stack.numHeads : h);
  const fused = first.get('gate_up_proj');
  const f = first.get('down_proj')?.shape[1] ?? (fused ? fused.shape[0] / 2 : undefined) ?? first.get('up_proj')?.shape[0];
  if (f === undefined) warnings.push(`${stack.name}: no down_proj/up_proj in layer 0; the MLP's width is taken as 4 × hidden`);
  let lora = 0;
  let hiddenInputs = 0;
  let innerInputs = 0;
  const found = new Set<string>();
  for (const layer of stack.layers.slice(0, keep)) {
    for (const [leaf, t] of linears(layer.tensors)) {
      if (!targetModules.includes(leaf)) continue;
      const [out, inp] = t.shape;
      lora += loraR * (inp + out);
      found.add(leaf);
      if (layer.index === stack.layers[0].index) {
        if (inp === h) hiddenInputs++;
        else innerInputs++;
      }
    }
  }
  if (found.size === 0) warnings.push(`${stack.name}: none of the LoRA targets (${targetModules.join(', ')}) is a linear layer in its headers; the LoRA terms are 0`);
  const keptLayerParams = stack.layers.slice(0, keep).reduce((s, l) => s + l.params, 0);
  const allLayerParams = stack.layers.reduce((s, l) => s + l.params, 0);
  const nonLayer = stack.embeddingParams + stack.finalNormParams + stack.otherParams;
  return {
    shape: {
      numLayers: n,
      keep,
      hiddenSize: h,
      kvSize: kv,
      intermediateSize: f ?? 4 * h,
      querySize: q,
      numHeads: heads,
      loadedParams: nonLayer + keptLayerParams,
      fullLoadedParams: nonLayer + allLayerParams,
      keptLayerParams,
      loraParams: lora,
      loraTargetsFound: [...found],
      loraHiddenInputs: hiddenInputs,
      loraInnerInputs: innerInputs,
    },
    warnings,
  };
}

/**
 * Bytes one decoder layer keeps per token for its backward, training with LoRA on frozen weights (SDPA or
 * FlashAttention: no L × L score matrix is kept). In elements of the compute precision: the layer input and
 * the normed inputs of the projections, q, k, v and the attention output, the MLP's gate, up, activation and
 * product, and each target's r-wide LoRA A output; in bf16 autocast also peft's cast copy of each LoRA input
 * (peft casts to the adapter's fp32, autocast back to bf16, and the copy is what the matmul keeps), the two
 * RMSNorms' fp32 inputs, and one MLP state fewer (measured: 3 of the MLP's inner states, the down projection's
 * copy being the fourth). Dropout (p > 0) keeps a mask per LoRA input: bool on CUDA, a float one on CPU, plus
 * in fp32 the dropped copy itself (measured at 6 bytes an element on CPU: mask and copy share some storages).
 * With eager attention the softmax output (heads × L per token, compute precision) is kept as well.
 */
export function layerActivationBytesPerToken(m: ModelShape, recipe: Pick<TrainRecipe, 'precision' | 'loraR' | 'loraDropout' | 'maxLength' | 'attention'>, device: 'cuda' | 'cpu'): number {
  const { hiddenSize: h, kvSize: kv, intermediateSize: f, numHeads: heads } = m;
  const targets = m.loraHiddenInputs + m.loraInnerInputs;
  const r = targets ? recipe.loraR : 0;
  const L = recipe.maxLength;
  const loraInputs = m.loraHiddenInputs * h + m.loraInnerInputs * f;
  // The 4-D masks SDPA receives (causal + padding, per sequence: L × L, i.e. L per token), and its log-sum-exp.
  const maskAndLse = (recipe.precision === 'bf16' ? 2 : 4) * 2 * L + 4 * heads;
  let bytes: number;
  if (recipe.precision === 'bf16') {
    bytes = 2 * (2 * h + 2 * kv + 3 * f + targets * r + loraInputs) + 4 * 2 * h;
  } else {
    bytes = 4 * (6 * h + 2 * kv + 4 * f + targets * r);
  }
  bytes += maskAndLse;
  if (recipe.loraDropout > 0) {
    const maskBytes = device === 'cuda' ? 1 : 4;
    bytes += loraInputs * (recipe.precision === 'fp32' ? (device === 'cuda' ? 5 : 6) : maskBytes);
  }
  if (recipe.attention === 'eager') bytes += (recipe.precision === 'bf16' ? 2 : 4) * heads * L;
  return bytes;
}

/** Per token, outside the layers: the final norm's fp32 input and the pooling weights. */
function headActivationBytesPerToken(m: ModelShape): number {
  return 4 * m.hiddenSize + 16;
}

/** Working set of one layer's inference forward per token (no graph): hidden in and out, normed, q, k, v, attention out, the MLP's four inner states. */
function inferenceBytesPerToken(m: ModelShape, precision: Precision): number {
  return (precision === 'bf16' ? 2 : 4) * (8 * m.hiddenSize + 2 * m.kvSize + 4 * m.intermediateSize);
}

/** Forward FLOPs per token of the kept layers at context L: 2 per weight, and causal attention's QKᵀ and AV over L/2 positions on average. */
function forwardFlopsPerToken(m: ModelShape, L: number, loraParamsPerLayer: number): number {
  return 2 * m.keptLayerParams + m.keep * (2 * L * m.querySize + 2 * loraParamsPerLayer);
}

const term = (name: string, bytes: number, formula: string): MemoryTerm => ({ name, bytes: Math.round(bytes), formula });
const sum = (terms: MemoryTerm[]) => terms.reduce((s, t) => s + t.bytes, 0);

function timing(flops: number, steps: number, device: DeviceProfile) {
  const secondsPerStep = device.flopsPerSecond ? flops / device.flopsPerSecond : null;
  return { flopsPerStep: flops, steps, secondsPerStep, totalSeconds: secondsPerStep === null ? null : secondsPerStep * steps };
}

function fits(peak: number, device: DeviceProfile): boolean | null {
  return device.totalMemoryBytes ? peak <= FIT_SHARE * device.totalMemoryBytes : null;
}

export function planTrain(m: ModelShape, recipe: TrainRecipe, device: DeviceProfile) {
  const a = recipe.precision === 'bf16' ? 2 : 4;
  const h = m.hiddenSize;
  const texts = 3 * recipe.batchSize;
  const chunkTexts = recipe.miniBatchSize && recipe.miniBatchSize < texts ? recipe.miniBatchSize : texts;
  const cache = chunkTexts < texts;
  const L = recipe.maxLength;
  const chunkTokens = chunkTexts * L;
  const perLayer = layerActivationBytesPerToken(m, recipe, device.kind);
  const head = headActivationBytesPerToken(m);
  const W = recipe.worldSize;
  const terms: MemoryTerm[] = [
    term('weights', m.loadedParams * a, `${m.loadedParams.toLocaleString('en')} params (embedding, ${m.keep} layers, final norm) × ${a} B`),
    term('LoRA parameters, gradients and AdamW states', m.loraParams * 16, `${m.loraParams.toLocaleString('en')} LoRA params × 4 B × (param + grad + 2 AdamW moments)`),
  ];
  if (recipe.gradientCheckpointing) {
    terms.push(term('activations kept (checkpointed layer inputs)', chunkTokens * (m.keep * h * a + head), `${chunkTexts} texts × ${L} tokens × (${m.keep} layers × ${h} × ${a} B + ${head} B)`));
    terms.push(term('one layer recomputed in the backward', chunkTokens * perLayer, `${chunkTexts} × ${L} tokens × ${perLayer} B (one layer's saved tensors)`));
  } else {
    terms.push(term('activations kept for the backward', chunkTokens * (m.keep * perLayer + head), `${chunkTexts} texts × ${L} tokens × (${m.keep} layers × ${perLayer} B + ${head} B)`));
    terms.push(term('backward working set', chunkTokens * (2 * h + 2 * m.intermediateSize) * a, `${chunkTexts} × ${L} tokens × (2 × ${h} + 2 × ${m.intermediateSize}) × ${a} B (one layer's activation gradients)`));
  }
  terms.push(term('pooled embeddings and the similarity matrix', 4 * (texts * W * h + 3 * recipe.batchSize * 2 * recipe.batchSize * W),
    `4 B × (${texts} × ${W} texts × ${h} + 3 × ${recipe.batchSize} × ${2 * recipe.batchSize * W} logits)`));
  if (cache) terms.push(term('gradient cache: embeddings and their gradients', 2 * 4 * texts * h, `2 × ${texts} texts × ${h} × 4 B`));
  if (W > 1) terms.push(term('cross-device gather', 4 * (W - 1) * texts * h * 2, `(${W} − 1) devices × ${texts} texts × ${h} × 4 B, and their gradients`));
  const tokensPerStep = texts * L;
  const loraPerLayer = m.keep ? m.loraParams / m.keep : 0;
  const fwd = forwardFlopsPerToken(m, L, loraPerLayer) * tokensPerStep;
  // Frozen weights: the backward computes input gradients only (as many FLOPs as the forward) and the LoRA
  // weights' gradients; attention's backward costs twice its forward.
  const attention = m.keep * 2 * L * m.querySize * tokensPerStep;
  const useful = 2 * fwd + attention + 2 * m.loraParams * tokensPerStep;
  const extra = (recipe.gradientCheckpointing ? fwd : 0) + (cache ? fwd : 0);
  const peakBytes = sum(terms);
  const verdict = fits(peakBytes, device);
  return {
    verb: 'train' as const,
    recipe,
    terms,
    peakBytes,
    ...timing((useful + extra) * W, recipe.steps, { ...device, flopsPerSecond: device.flopsPerSecond && device.flopsPerSecond * W }),
    fits: verdict,
    tokensPerStep: tokensPerStep * W,
    usefulFlopsPerStep: useful * W,
    advice: verdict === false ? adviseTrain(m, recipe, device) : [],
  };
}

/** The changes that make a train plan fit, cheapest in time first; each is checked by planning it again. */
export interface Advice {
  text: string;
  /** The recipe fields to change (in the train spec's terms). */
  change: Pick<Partial<TrainRecipe>, 'gradientCheckpointing' | 'miniBatchSize' | 'maxLength'>;
  peakBytes: number;
}

function adviseTrain(m: ModelShape, recipe: TrainRecipe, device: DeviceProfile): Advice[] {
  const tries: Array<[string, TrainRecipe]> = [];
  if (!recipe.gradientCheckpointing) tries.push(['turn gradient checkpointing on', { ...recipe, gradientCheckpointing: true }]);
  for (const mb of [32, 16, 8, 4, 2, 1]) {
    if (mb < 3 * recipe.batchSize && (!recipe.miniBatchSize || mb < recipe.miniBatchSize)) {
      tries.push([`gradient cache: mini-batch ${mb}`, { ...recipe, miniBatchSize: mb }]);
      if (!recipe.gradientCheckpointing) tries.push([`gradient checkpointing and a gradient cache of ${mb}`, { ...recipe, gradientCheckpointing: true, miniBatchSize: mb }]);
    }
  }
  for (const len of [256, 128, 64]) if (len < recipe.maxLength) tries.push([`max length ${len}`, { ...recipe, maxLength: len, gradientCheckpointing: true }]);
  const out: Advice[] = [];
  for (const [what, r] of tries) {
    const p = planTrain(m, r, { ...device });
    if (p.fits) {
      const change: Advice['change'] = {};
      if (r.gradientCheckpointing !== recipe.gradientCheckpointing) change.gradientCheckpointing = r.gradientCheckpointing;
      if (r.miniBatchSize !== recipe.miniBatchSize) change.miniBatchSize = r.miniBatchSize;
      if (r.maxLength !== recipe.maxLength) change.maxLength = r.maxLength;
      out.push({ text: `${what} (peak ${(p.peakBytes / GiB).toFixed(1)} GiB)`, change, peakBytes: p.peakBytes });
      if (out.length === 3) break;
    }
  }
  return out;
}

export function planAnalyze(m: ModelShape, recipe: AnalyzeRecipe, device: DeviceProfile) {
  const a = recipe.precision === 'bf16' ? 2 : 4;
  const texts = recipe.miniBatchSize ?? recipe.batchSize;
  const L = recipe.maxLength;
  const n = m.numLayers;
  const perToken = inferenceBytesPerToken(m, recipe.precision);
  const terms = [
    term('weights (all layers: every depth is scored)', m.fullLoadedParams * a, `${m.fullLoadedParams.toLocaleString('en')} params × ${a} B`),
    term('one pass\'s working set', texts * L * perToken, `${texts} texts × ${L} tokens × ${perToken} B`),
    term('pooled states of every depth', 4 * (n + 1) * 3 * recipe.batchSize * m.hiddenSize, `4 B × ${n + 1} depths × ${3 * recipe.batchSize} texts × ${m.hiddenSize}`),
  ];
  const full = { ...m, keep: n, keptLayerParams: m.fullLoadedParams - (m.loadedParams - m.keptLayerParams) };
  const batches = Math.ceil(recipe.samples / recipe.batchSize);
  const flops = forwardFlopsPerToken(full, L, 0) * 3 * recipe.batchSize * L;
  const peakBytes = sum(terms);
  return { verb: 'analyze' as const, recipe, terms, peakBytes, ...timing(flops, batches, device), fits: fits(peakBytes, device) };
}

export function planEvaluate(m: ModelShape, recipe: EvaluateRecipe, device: DeviceProfile) {
  const a = recipe.precision === 'bf16' ? 2 : 4;
  const L = recipe.maxLength;
  const perToken = inferenceBytesPerToken(m, recipe.precision);
  const terms = [
    term('weights', m.loadedParams * a, `${m.loadedParams.toLocaleString('en')} params × ${a} B`),
    term('one batch\'s working set', recipe.batchSize * L * perToken, `${recipe.batchSize} texts × ${L} tokens × ${perToken} B`),
    term('embeddings kept until scored', 4 * recipe.texts * m.hiddenSize, `4 B × ${recipe.texts} texts × ${m.hiddenSize}`),
  ];
  const batches = Math.ceil(recipe.texts / recipe.batchSize);
  const peakBytes = sum(terms);
  return { verb: 'evaluate' as const, recipe, terms, peakBytes, ...timing(forwardFlopsPerToken(m, L, 0) * recipe.batchSize * L, batches, device), fits: fits(peakBytes, device) };
}

export interface PlanOptions {
  keep: number;
  train: TrainRecipe;
  analyze: AnalyzeRecipe;
  evaluate: EvaluateRecipe;
  device: DeviceProfile;
}

export function planResources(stack: LayerStack, o: PlanOptions): ResourcePlan {
  const { shape, warnings } = modelShape(stack, o.keep, o.train.loraR, o.train.targetModules);
  return {
    model: shape,
    device: o.device,
    train: planTrain(shape, o.train, o.device),
    analyze: planAnalyze(shape, o.analyze, o.device),
    evaluate: planEvaluate(shape, o.evaluate, o.device),
    warnings,
  };
}

/** The train plan, or undefined for a stack whose headers lack what the planner needs (a hidden size, a valid keep). */
export function trainPlanOrNone(stack: LayerStack, input: PlanInput): ResourcePlan['train'] | undefined {
  try {
    return planResources(stack, planOptions(input)).train;
  } catch {
    return undefined;
  }
}

/** Model FLOPs utilisation of a measured step: the FLOPs the step needs (no recomputation counted) over the peak. */
export function mfu(usefulFlopsPerStep: number, secondsPerStep: number, peakFlopsPerSecond: number): number {
  return usefulFlopsPerStep / secondsPerStep / peakFlopsPerSecond;
}

/** What the user may set; everything else comes from the specs' defaults, resolved for the device as the worker resolves them. */
export interface PlanInput {
  keep: number;
  device: DeviceProfile;
  batchSize?: number;
  maxLength?: number;
  precision?: Precision;
  gradientCheckpointing?: boolean;
  miniBatchSize?: number | null;
  loraR?: number;
  loraDropout?: number;
  steps?: number;
  worldSize?: number;
  attention?: AttentionImplementation;
  evaluateTexts?: number;
}

/**
 * The worker's own resolution of `auto`: bf16 and gradient checkpointing on CUDA, fp32 and none on a CPU
 * (encoder.resolve_precision, train/loop.py), and analyze's sample (analyze.py: 100 batches of 64 on CUDA, 16 of
 * 16 on a CPU).
 */
export function planOptions(i: PlanInput): PlanOptions {
  const cuda = i.device.kind === 'cuda';
  const precision = i.precision ?? (cuda ? 'bf16' : 'fp32');
  const train: TrainRecipe = {
    batchSize: i.batchSize ?? TRAIN_DEFAULTS.batchSize,
    maxLength: i.maxLength ?? TRAIN_DEFAULTS.maxLength,
    precision,
    gradientCheckpointing: i.gradientCheckpointing ?? cuda,
    miniBatchSize: i.miniBatchSize ?? TRAIN_DEFAULTS.miniBatchSize,
    loraR: i.loraR ?? TRAIN_DEFAULTS.loraR,
    loraDropout: i.loraDropout ?? TRAIN_DEFAULTS.loraDropout,
    targetModules: TRAIN_DEFAULTS.targetModules,
    steps: i.steps ?? TRAIN_DEFAULTS.steps,
    worldSize: i.worldSize ?? 1,
    attention: i.attention ?? 'sdpa',
  };
  const analyzeBatch = ANALYZE_DEFAULTS.batchSize ?? (cuda ? 64 : 16);
  return {
    keep: i.keep,
    device: i.device,
    train,
    analyze: { batchSize: analyzeBatch, miniBatchSize: ANALYZE_DEFAULTS.miniBatchSize, samples: ANALYZE_DEFAULTS.samples ?? analyzeBatch * (cuda ? 100 : 16), maxLength: ANALYZE_DEFAULTS.maxLength, precision },
    evaluate: { batchSize: EVALUATE_DEFAULTS.batchSize, maxLength: i.maxLength ?? EVALUATE_DEFAULTS.maxLength, precision, texts: i.evaluateTexts ?? 1000 },
  };
}

/**
 * The device a spec's `device` names ("auto", "cpu", "cuda", "cuda:N"), as the worker would pick it, from its
 * devices report: a GPU is planned against its free memory (what other processes hold is not ours) and its
 * measured rate when calibrated; a CPU against the memory available now.
 */
export function profileFromReport(report: DevicesReport, device = 'auto'): DeviceProfile {
  const wantsCpu = device === 'cpu' || (device === 'auto' && report.cuda.length === 0);
  if (!wantsCpu) {
    const index = /^cuda:(\d+)$/.exec(device)?.[1];
    const gpu = report.cuda.find((d) => d.index === (index === undefined ? 0 : Number(index)));
    if (gpu) {
      const profile = gpuProfile(gpu.name, gpu.freeMemoryBytes, gpu.calibration?.dtype === 'bf16' ? gpu.calibration.flopsPerSecond * ASSUMED_EFFICIENCY / ASSUMED_EFFICIENCY_OF_MATMUL : undefined);
      return { ...profile, name: `${gpu.name} (cuda:${gpu.index}, ${(gpu.freeMemoryBytes / GiB).toFixed(1)} GiB free)` };
    }
  }
  const cal = report.cpu.calibration;
  return {
    kind: 'cpu',
    name: `CPU (${report.cpu.threads} threads)`,
    totalMemoryBytes: report.cpu.availableBytes ?? report.cpu.memoryBytes ?? undefined,
    flopsPerSecond: cal ? cal.flopsPerSecond * ASSUMED_EFFICIENCY / ASSUMED_EFFICIENCY_OF_MATMUL : undefined,
    flopsSource: cal ? 'calibrated' : 'unknown',
  };
}

/**
 * A big square matmul reaches about this share of a device's peak; a training step's mix of smaller matmuls,
 * norms and attention reaches ASSUMED_EFFICIENCY of it. A calibrated matmul rate is scaled by their ratio.
 */
export const ASSUMED_EFFICIENCY_OF_MATMUL = 0.8;

/** The plan of a train spec's recipe (tasks.json or the recipe form): `auto` resolved as the worker resolves it. */
export function planInputFromSpec(recipe: Partial<TrainSpec>, keep: number, device: DeviceProfile): PlanInput {
  const cuda = device.kind === 'cuda';
  const precision = recipe.precision === 'bf16' || recipe.precision === 'fp32' ? recipe.precision : cuda ? 'bf16' : 'fp32';
  const ckpt = recipe.gradientCheckpointing === true || recipe.gradientCheckpointing === false ? recipe.gradientCheckpointing : cuda;
  return {
    keep,
    device,
    batchSize: recipe.batchSize,
    maxLength: recipe.maxLength,
    precision,
    gradientCheckpointing: ckpt,
    miniBatchSize: recipe.miniBatchSize,
    loraR: recipe.loraR,
    loraDropout: recipe.loraDropout,
    steps: recipe.steps,
  };
}
