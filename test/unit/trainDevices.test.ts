import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { checkDefinition, rendezvousOf, specFromDefinition } from '../../src/runs/trainDefinition';
import { checkDevices, launchLine, parseDevices, plannedDevices, processesOf, SHUTDOWN_GRACE_S } from '../../src/runs/trainDevices';
import { cancelRun, launchTrain } from '../../src/runs/trainLauncher';
import type { DevicesReport } from '../../src/shared/protocol/generated/devices-report';
import { OwnProcesses } from '../../src/worker/ownProcesses';
import { inspectModel } from '../../src/model/inspect';
import type { LayerStack } from '../../src/shared/model/stack';
import { GiB, planOptions, planResources, profileFromReport } from '../../src/shared/prune/resources';
import { devicePlansSummary, planLaunch, planSummary } from '../../src/runs/devicePlans';
import { LLAMA3_8B, writeLlamaFolder } from '../fixtures/checkpoints';
import { useTempDir } from '../fixtures/tmp';
import { DEMO, requireWorkerEnvironment, ROOT } from '../fixtures/demo';
import { protocolValidator } from '../fixtures/schemas';

const gpu = (index: number) => ({ index, name: 'NVIDIA H100', totalMemoryBytes: 80e9, freeMemoryBytes: 79e9, bf16: true, computeCapability: '9.0' });
const REPORT: DevicesReport = {
  event: 'devices', time: '2026-12-01T00:00:00Z', torch: '2.13.0', cuda: [0, 1, 2, 3].map(gpu),
  cpu: { threads: 16, memoryBytes: 128e9 }, attention: ['eager', 'sdpa'],
};
const NO_GPU: DevicesReport = { ...REPORT, cuda: [] };

type TorchrunView = { nproc: number; minNodes: number; maxNodes: number; nodeRank: number; endpoint: string; backend: string; shutdownTimeout: number; cmd: string[] };
type Line = { argv: string[]; env: Record<string, string> };

/** What the worker's own torchrun makes of command lines: its argparse and config, not our reading of them (one interpreter for all). */
function torchrunReads(...lines: Line[]): TorchrunView[] {
  for (const line of lines) assert.deepEqual(line.argv.slice(0, 2), ['-m', 'torch.distributed.run']);
  const script = [
    'import json, os, sys',
    'from torch.distributed.run import parse_args, config_from_args',
    'out = []',
    'base = dict(os.environ)',
    'for argv, env in json.loads(sys.argv[1]):',
    '    os.environ.clear(); os.environ.update({**base, **env})',
    '    a = parse_args(argv)',
    '    c, cmd, cmd_args = config_from_args(a)',
    '    out.append({"nproc": c.nproc_per_node, "minNodes": c.min_nodes, "maxNodes": c.max_nodes, "nodeRank": a.node_rank,',
    '                "endpoint": c.rdzv_endpoint, "backend": c.rdzv_backend, "shutdownTimeout": c.shutdown_timeout,',
    '                "cmd": [str(cmd), *cmd_args]})',
    'print(json.dumps(out))',
  ].join('\n');
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: '1' };
  delete env.TORCH_ELASTIC_SHUTDOWN_TIMEOUT;
  return JSON.parse(execFileSync(DEMO.python, ['-c', script, JSON.stringify(lines.map((l) => [l.argv.slice(2), l.env]))], { encoding: 'utf8', env }));
}

