// One esbuild call per face: the extension host and the CLI (Node, CJS) and each webview (browser, IIFE).
import * as esbuild from 'esbuild';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

const production = process.argv.includes('--production');
// --outdir DIR: build elsewhere than dist/ (scripts/package-targets.mjs stages one folder per platform there).
const outIndex = process.argv.indexOf('--outdir');
const outDir = outIndex > 0 ? process.argv[outIndex + 1] : 'dist';
if (!outDir || outDir.startsWith('--')) throw new Error('build: --outdir needs a folder, e.g. --outdir out/vsix/linux-x64/dist');
const common = { bundle: true, sourcemap: !production, minify: production, logLevel: 'warning' };

await Promise.all([
  esbuild.build({
    ...common,
    entryPoints: { extension: 'src/extension.ts', cli: 'src/cli.ts', encoderThread: 'src/inference/encoderThread.ts' },
    outdir: outDir,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['vscode', 'onnxruntime-node'],
  }),
  esbuild.build({
    ...common,
    entryPoints: { layerStack: 'webview/layerStack/main.ts', runPlot: 'webview/runPlot/main.ts', tryEncoder: 'webview/tryEncoder/main.ts', compare: 'webview/compare/main.ts', dataPreview: 'webview/dataPreview/main.ts', trainForm: 'webview/trainForm/main.ts' },
    outdir: path.join(outDir, 'webview'),
    platform: 'browser',
    format: 'iife',
    target: 'es2022',
  }),
]);

// The plotting library's stylesheet is served from dist, inside the webviews' resource roots.
mkdirSync(path.join(outDir, 'webview'), { recursive: true });
cpSync('node_modules/uplot/dist/uPlot.min.css', path.join(outDir, 'webview', 'uPlot.min.css'));

// onnxruntime-node is a native addon, so it stays external, and `vsce package --no-dependencies` ships no
// node_modules: its runtime JS (and onnxruntime-common's CommonJS build) plus the native binding go to
// dist/node_modules, where require('onnxruntime-node') from dist/*.js finds them. Only the bindings of
// L3PRUNE_ORT_TARGETS (vsce target names, comma-separated, or "all"; default this machine's) are copied:
// linux-x64 is 45 MB unpacked (about 17 MB in the .vsix), all five 204 MB. One .vsix per platform, each with
// only its own binding: `npm run package:all` (scripts/package-targets.mjs).
stageOnnxRuntime(process.env.L3PRUNE_ORT_TARGETS ?? `${process.platform}-${process.arch}`);

function stageOnnxRuntime(targetList) {
  const require = createRequire(import.meta.url);
  const ortRoot = path.dirname(require.resolve('onnxruntime-node/package.json'));
  // onnxruntime-common exports no ./package.json; its CommonJS entry is <root>/dist/cjs/index.js.
  const commonRoot = path.resolve(path.dirname(createRequire(path.join(ortRoot, 'package.json')).resolve('onnxruntime-common')), '..', '..');
  const out = path.join(outDir, 'node_modules');
  rmSync(out, { recursive: true, force: true });
  const ortOut = path.join(out, 'onnxruntime-node');
  const jsOnly = (src) => !/\.(map|d\.ts|ts)$/.test(src);
  cpSync(path.join(ortRoot, 'package.json'), path.join(ortOut, 'package.json'));
  cpSync(path.join(ortRoot, 'dist'), path.join(ortOut, 'dist'), { recursive: true, filter: jsOnly });
  const bindings = path.join(ortRoot, 'bin', 'napi-v6');
  const available = readdirSync(bindings).flatMap((platform) => readdirSync(path.join(bindings, platform)).map((arch) => `${platform}-${arch}`));
  const targets = targetList.trim() === 'all' ? available : targetList.split(',').map((t) => t.trim()).filter(Boolean);
  for (const target of targets) {
    const [platform, arch] = target.split('-');
    const from = path.join(bindings, platform, arch ?? '');
    if (!arch || !existsSync(from)) {
      console.warn(`build: onnxruntime-node ${require(path.join(ortRoot, 'package.json')).version} has no binding for ${target} (it has ${available.join(', ')}); Try Encoder will not run there`);
      continue;
    }
    // Left out: the binding loads @rpath/libonnxruntime.1.dylib, so the versioned copy of that dylib is a
    // duplicate; DirectML's shader compilers (dxcompiler, dxil) are only for the GPU provider, never loaded on CPU.
    const unused = (file) => /^libonnxruntime\.\d+\.\d+\.\d+\.dylib$|^dxcompiler\.dll$|^dxil\.dll$/.test(path.basename(file));
    cpSync(from, path.join(ortOut, 'bin', 'napi-v6', platform, arch), { recursive: true, dereference: true, filter: (file) => !unused(file) });
  }
  const commonOut = path.join(out, 'onnxruntime-common');
  cpSync(path.join(commonRoot, 'package.json'), path.join(commonOut, 'package.json'));
  cpSync(path.join(commonRoot, 'dist', 'cjs'), path.join(commonOut, 'dist', 'cjs'), { recursive: true, filter: jsOnly });
  for (const root of [ortRoot, commonRoot]) {
    for (const notice of ['LICENSE', 'LICENSE.txt', 'ThirdPartyNotices.txt']) {
      if (existsSync(path.join(root, notice))) cpSync(path.join(root, notice), path.join(out, path.basename(root), notice));
    }
  }
}
