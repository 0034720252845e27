import { formatDuration, formatGiB } from '../shared/format/units';
import type { LayerStack } from '../shared/model/stack';
import { TRAIN_DEFAULTS } from '../shared/protocol/generated/defaults';
import type { DevicesReport } from '../shared/protocol/generated/devices-report';
import { planInputFromSpec, profileFromReport, trainPlanOrNone, type ResourcePlan } from '../shared/prune/resources';
import type { TrainRecipe } from './trainDefinition';
import { parseDevices, plannedDevices, processesOf } from './trainDevices';

/** The plans of one launch: per device, the one that decides (the first that does not fit), and the global batch. */
export interface DevicePlans {
  plan: ResourcePlan['train'];
  perDevice: Array<{ device: string; plan: ResourcePlan['train'] }>;
  worldSize: number;
  batchSize: number;
}

/**
 * One plan per device of the launch: each process holds a full replica and its batchSize share of the global
 * batch, and gathers the others' embeddings (the planner's worldSize term), on that device's own free memory.
 */
export function planLaunch(stack: LayerStack, recipe: TrainRecipe & { steps: number }, keep: number, devices: string, report: DevicesReport): DevicePlans | undefined {
  const parsed = parseDevices(devices);
  if (!parsed) return undefined;
  const worldSize = processesOf(parsed, report);
  const spec = { ...TRAIN_DEFAULTS, ...recipe };
  const perDevice = plannedDevices(parsed, report, spec.device).flatMap((device) => {
    const plan = trainPlanOrNone(stack, { ...planInputFromSpec(spec, keep, profileFromReport(report, device)), worldSize });
    return plan ? [{ device, plan }] : [];
  });
  if (!perDevice.length) return undefined;
  const worst = perDevice.find((d) => d.plan.fits === false) ?? perDevice[0];
  return { plan: worst.plan, perDevice, worldSize, batchSize: spec.batchSize };
}

/** "peak 15.3 GiB of 21.6 GiB free on RTX 4090 — fits · 11 s a step, 3.1 h" */
export function planSummary(plan: ResourcePlan['train']): string {
  const verdict = plan.fits === null ? '' : plan.fits ? ' — fits' : ' — does NOT fit';
  const time = plan.secondsPerStep === null ? '' : ` · ${formatDuration(plan.secondsPerStep)} a step, ${formatDuration(plan.totalSeconds!)} in all`;
  return `peak ${formatGiB(plan.peakBytes)}${verdict}${time}`;
}

/** One device: planSummary; several: "peak … a device: cuda:0 fits, cuda:1 does NOT fit · global batch 4 × 64 = 256 · …". */
export function devicePlansSummary(p: DevicePlans): string {
  if (p.worldSize === 1 && p.perDevice.length === 1) return planSummary(p.plan);
  const verdicts = p.perDevice.map(({ device, plan }) => `${device} ${plan.fits === null ? `peak ${formatGiB(plan.peakBytes)}` : plan.fits ? 'fits' : 'does NOT fit'}`);
  const time = p.plan.secondsPerStep === null ? '' : ` · ${formatDuration(p.plan.secondsPerStep)} a step, ${formatDuration(p.plan.totalSeconds!)} in all`;
  const processes = p.perDevice.length === 1 && p.worldSize > 1 ? ` (${p.worldSize} processes)` : '';
  return `peak ${formatGiB(p.plan.peakBytes)} a device: ${verdicts.join(', ')}${processes} · global batch ${p.worldSize} × ${p.batchSize} = ${p.worldSize * p.batchSize}${time}`;
}