describe('devices: the launch the task makes of them', function () {
  this.timeout(60_000);

  it('the report the tests plan against is a devices report the protocol accepts', () => {
    const validate = protocolValidator().validatorFor('protocol/devices-report.schema.json');
    for (const report of [REPORT, NO_GPU]) assert.ok(validate(report), JSON.stringify(validate.errors));
  });

  it('refuses, in one sentence, devices the machine lacks or that are not devices at all', () => {
    assert.equal(checkDevices('cuda:0,1,2,3', REPORT), undefined);
    assert.equal(checkDevices('all', REPORT), undefined);
    assert.equal(checkDevices('cpu:2', NO_GPU), undefined);
    assert.equal(checkDevices('cuda:0,7', REPORT), 'devices "cuda:0,7" names cuda:7, which this machine does not have (its torch sees cuda:0, cuda:1, cuda:2, cuda:3); choose among those');
    assert.match(checkDevices('cuda:0', NO_GPU)!, /names cuda:0, which this machine does not have \(its torch sees no CUDA device\)/);
    assert.match(checkDevices('all', NO_GPU)!, /sees none here; use cpu, or cpu:K/);
    assert.match(checkDevices('cuda:1,1', REPORT)!, /names cuda:1 twice/);
    assert.match(checkDevices('gpu0', REPORT)!, /is not one of auto, all, cpu, cpu:K/);
    assert.match(checkDevices('cpu:0', REPORT)!, /is not one of/);
    // Without a report only the form is checked; the worker's torch then has the last word.
    assert.equal(checkDevices('cuda:9', undefined), undefined);
  });

  it('tasks.json: devices and the rendezvous fields are checked before anything is spawned', () => {
    const base = { type: 'l3prune', verb: 'train', model: 'm', keep: 2, data: 'd.jsonl' };
    assert.equal(checkDefinition({ ...base, devices: 'cuda:0,1' }), undefined);
    assert.match(checkDefinition({ ...base, devices: 'gpu' })!, /devices "gpu" is not one of/);
    assert.match(checkDefinition({ ...base, devices: 'cuda:x', resumeRunDir: 'r' })!, /is not one of/, 'a resume checks its devices too');
    assert.match(checkDefinition({ ...base, nnodes: 2, nodeRank: 2, rdzvEndpoint: 'h:29500' })!, /"nodeRank" must be this node's number, 0 to 1/);
    assert.match(checkDefinition({ ...base, nnodes: 2, nodeRank: 1, rdzvEndpoint: 'h' })!, /"rdzvEndpoint" must be HOST:PORT/);
    assert.equal(checkDefinition({ ...base, nnodes: 2, nodeRank: 1, rdzvEndpoint: '10.0.0.1:29500' }), undefined);
    assert.equal(specFromDefinition({ ...base, type: 'l3prune', verb: 'train', devices: 'cpu:2' }).devices, 'cpu:2');
    assert.equal(specFromDefinition({ ...base, type: 'l3prune', verb: 'train' }).devices, 'auto');
  });

  it('one process is the plain worker; a single GPU is the worker\'s to pick (no torchrun, no CUDA_VISIBLE_DEVICES)', () => {
    for (const devices of ['auto', 'cpu', 'cuda:2']) {
      const line = launchLine(['--run-dir', '/r'], devices, REPORT);
      assert.deepEqual(line.argv, ['-m', 'l3prune', 'train', '--run-dir', '/r']);
      assert.deepEqual(line.env, {});
      assert.equal(line.worldSize, 1);
    }
  });

  it('several GPUs: the worker\'s torchrun, one process each, CUDA_VISIBLE_DEVICES the chosen ones, as torchrun reads it', () => {
    const line = launchLine(['--run-dir', '/r', '--spec', '/r/spec.json'], 'cuda:1,3', REPORT);
    const all = launchLine(['--run-dir', '/r'], 'all', REPORT);
    const cpu = launchLine(['--run-dir', '/r'], 'cpu:3', NO_GPU);
    const [t, tAll, tCpu] = torchrunReads(line, all, cpu);
    assert.equal(line.env.CUDA_VISIBLE_DEVICES, '1,3');
    assert.equal(t.nproc, 2);
    // A cancel's grace before torchrun kills the ranks: long enough for a big step and its checkpoint.
    assert.equal(t.shutdownTimeout, SHUTDOWN_GRACE_S);
    assert.equal(launchLine(['--run-dir', '/r'], 'cuda:1,3', REPORT, undefined, { TORCH_ELASTIC_SHUTDOWN_TIMEOUT: '90' }).env.TORCH_ELASTIC_SHUTDOWN_TIMEOUT, undefined, 'the user\'s own value stands');
    assert.equal(t.maxNodes, 1);
    assert.deepEqual(t.cmd.slice(-7), ['-m', 'l3prune', 'train', '--run-dir', '/r', '--spec', '/r/spec.json']);
    assert.equal(all.env.CUDA_VISIBLE_DEVICES, '0,1,2,3');
    assert.equal(tAll.nproc, 4);
    assert.equal(all.worldSize, 4);
    assert.equal(cpu.env.CUDA_VISIBLE_DEVICES, undefined);
    assert.equal(tCpu.nproc, 3);
  });

  it('a node of several: --nnodes, --node-rank and the rendezvous endpoint, the world counted over every node', () => {
    const rendezvous = rendezvousOf({ type: 'l3prune', verb: 'train', model: 'm', keep: 1, data: 'd', nnodes: 2, nodeRank: 1, rdzvEndpoint: '10.0.0.1:29500' })!;
    const line = launchLine(['--run-dir', '/shared/r'], 'cuda:0,1,2,3', REPORT, rendezvous);
    // One process on each of two nodes is still torchrun: the rendezvous is what makes it one run.
    const [t, one] = torchrunReads(line, launchLine(['--run-dir', '/shared/r'], 'cpu', NO_GPU, rendezvous));
    assert.deepEqual([t.nproc, t.minNodes, t.maxNodes, t.nodeRank, t.endpoint, t.backend], [4, 2, 2, 1, '10.0.0.1:29500', 'static']);
    assert.equal(line.worldSize, 8);
    assert.equal(one.nproc, 1);
  });

  it('plans one device per process: the chosen GPUs, the spec\'s device for auto', () => {
    assert.deepEqual(plannedDevices(parseDevices('cuda:0,2')!, REPORT, 'auto'), ['cuda:0', 'cuda:2']);
    assert.deepEqual(plannedDevices(parseDevices('all')!, REPORT, 'auto'), ['cuda:0', 'cuda:1', 'cuda:2', 'cuda:3']);
    assert.deepEqual(plannedDevices(parseDevices('auto')!, REPORT, 'cuda:1'), ['cuda:1']);
    assert.equal(processesOf(parseDevices('cpu:4')!, REPORT), 4);
  });
});

describe('the plan of a launch: per device, and the global batch', function () {
  const dir = useTempDir('l3prune-plan-devices-');
  let llama: LayerStack;
  before(async () => {
    writeLlamaFolder(path.join(dir(), 'llama3-8b'), LLAMA3_8B, 2);
    llama = await inspectModel(path.join(dir(), 'llama3-8b'));
  });

  it('Llama-3-8B keep 25 on cuda:0,1 where another process holds most of cuda:1: each GPU judged on its own free memory', () => {
    const busy: DevicesReport = { ...REPORT, cuda: [gpu(0), { ...gpu(1), freeMemoryBytes: 12 * GiB }] };
    const recipe = { steps: 1000, gradientCheckpointing: true as const };
    const p = planLaunch(llama, recipe, 25, 'cuda:0,1', busy)!;
    // The reference: the planner on each device alone, with the gather of a 2-process world.
    const alone = (index: number) => planResources(llama, planOptions({ keep: 25, device: profileFromReport(busy, `cuda:${index}`), gradientCheckpointing: true, worldSize: 2 })).train;
    assert.deepEqual(p.perDevice.map((d) => [d.device, d.plan.fits, d.plan.peakBytes]), [0, 1].map((i) => [`cuda:${i}`, alone(i).fits, alone(i).peakBytes]));
    assert.deepEqual(p.perDevice.map((d) => d.plan.fits), [true, false]);
    assert.equal(p.plan.fits, false, 'the device that does not fit decides');
    assert.ok(p.plan.terms.some((t) => t.name === 'cross-device gather'));
    const text = devicePlansSummary(p);
    assert.match(text, /a device: cuda:0 fits, cuda:1 does NOT fit · global batch 2 × 64 = 128/);
    // One device is the summary the form always showed.
    assert.equal(devicePlansSummary(planLaunch(llama, recipe, 25, 'cuda:0', busy)!), planSummary(planResources(llama, planOptions({ keep: 25, device: profileFromReport(busy, 'cuda:0'), gradientCheckpointing: true })).train));
    assert.match(devicePlansSummary(planLaunch(llama, recipe, 25, 'cpu:2', busy)!), /\(2 processes\) · global batch 2 × 64 = 128/);
  });
});

describe('a 2-process CPU run launched as the task launches it, then cancelled', function () {
  this.timeout(420_000);
  let root = '';
  before(function () {
    requireWorkerEnvironment(this);
    root = mkdtempSync(path.join(tmpdir(), 'l3prune-mp-'));
  });
  after(() => root && rmSync(root, { recursive: true, force: true }));

  it('run.json names the launcher; cancel stops both ranks with one checkpoint', async () => {
    const model = path.join(root, 'tiny');
    const data = path.join(root, 'triples.jsonl');
    // The worker tests' tiny Llama and triples (worker/tests/conftest.py): a real model in a second.
    execFileSync(DEMO.python, ['-c', [
      'import sys; from pathlib import Path',
      `sys.path.insert(0, ${JSON.stringify(path.join(ROOT, 'worker', 'tests'))})`,
      'from conftest import make_tiny_llama, write_triples',
      `make_tiny_llama(Path(${JSON.stringify(model)})); write_triples(Path(${JSON.stringify(data)}), 24)`,
    ].join('\n')], { env: { ...process.env, OMP_NUM_THREADS: '1' } });
    const definition = { type: 'l3prune' as const, verb: 'train' as const, model, keep: 2, data, steps: 2000, devices: 'cpu:2',
      recipe: { batchSize: 2, maxLength: 16, checkpointEvery: 1000, mergeAtEnd: false } };
    assert.equal(checkDefinition(definition), undefined);
    const spec = specFromDefinition(definition);
    const runDir = path.join(root, 'run');
    const own = new OwnProcesses();
    const pid = await launchTrain(DEMO.python, runDir, spec, { env: { OMP_NUM_THREADS: '1', L3PRUNE_LOCK_DIR: root } });
    const events = () => existsSync(path.join(runDir, 'events.jsonl'))
      ? readFileSync(path.join(runDir, 'events.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event: string; step?: number })
      : [];
    const record = () => JSON.parse(readFileSync(path.join(runDir, 'run.json'), 'utf8')) as { pid: number; status: string };
    await until(() => events().some((e) => e.event === 'step'), 300_000, () => readFileSync(path.join(runDir, 'worker.log'), 'utf8'));
    assert.equal(record().pid, pid, 'run.json names the launcher, the group leader the host signals');
    assert.equal(own.liveness(pid, runDir), 'ours', '/proc shows the launcher as this run\'s worker');
    const ranks = readdirSync(path.join(runDir, 'ranks')).filter((f) => f.endsWith('.json')).map((f) => (JSON.parse(readFileSync(path.join(runDir, 'ranks', f), 'utf8')) as { pid: number }).pid);
    assert.equal(ranks.length, 2);
    assert.equal(cancelRun({ runDir, status: 'running', record: record() }, own), true);
    await until(() => record().status !== 'running', 120_000, () => readFileSync(path.join(runDir, 'worker.log'), 'utf8'));
    assert.equal(record().status, 'cancelled');
    await until(() => [pid, ...ranks].every(gone), 60_000, () => `still alive: ${[pid, ...ranks].filter((p) => !gone(p)).join(', ')}`);
    const stopped = events().filter((e) => e.event === 'cancelled').at(-1)!.step!;
    assert.deepEqual(events().filter((e) => e.event === 'checkpoint').map((e) => e.step), [stopped], 'one checkpoint, at the step it stopped after');
    assert.deepEqual(readdirSync(path.join(runDir, 'checkpoints')).filter((f) => f.startsWith('step-')), [`step-${String(stopped).padStart(8, '0')}`]);
  });
});

function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function until(ok: () => boolean, ms: number, why: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out: ${why().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
