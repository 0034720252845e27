import type { DevicesReport } from '../shared/protocol/generated/devices-report';

/**
 * The train spec's `devices` (protocol/specs/train.schema.json) as the launch sees it: how many processes, on which
 * devices, and the command line that starts them. Kept free of the vscode module: the launch is unit-tested.
 */
export type DeviceChoice =
  | { kind: 'auto' }
  | { kind: 'cpu'; processes: number }
  | { kind: 'cuda'; indices: number[] }
  | { kind: 'all' };

const PATTERN = /^(auto|all|cpu(:[1-9][0-9]{0,2})?|cuda:[0-9]{1,3}(,[0-9]{1,3}){0,255})$/;

export function parseDevices(devices: string): DeviceChoice | undefined {
  if (!PATTERN.test(devices)) return undefined;
  if (devices === 'auto') return { kind: 'auto' };
  if (devices === 'all') return { kind: 'all' };
  if (devices.startsWith('cpu')) return { kind: 'cpu', processes: devices === 'cpu' ? 1 : Number(devices.slice(4)) };
  return { kind: 'cuda', indices: devices.slice(5).split(',').map(Number) };
}

/** Several nodes: torchrun's rendezvous, each node launching its own share (tasks.json: nnodes, nodeRank, rdzvEndpoint). */
export interface Rendezvous {
  nnodes: number;
  nodeRank: number;
  /** HOST:PORT of node 0, which every node can reach. */
  rdzvEndpoint: string;
}

/**
 * One sentence on why these devices cannot be launched here, or undefined. Without a devices report (the worker
 * could not be asked) only the form is checked; the worker then refuses what its torch does not see.
 */
export function checkDevices(devices: string, report: DevicesReport | undefined, rendezvous?: Partial<Rendezvous>): string | undefined {
  const choice = parseDevices(devices);
  if (!choice) return `devices "${devices}" is not one of auto, all, cpu, cpu:K (K processes), cuda:N or cuda:N,M,… (e.g. cuda:0,1,2,3)`;
  if (choice.kind === 'cuda') {
    const twice = choice.indices.find((d, i) => choice.indices.indexOf(d) !== i);
    if (twice !== undefined) return `devices "${devices}" names cuda:${twice} twice; each GPU takes one process`;
    if (report) {
      const missing = choice.indices.find((d) => !report.cuda.some((g) => g.index === d));
      if (missing !== undefined) {
        const seen = report.cuda.length ? report.cuda.map((g) => `cuda:${g.index}`).join(', ') : 'no CUDA device';
        return `devices "${devices}" names cuda:${missing}, which this machine does not have (its torch sees ${seen}); choose among those`;
      }
    }
  }
  if (choice.kind === 'all' && report && report.cuda.length === 0) {
    return 'devices "all" means every CUDA device, and the worker\'s torch sees none here; use cpu, or cpu:K for K processes';
  }
  if (rendezvous) {
    const problem = checkRendezvous(rendezvous);
    if (problem) return problem;
  }
  return undefined;
}

export function checkRendezvous(r: Partial<Rendezvous>): string | undefined {
  if (r.nnodes === undefined && r.nodeRank === undefined && r.rdzvEndpoint === undefined) return undefined;
  if (!Number.isSafeInteger(r.nnodes) || r.nnodes! < 1) return '"nnodes" must be a whole number of nodes, 1 or more';
  if (r.nnodes === 1) return undefined;
  if (!Number.isSafeInteger(r.nodeRank) || r.nodeRank! < 0 || r.nodeRank! >= r.nnodes!) {
    return `"nodeRank" must be this node's number, 0 to ${r.nnodes! - 1} (0 on the node whose address is rdzvEndpoint)`;
  }
  if (typeof r.rdzvEndpoint !== 'string' || !/^[^\s:]+:\d{1,5}$/.test(r.rdzvEndpoint)) {
    return '"rdzvEndpoint" must be HOST:PORT of node 0, reachable from every node (e.g. 10.0.0.1:29500)';
  }
  return undefined;
}

/** Processes on this node; `all` counts the report's GPUs (1 without a report: the launch then fails in torchrun). */
export function processesOf(choice: DeviceChoice, report: DevicesReport | undefined): number {
  switch (choice.kind) {
    case 'auto':
      return 1;
    case 'cpu':
      return choice.processes;
    case 'cuda':
      return choice.indices.length;
    case 'all':
      return Math.max(1, report?.cuda.length ?? 1);
  }
}

/** The devices the plan is made for, one per process of this node, as profileFromReport names them. */
export function plannedDevices(choice: DeviceChoice, report: DevicesReport | undefined, specDevice: string): string[] {
  switch (choice.kind) {
    case 'auto':
      return [specDevice];
    case 'cpu':
      return ['cpu'];
    case 'cuda':
      return choice.indices.map((i) => `cuda:${i}`);
    case 'all':
      return (report?.cuda ?? []).map((g) => `cuda:${g.index}`);
  }
}

/** Seconds torchrun waits, after a cancel, for its ranks to finish the step and write the checkpoint. */
export const SHUTDOWN_GRACE_S = 600;

export interface LaunchLine {
  /** Arguments after the interpreter. */
  argv: string[];
  /** Added to the worker's environment. */
  env: Record<string, string>;
  /** Processes this node starts. */
  processes: number;
  /** Processes of the whole run (every node): the global batch is this times batchSize. */
  worldSize: number;
}

/**
 * The command that starts train for these devices. One process: `-m l3prune train …` as before (a single cuda:N is
 * the worker's to pick). More, or several nodes: the worker's own torchrun (`-m torch.distributed.run`: no PATH
 * lookup, the same torch), which stays the process-group leader the host signals; CUDA_VISIBLE_DEVICES narrows
 * the GPUs to the chosen ones, so rank r takes the r-th of them (cuda:LOCAL_RANK).
 */
export function launchLine(trainArgs: string[], devices: string, report: DevicesReport | undefined, rendezvous?: Rendezvous, inherited: NodeJS.ProcessEnv = process.env): LaunchLine {
  const choice = parseDevices(devices);
  if (!choice) throw new Error(checkDevices(devices, report));
  const processes = processesOf(choice, report);
  const nnodes = rendezvous && rendezvous.nnodes > 1 ? rendezvous.nnodes : 1;
  const worker = ['-m', 'l3prune', 'train', ...trainArgs];
  if (processes === 1 && nnodes === 1) return { argv: worker, env: {}, processes, worldSize: 1 };
  const env: Record<string, string> = {};
  if (choice.kind === 'cuda') env.CUDA_VISIBLE_DEVICES = choice.indices.join(',');
  if (choice.kind === 'all' && report?.cuda.length) env.CUDA_VISIBLE_DEVICES = report.cuda.map((g) => g.index).join(',');
  // A cancel reaches torchrun too, which gives its ranks 30 s before SIGKILL by default: too little for a 7-8B step
  // and its checkpoint. The variable (not --shutdown-timeout) so that an older torch, without the flag, still runs.
  if (inherited.TORCH_ELASTIC_SHUTDOWN_TIMEOUT === undefined) env.TORCH_ELASTIC_SHUTDOWN_TIMEOUT = String(SHUTDOWN_GRACE_S);
  const where = nnodes > 1
    ? ['--nnodes', String(nnodes), '--node-rank', String(rendezvous!.nodeRank), '--rdzv-backend', 'static', '--rdzv-endpoint', rendezvous!.rdzvEndpoint]
    : ['--standalone'];
  return { argv: ['-m', 'torch.distributed.run', ...where, `--nproc-per-node=${processes}`, ...worker], env, processes, worldSize: processes * nnodes };
}
