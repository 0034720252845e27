import { TRAIN_DEFAULTS } from '../protocol/generated/defaults';

/**
 * The defaults the training form starts from, for the device the run will use. The paper's recipe (TRAIN_DEFAULTS,
 * from protocol/specs/train.schema.json) is sized for a GPU: 1000 steps of 64 × 512 tokens. On a CPU that is days,
 * so the form starts small enough to watch the loss fall in minutes; a user still types any value.
 */
export interface DeviceDefaults {
  steps: number;
  batchSize: number;
  maxLength: number;
}

export const CPU_DEFAULTS: Readonly<DeviceDefaults> = { steps: 200, batchSize: 8, maxLength: 64 };

export function deviceDefaults(onCpu: boolean): DeviceDefaults {
  return onCpu ? { ...CPU_DEFAULTS } : { steps: TRAIN_DEFAULTS.steps, batchSize: TRAIN_DEFAULTS.batchSize, maxLength: TRAIN_DEFAULTS.maxLength };
}

/**
 * Warm-up and checkpoint interval as the step count makes them, unless the user set them: the paper's ratios
 * (warm-up 300 of 1000 steps, a checkpoint every 100), so 40 steps warm up for 12 and checkpoint every 4 instead
 * of warming up past the end of the run and never checkpointing.
 */
export function followedSchedule(steps: number): { warmupSteps: number; checkpointEvery: number } {
  const whole = Math.max(1, Math.floor(steps));
  return {
    warmupSteps: Math.round((whole * TRAIN_DEFAULTS.warmupSteps) / TRAIN_DEFAULTS.steps),
    checkpointEvery: Math.max(1, Math.round((whole * TRAIN_DEFAULTS.checkpointEvery) / TRAIN_DEFAULTS.steps)),
  };
}

/** Whether the launch's devices put the run on the CPU: named so, or auto on a machine whose torch sees no CUDA device. */
export function runsOnCpu(devices: string, device: string, cudaCount: number | undefined): boolean {
  if (devices.startsWith('cpu') || device === 'cpu') return true;
  if (devices.startsWith('cuda') || devices === 'all' || device.startsWith('cuda')) return false;
  // No devices report: the worker could not be asked; a GPU box is what the extension is for.
  return cudaCount === 0;
}
