import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import AdmZip from 'adm-zip';
import { readNativeBinary } from '../fixtures/nativeBinary';
import { useTempDir } from '../fixtures/tmp';

const ROOT = path.resolve(__dirname, '..', '..');
/** The platforms VS Code ships for that onnxruntime-node has ever had a binding for (vsce target names). */
const TARGETS = ['linux-x64', 'linux-arm64', 'darwin-arm64', 'darwin-x64', 'win32-x64', 'win32-arm64'];
const FORMAT: Record<string, string> = { linux: 'elf', darwin: 'mach-o', win32: 'pe' };
const ORT = path.join(ROOT, 'node_modules', 'onnxruntime-node');
const BIN = 'extension/dist/node_modules/onnxruntime-node/bin/';
const HOST = `${process.platform}-${process.arch}`;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Package {
  file: string;
  /** Entry name -> sha256 of its bytes; directories left out. */
  entries: Map<string, string>;
  read(name: string): Buffer;
}

function openPackage(file: string): Package {
  // adm-zip (onnxruntime-node's own dependency) reads what vsce's yazl wrote: an independent zip reader.
  const zip = new AdmZip(file);
  const entries = new Map<string, string>();
  // The binaries are kept, once inflated, for the header checks; everything else is small.
  const kept = new Map<string, Buffer>();
  for (const e of zip.getEntries()) {
    if (e.isDirectory) continue;
    const data = e.getData();
    entries.set(e.entryName, sha(data));
    if (e.entryName.startsWith(BIN)) kept.set(e.entryName, data);
  }
  return {
    file,
    entries,
    read: (name) => {
      const data = kept.get(name) ?? zip.getEntry(name)?.getData();
      if (!data) throw new Error(`${path.basename(file)} has no ${name}`);
      return data;
    },
  };
}

/** The folder of onnxruntime-node's npm package that holds the binding for os/arch, if it ships one. */
function npmBindingFolder(os: string, arch: string): string | undefined {
  const bin = path.join(ORT, 'bin');
  for (const napi of existsSync(bin) ? readdirSync(bin) : []) {
    const folder = path.join(bin, napi, os, arch);
    if (existsSync(path.join(folder, 'onnxruntime_binding.node'))) return folder;
  }
  return undefined;
}

const bindingEntries = (p: Package) => [...p.entries.keys()].filter((n) => n.startsWith(BIN));
const targetPlatform = (manifest: string) => /<Identity\b[^>]*\bTargetPlatform="([^"]*)"/.exec(manifest)?.[1];

