// One .vsix per platform, each carrying only its own onnxruntime-node binding (a binding is 25-45 MB and
// loads on one OS and CPU only; VS Code and the Marketplace pick the package whose target matches the machine
// the extension runs on: under Remote-SSH, the remote's).
//
//   node scripts/package-targets.mjs [--out-dir DIR] [TARGET ...]     (npm run package:all)
//   node scripts/package-targets.mjs [--out-dir DIR] --host [TARGET ...]  (npm run package)
//
// writes DIR/l3prune-studio-<target>.vsix (DIR: dist) for the TARGETs given, else for all of TARGETS;
// --host writes DIR/l3prune-studio.vsix for this machine's platform (what setup and the e2e tests install),
// and with no TARGET nothing else.
// The bundles are built once (scripts/build.mjs, with every binding onnxruntime-node ships) into
// DIR/.stage-build, so every package carries the same bytes; each target is then packaged from a folder of
// its own (DIR/.stage-<target>) that holds only what .vscodeignore lets in, with only its own binding: vsce
// globs a few hundred files there instead of the checkout with its virtual environment and tools (2 minutes
// per package in the checkout, seconds there), and a concurrent `npm run package` in dist/ cannot change a
// package half-way. Nothing is installed or downloaded: the bindings come from the onnxruntime-node package
// already in node_modules (installed with ONNXRUNTIME_NODE_INSTALL=skip, so without its CUDA download).
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** vsce target names; darwin-x64 gets a package without a binding while onnxruntime-node ships none for it. */
export const TARGETS = ['linux-x64', 'linux-arm64', 'darwin-arm64', 'darwin-x64', 'win32-x64', 'win32-arm64'];

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main(process.argv.slice(2));
}

async function main(args) {
  let outDir = path.join(root, 'dist');
  const targets = [];
  let host = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--host') host = true;
    else if (args[i] === '--out-dir') {
      if (!args[i + 1]) fail('package-targets: --out-dir needs a folder, e.g. --out-dir dist');
      outDir = path.resolve(args[++i]);
    } else if (TARGETS.includes(args[i])) targets.push(args[i]);
    else fail(`package-targets: unknown target or option "${args[i]}"; targets are ${TARGETS.join(', ')}`);
  }
  mkdirSync(outDir, { recursive: true });
  const started = Date.now();
  const hostTarget = `${process.platform}-${process.arch}`;
  const jobs = (targets.length ? targets : host ? [] : TARGETS).map((t) => [t, `l3prune-studio-${t}.vsix`]);
  // A platform with no target here (e.g. alpine) still gets a package, one for any platform, as before.
  if (host) jobs.push([TARGETS.includes(hostTarget) ? hostTarget : undefined, 'l3prune-studio.vsix']);
  const build = path.join(outDir, '.stage-build');
  rmSync(build, { recursive: true, force: true });
  await run(process.execPath, ['scripts/build.mjs', '--outdir', path.join(build, 'dist')], {
    cwd: root,
    env: { ...process.env, L3PRUNE_ORT_TARGETS: jobs.length === 1 ? (jobs[0][0] ?? hostTarget) : 'all' },
  });
  // Two at a time: vsce's deflate keeps about one core busy.
  const lanes = Array.from({ length: Math.min(2, availableParallelism(), jobs.length) }, async () => {
    for (let job = jobs.shift(); job; job = jobs.shift()) await packageTarget(job[0], build, outDir, job[1]);
  });
  await Promise.all(lanes);
  rmSync(build, { recursive: true, force: true });
  console.log(`package-targets: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

async function packageTarget(target, build, outDir, name) {
  const stage = path.join(outDir, `.stage-${name.replace(/\.vsix$/, '')}`);
  const vsix = path.join(outDir, name);
  rmSync(stage, { recursive: true, force: true });
  rmSync(vsix, { force: true });
  for (const entry of packagedRoots()) {
    cpSync(path.join(root, entry), path.join(stage, entry), {
      recursive: true,
      filter: (src) => !/(^|[/\\])(__pycache__|[^/\\]*\.egg-info)$/.test(src),
    });
  }
  cpSync(path.join(root, '.vscodeignore'), path.join(stage, '.vscodeignore'));
  // bin/napi-v<N>/<os>/<arch>/: only the folder of this target goes into its stage.
  const bindings = path.join(build, 'dist', 'node_modules', 'onnxruntime-node', 'bin');
  const otherBinding = (src) => {
    const [napi, os, arch] = path.relative(bindings, src).split(path.sep);
    return !napi.startsWith('..') && arch !== undefined && target !== undefined && `${os}-${arch}` !== target;
  };
  cpSync(path.join(build, 'dist'), path.join(stage, 'dist'), { recursive: true, filter: (src) => !otherBinding(src) });
  if (target && !hasBinding(bindings, target)) {
    const version = JSON.parse(readFileSync(path.join(root, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')).version;
    console.warn(`package-targets: onnxruntime-node ${version} ships no binding for ${target}: its package runs everything but Try Encoder and Compare latencies`);
  }
  const vsce = path.join(root, 'node_modules', '@vscode', 'vsce', 'vsce');
  const targetArgs = target ? ['--target', target] : [];
  await run(process.execPath, [vsce, 'package', '--no-dependencies', ...targetArgs, '--out', vsix], { cwd: stage, quiet: true });
  rmSync(stage, { recursive: true, force: true });
  const shown = path.relative(root, vsix).startsWith('..') ? vsix : path.relative(root, vsix);
  console.log(`package-targets: ${shown} (${(statSync(vsix).size / 1e6).toFixed(1)} MB, ${target ?? 'any platform'})`);
}

/**
 * The top-level files and folders that .vscodeignore lets into the package, read from its "!" lines, so the
 * stage and the plain package agree on what ships; dist/ is built into the stage instead.
 */
function packagedRoots() {
  const roots = new Set();
  for (const line of readFileSync(path.join(root, '.vscodeignore'), 'utf8').split('\n')) {
    if (!line.startsWith('!')) continue;
    const literal = [];
    for (const segment of line.slice(1).trim().split('/')) {
      if (/[*?[\]{}]/.test(segment)) break;
      literal.push(segment);
    }
    if (literal.length && literal[0] !== 'dist') roots.add(literal.join('/'));
  }
  return [...roots];
}

function hasBinding(bindings, target) {
  const [os, arch] = target.split('-');
  return existsSync(bindings) && readdirSync(bindings).some((napi) => existsSync(path.join(bindings, napi, os, arch, 'onnxruntime_binding.node')));
}

function run(command, args, { cwd, env = process.env, quiet = false }) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', quiet ? 'pipe' : 'inherit', 'pipe'] });
    let output = '';
    child.stdout?.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => {
      output += d;
      if (!quiet) process.stderr.write(d);
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`package-targets: ${path.basename(args[0])} ${args.slice(1).join(' ')} failed (exit ${code}) in ${cwd}:\n${output.slice(-4000)}`)),
    );
  });
}

function fail(message) {
  console.error(message);
  process.exit(2);
}
