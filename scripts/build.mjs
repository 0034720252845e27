// One esbuild call per face: the extension host and the CLI (Node, CJS) and each webview (browser, IIFE).
import * as esbuild from 'esbuild';
import { cpSync, mkdirSync } from 'node:fs';

const production = process.argv.includes('--production');
const common = { bundle: true, sourcemap: !production, minify: production, logLevel: 'warning' };

await Promise.all([
  esbuild.build({
    ...common,
    entryPoints: { extension: 'src/extension.ts', cli: 'src/cli.ts' },
    outdir: 'dist',
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['vscode', 'onnxruntime-node'],
  }),
  esbuild.build({
    ...common,
    entryPoints: { layerStack: 'webview/layerStack/main.ts', runPlot: 'webview/runPlot/main.ts' },
    outdir: 'dist/webview',
    platform: 'browser',
    format: 'iife',
    target: 'es2022',
  }),
]);

// The plotting library's stylesheet is served from dist, inside the webviews' resource roots.
mkdirSync('dist/webview', { recursive: true });
cpSync('node_modules/uplot/dist/uPlot.min.css', 'dist/webview/uPlot.min.css');