describe('platform packages (npm run package:all)', function () {
  const dir = useTempDir('l3prune-vsix-');
  const packages = new Map<string, Package>();
  let host: Package;
  // Hashing and parsing 300 MB of binaries on a busy 2-core machine takes seconds, not milliseconds.
  this.timeout(60_000);

  before(async function () {
    // Seven packages from one build, two at a time: 50-90 s on a busy 2-core machine. One command, so that an
    // edit to the sources half-way (other work in the same checkout) cannot make two packages differ.
    this.timeout(600_000);
    const script = path.join(ROOT, 'scripts', 'package-targets.mjs');
    await promisify(execFile)(process.execPath, [script, '--out-dir', dir(), '--host', ...TARGETS], { cwd: ROOT, maxBuffer: 1 << 24 });
    for (const t of TARGETS) packages.set(t, openPackage(path.join(dir(), `l3prune-studio-${t}.vsix`)));
    host = openPackage(path.join(dir(), 'l3prune-studio.vsix'));
  });

  it('writes one package per target, each marked with its target for VS Code and the Marketplace', () => {
    for (const [t, p] of packages) {
      assert.equal(targetPlatform(p.read('extension.vsixmanifest').toString('utf8')), t, path.basename(p.file));
    }
  });

  it('carries onnxruntime-node’s binding for its own OS and CPU only, byte for byte as the npm package ships it', () => {
    for (const [t, p] of packages) {
      const [os, arch] = t.split('-');
      const folder = npmBindingFolder(os, arch);
      const carried = bindingEntries(p);
      const own = new RegExp(`^${BIN}napi-v\\d+/${os}/${arch}/[^/]+$`);
      assert.deepEqual(carried.filter((n) => !own.test(n)), [], `${t} carries another platform's files`);
      if (!folder) {
        // onnxruntime-node 1.24 and later ship no darwin/x64 binding (1.23.2 was the last that did).
        assert.deepEqual(carried, [], `${t}: onnxruntime-node has no binding for it, so the package carries none`);
        continue;
      }
      const names = carried.map((n) => path.posix.basename(n));
      assert.ok(names.includes('onnxruntime_binding.node'), `${t} lacks onnxruntime_binding.node: ${names.join(', ')}`);
      for (const n of carried) {
        assert.equal(p.entries.get(n), sha(readFileSync(path.join(folder, path.posix.basename(n)))), `${t}: ${n} differs from the npm package's`);
      }
    }
  });

  it('every binary it carries is built for its target (ELF, Mach-O or PE, and the CPU in its header)', () => {
    let checked = 0;
    for (const [t, p] of packages) {
      const [os, arch] = t.split('-');
      for (const n of bindingEntries(p)) {
        const binary = readNativeBinary(p.read(n));
        assert.equal(binary.format, FORMAT[os], `${t}: ${n}`);
        assert.deepEqual(binary.machines, [arch], `${t}: ${n}`);
        checked++;
      }
    }
    assert.ok(checked >= 10, `only ${checked} binaries checked`);
  });

  it('carries every library the binding loads that onnxruntime-node ships, however deep', () => {
    for (const [t, p] of packages) {
      const [os, arch] = t.split('-');
      const folder = npmBindingFolder(os, arch);
      if (!folder) continue;
      // Windows finds DLLs by name in any case; the others match names exactly.
      const key = (name: string) => (os === 'win32' ? name.toLowerCase() : name);
      const shipped = new Set(readdirSync(folder).map(key));
      const carried = new Map(bindingEntries(p).map((n) => [key(path.posix.basename(n)), n]));
      const seen = new Set<string>();
      const queue = ['onnxruntime_binding.node'];
      for (let name = queue.shift(); name; name = queue.shift()) {
        if (seen.has(key(name))) continue;
        seen.add(key(name));
        const entry = carried.get(key(name));
        assert.ok(entry, `${t}: ${name} is loaded with the binding but not in the package`);
        // @rpath/libonnxruntime.1.dylib names a file beside the binding; system libraries are not ours to ship.
        queue.push(...readNativeBinary(p.read(entry)).needed.map((n) => path.posix.basename(n)).filter((n) => shipped.has(key(n))));
      }
      assert.ok(seen.size >= 2, `${t}: the binding loads no onnxruntime library (${[...seen].join(', ')})`);
    }
  });

  it('differs from the other packages only in the binding and the target vsce writes', () => {
    const withoutBinding = (p: Package) => [...p.entries.keys()].filter((n) => !n.startsWith(BIN)).sort();
    // [Content_Types].xml lists one type per file extension, so a binding brings its own (.dll, .dylib, .1).
    const contentTypes = (p: Package) => {
      const others = new Set(withoutBinding(p).map((n) => path.posix.extname(n).toLowerCase()));
      return p.read('[Content_Types].xml').toString('utf8').replace(/<Default Extension="([^"]*)"[^>]*\/>/g, (m, ext: string) => (others.has(ext.toLowerCase()) ? m : ''));
    };
    const manifest = (p: Package) => p.read('extension.vsixmanifest').toString('utf8').replace(/ TargetPlatform="[^"]*"/, '');
    const [reference, ...rest] = [...packages.values()];
    const names = withoutBinding(reference);
    assert.ok(names.includes('extension/dist/extension.js') && names.includes('extension/package.json'), names.join(', '));
    for (const p of rest) {
      const label = `${path.basename(p.file)} vs ${path.basename(reference.file)}`;
      assert.deepEqual(withoutBinding(p), names, label);
      for (const n of names) {
        if (n === '[Content_Types].xml' || n === 'extension.vsixmanifest') continue;
        assert.equal(p.entries.get(n), reference.entries.get(n), `${label}: ${n}`);
      }
      assert.equal(manifest(p), manifest(reference), `${label}: extension.vsixmanifest`);
      assert.equal(contentTypes(p), contentTypes(reference), `${label}: [Content_Types].xml`);
    }
  });

  it('--host (npm run package) packages the machine it runs on, the same as that target’s package', function () {
    const own = packages.get(HOST);
    if (!own) this.skip();
    assert.equal(targetPlatform(host.read('extension.vsixmanifest').toString('utf8')), HOST);
    assert.deepEqual([...host.entries].sort(), [...own.entries].sort());
  });
});
