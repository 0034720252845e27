/**
 * The train verb's spec (protocol/run.schema.json#/$defs/trainSpecInput is its definition). Defaults are
 * the paper's recipe: LoRA r 16, α 32, dropout 0.05 on every projection, lr 2e-4 with 300 warm-up steps,
 * batch 64 per device, max length 512, bf16 where the GPU allows, InfoNCE scale 50, 1000 steps,
 * task-homogeneous batches, weighted-mean pooling.
 */
export interface TrainSpec {
  model: string;
  keep: number;
  data: string;
  steps: number;
  batchSize: number;
  learningRate: number;
  warmupSteps: number;
  maxLength: number;
  loraR: number;
  loraAlpha: number;
  loraDropout: number;
  targetModules: string[];
  scale: number;
  pooling: 'mean' | 'weighted_mean' | 'last_token';
  checkpointEvery: number;
  seed: number;
  device: 'auto' | 'cpu' | 'cuda';
  precision: 'auto' | 'bf16' | 'fp32';
  gradientCheckpointing: 'auto' | boolean;
  taskHomogeneous: boolean;
  mergeAtEnd: boolean;
  trustRemoteCode: boolean;
}

export const PAPER_RECIPE: Omit<TrainSpec, 'model' | 'keep' | 'data'> = {
  steps: 1000,
  batchSize: 64,
  learningRate: 2e-4,
  warmupSteps: 300,
  maxLength: 512,
  loraR: 16,
  loraAlpha: 32,
  loraDropout: 0.05,
  targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  scale: 50,
  pooling: 'weighted_mean',
  checkpointEvery: 100,
  seed: 0,
  device: 'auto',
  precision: 'auto',
  gradientCheckpointing: 'auto',
  taskHomogeneous: true,
  mergeAtEnd: true,
  trustRemoteCode: false,
};
