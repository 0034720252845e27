import { firstMatch, isMessage, isOneOf, type Check } from './validate';

/**
 * The training form's contract, shared by the host (src/views/trainFormPanel) and its page (webview/trainForm).
 * The page holds text only: the host parses every field, checks it against the train spec's schema, plans the
 * launch and posts the outcome back, so nothing the page sends is taken as a recipe without that check.
 */
export type TrainFormGroup = 'Data' | 'Cut' | 'Schedule' | 'LoRA' | 'Loss and pooling' | 'Precision and memory' | 'Devices' | 'Output';

export interface TrainFormField {
  name: string;
  group: TrainFormGroup;
  label: string;
  kind: 'int' | 'number' | 'bool' | 'enum' | 'text' | 'list' | 'columns';
  options?: string[];
  /** Empty is a value (null in the spec: off, or the rule the hint names). */
  optional?: boolean;
  hint: string;
}

/** Every field of protocol/specs/train.schema.json a user chooses (model is the form's; the consent fields are asked in a dialog). */
export const TRAIN_FORM_FIELDS = [
  { name: 'data', group: 'Data', label: 'Training triples', kind: 'text', hint: 'JSONL, CSV or Parquet of query/positive/negative, a datasets folder or an E5 folder' },
  { name: 'dataColumns', group: 'Data', label: 'Columns', kind: 'columns', optional: true, hint: 'role=column pairs, e.g. query=anchor,positive=pos; empty: found by name' },
  { name: 'taskHomogeneous', group: 'Data', label: 'One task per batch', kind: 'bool', hint: 'each batch from one task (the data’s task field)' },
  { name: 'chatTemplate', group: 'Data', label: 'Chat template', kind: 'enum', options: ['auto', 'off'], hint: 'auto: texts go inside the model’s user turn when it has a chat template' },
  { name: 'keep', group: 'Cut', label: 'Layers to keep', kind: 'int', hint: 'the first n layers' },
  { name: 'steps', group: 'Schedule', label: 'Steps', kind: 'int', hint: 'optimizer steps; the paper trains 1000' },
  { name: 'warmupSteps', group: 'Schedule', label: 'Warm-up steps', kind: 'int', hint: 'follows the steps (30 %, the paper’s 300 of 1000) unless you set it; empty: follow again' },
  { name: 'learningRate', group: 'Schedule', label: 'Learning rate', kind: 'number', hint: 'AdamW peak' },
  { name: 'checkpointEvery', group: 'Schedule', label: 'Checkpoint every', kind: 'int', hint: 'follows the steps (one tenth) unless you set it; empty: follow again' },
  { name: 'scheduleSteps', group: 'Schedule', label: 'Schedule horizon (steps)', kind: 'int', optional: true, hint: 'where the linear decay reaches 0; empty: from the epochs below' },
  { name: 'scheduleEpochs', group: 'Schedule', label: 'Schedule horizon (epochs)', kind: 'number', hint: 'the paper’s 3 epochs of the data' },
  { name: 'seed', group: 'Schedule', label: 'Seed', kind: 'int', hint: 'data order, LoRA init and dropout' },
  { name: 'loraR', group: 'LoRA', label: 'Rank r', kind: 'int', hint: 'LoRA rank' },
  { name: 'loraAlpha', group: 'LoRA', label: 'Alpha', kind: 'number', optional: true, hint: 'empty: 2 × r, the paper’s rule' },
  { name: 'loraDropout', group: 'LoRA', label: 'Dropout', kind: 'number', hint: 'on the LoRA input, from 0 to below 1' },
  { name: 'targetModules', group: 'LoRA', label: 'Target modules', kind: 'list', hint: 'comma-separated; names the model lacks are skipped' },
  { name: 'pooling', group: 'Loss and pooling', label: 'Pooling', kind: 'enum', options: ['weighted_mean', 'mean', 'last_token'], hint: 'how token states become one embedding' },
  { name: 'scale', group: 'Loss and pooling', label: 'Scale (1/temperature)', kind: 'number', hint: 'of the InfoNCE loss' },
  { name: 'precision', group: 'Precision and memory', label: 'Precision', kind: 'enum', options: ['auto', 'bf16', 'fp32'], hint: 'auto: bf16 where the GPU supports it, else fp32' },
  { name: 'gradientCheckpointing', group: 'Precision and memory', label: 'Gradient checkpointing', kind: 'enum', options: ['auto', 'true', 'false'], hint: 'auto: on for CUDA' },
  { name: 'miniBatchSize', group: 'Precision and memory', label: 'Gradient cache chunk', kind: 'int', optional: true, hint: 'texts per chunk: the batch’s gradient at one chunk’s activation memory; empty: off' },
  { name: 'batchSize', group: 'Precision and memory', label: 'Batch size', kind: 'int', hint: 'triples per step and device' },
  { name: 'maxLength', group: 'Precision and memory', label: 'Max length', kind: 'int', hint: 'tokens per text after truncation' },
  { name: 'devices', group: 'Devices', label: 'Devices', kind: 'text', hint: 'auto, cpu, cpu:K, cuda:N, cuda:N,M,… or all; more than one starts torchrun' },
  { name: 'device', group: 'Devices', label: 'Device (one process)', kind: 'text', hint: 'auto, cpu or cuda:N' },
  { name: 'mergeAtEnd', group: 'Output', label: 'Save the merged model', kind: 'bool', hint: 'the pruned model with LoRA merged, in the run folder' },
] as const satisfies readonly TrainFormField[];

export type TrainFormFieldName = (typeof TRAIN_FORM_FIELDS)[number]['name'];
export const TRAIN_FORM_FIELD_NAMES = TRAIN_FORM_FIELDS.map((f) => f.name) as TrainFormFieldName[];

export interface TrainFormPlan {
  /** devicePlansSummary: "peak 1.2 GiB — fits · 3 s a step, 2 min in all". */
  summary: string;
  fits: boolean | null;
  /** The terms of the peak, "weights 0.3 GiB, …", and the recipe planned. */
  detail: string;
}

export type TrainFormToWebview =
  | { type: 'init'; modelName: string; model: string; numLayers: number; fields: readonly TrainFormField[]; machine: string }
  | {
      type: 'state';
      raw: Record<TrainFormFieldName, string>;
      set: TrainFormFieldName[];
      problems: Partial<Record<TrainFormFieldName, string>>;
      plan: TrainFormPlan | undefined;
      /** The host's check of the data file: undefined while it passes. */
      dataProblem: string | undefined;
      remembered: boolean;
      /** A note under the Start button (e.g. why the start was refused). */
      status: string;
    };

export type TrainFormFromWebview =
  | { type: 'ready' }
  | { type: 'edit'; field: TrainFormFieldName; value: string }
  | { type: 'browseData' }
  | { type: 'previewData' }
  | { type: 'reset' }
  | { type: 'start' }
  | { type: 'cancel' };

const isFieldText: Check<string> = (v): v is string => typeof v === 'string' && v.length <= 4096;

export function parseTrainFormMessage(raw: unknown): TrainFormFromWebview | undefined {
  return firstMatch<TrainFormFromWebview>(raw, [
    isMessage('ready', {}),
    isMessage('edit', { field: isOneOf(...TRAIN_FORM_FIELD_NAMES), value: isFieldText }),
    isMessage('browseData', {}),
    isMessage('previewData', {}),
    isMessage('reset', {}),
    isMessage('start', {}),
    isMessage('cancel', {}),
  ]);
}
