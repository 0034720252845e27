import * as assert from 'node:assert/strict';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { cachedRepoOf, hubCacheDir, listCachedModels, parseRepoRef, resolveModelTarget } from '../../src/model/hfCache';
import { inspectModel } from '../../src/model/inspect';
import { DownloadRefusedError, downloadLaunch, parseDownloadLine, runModelDownload } from '../../src/worker/modelDownload';
import { DEMO, requireWorkerEnvironment } from '../fixtures/demo';
import { addSnapshot, blobName, COMMIT } from '../fixtures/hubCache';
import { LLAMA3_8B, writeLlamaFolder } from '../fixtures/checkpoints';
import { cli } from '../fixtures/cli';
import { subdir, useTempDir } from '../fixtures/tmp';


/** The demo model's own files as addSnapshot puts them in the cache, and their bytes, read independently. */
function demoFiles(): { names: string[]; bytes: number } {
  const names = readdirSync(DEMO.model).filter((n) => !['.complete', 'SOURCE.txt'].includes(n) && statSync(path.join(DEMO.model, n)).isFile());
  return { names, bytes: names.reduce((sum, n) => sum + statSync(path.join(DEMO.model, n)).size, 0) };
}

function requireDemoModel(context: Mocha.Context): void {
  if (existsSync(path.join(DEMO.model, 'config.json'))) return;
  if (process.env.CI) assert.fail(`missing ${DEMO.model}: run bash scripts/setup.sh`);
  context.skip();
}

/** The CLI reads the cache folder from the environment, as huggingface_hub does. */
function useHubCache(dir: () => string): () => string {
  let saved: string | undefined;
  before(() => {
    saved = process.env.HF_HUB_CACHE;
    process.env.HF_HUB_CACHE = dir();
  });
  after(() => {
    if (saved === undefined) delete process.env.HF_HUB_CACHE;
    else process.env.HF_HUB_CACHE = saved;
  });
  return dir;
}

describe('Hugging Face cache: where it is', () => {
  it('follows huggingface_hub’s rules: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME or ~/.cache', () => {
    const home = '/home/u';
    assert.equal(hubCacheDir({}, home), '/home/u/.cache/huggingface/hub');
    assert.equal(hubCacheDir({ XDG_CACHE_HOME: '/xdg' }, home), '/xdg/huggingface/hub');
    assert.equal(hubCacheDir({ HF_HOME: '~/hf', XDG_CACHE_HOME: '/xdg' }, home), '/home/u/hf/hub');
    assert.equal(hubCacheDir({ HUGGINGFACE_HUB_CACHE: '/legacy', HF_HOME: '/hf' }, home), '/legacy');
    assert.equal(hubCacheDir({ HF_HUB_CACHE: '$DATA/hub', DATA: '/data', HUGGINGFACE_HUB_CACHE: '/legacy' }, home), '/data/hub');
  });

  it('tells a repo id from a path, and refuses a revision that is no branch, tag or commit', () => {
    assert.deepEqual(parseRepoRef('Org/Name'), { repoId: 'Org/Name', revision: 'main', explicit: false });
    assert.deepEqual(parseRepoRef(`Org/Name@${COMMIT}`), { repoId: 'Org/Name', revision: COMMIT, explicit: true });
    assert.equal(parseRepoRef('Org/Name@refs/pr/1')?.revision, 'refs/pr/1');
    for (const p of ['/abs/Org/Name', './Org/Name', 'a/b/c', '~/m', 'Org--x/Name', 'Org/..', 'gpt2', 'Org/Name/']) assert.equal(parseRepoRef(p), undefined, p);
    for (const bad of ['Org/Name@../../etc', 'Org/Name@', 'Org/Name@a b', 'Org/Name@main.lock']) {
      assert.throws(() => parseRepoRef(bad), /neither a branch, a tag nor a 40-digit commit hash/, bad);
    }
  });

  it('names a snapshot folder by its repo id', () => {
    assert.deepEqual(cachedRepoOf(`/c/hub/models--Org--Name/snapshots/${COMMIT}`), { repoId: 'Org/Name', commit: COMMIT });
    assert.deepEqual(cachedRepoOf(`/c/hub/models--gpt2/snapshots/${COMMIT}`), { repoId: 'gpt2', commit: COMMIT });
    assert.equal(cachedRepoOf(`/c/hub/models--Org--Name/snapshots/${COMMIT}/sub`), undefined);
    assert.equal(cachedRepoOf('/models/llama'), undefined);
  });
});

describe('Hugging Face cache: the demo model by repo id', () => {
  const cache = useHubCache(useTempDir('l3prune-hub-'));
  let snapshot = '';
  before(function () {
    requireDemoModel(this);
    snapshot = addSnapshot(cache(), 'HuggingFaceTB/SmolLM2-135M', DEMO.model);
  });

  it('lists it with its ref, commit, size on disk and layer stack', async () => {
    const models = await listCachedModels(cache());
    assert.equal(models.length, 1);
    const [m] = models;
    const files = demoFiles();
    assert.deepEqual(
      [m.repoId, m.refs, m.commit, m.snapshotDir, m.files, m.bytes, m.hasConfig, m.hasSafetensors, m.problem],
      ['HuggingFaceTB/SmolLM2-135M', ['main'], COMMIT, snapshot, files.names.length, files.bytes, true, true, undefined],
    );
    const layers = JSON.parse(readFileSync(path.join(DEMO.model, 'config.json'), 'utf8')).num_hidden_layers;
    const stack = await inspectModel(m.snapshotDir);
    assert.equal(stack.numLayers, layers);
    assert.equal(stack.name, 'HuggingFaceTB/SmolLM2-135M');
  });

  it('inspect ORG/NAME, ORG/NAME@main and ORG/NAME@<commit> give the folder’s stack', async () => {
    const folder = await cli('inspect', DEMO.model, '--json');
    assert.equal(folder.code, 0, folder.stderr);
    const expected = JSON.parse(folder.stdout);
    for (const id of ['HuggingFaceTB/SmolLM2-135M', 'HuggingFaceTB/SmolLM2-135M@main', `HuggingFaceTB/SmolLM2-135M@${COMMIT}`]) {
      const cached = await cli('inspect', id, '--json');
      assert.equal(cached.code, 0, cached.stderr);
      const summary = JSON.parse(cached.stdout);
      assert.equal(summary.path, snapshot, id);
      assert.deepEqual({ ...summary, path: '', files: [] }, { ...expected, path: '', files: [] }, id);
      assert.deepEqual(summary.files, [path.join(snapshot, 'model.safetensors')]);
    }
    const plan = await cli('plan', 'HuggingFaceTB/SmolLM2-135M', '--keep', '10', '--json');
    assert.equal(plan.code, 0, plan.stderr);
    assert.equal(JSON.parse(plan.stdout).keep, 10);
  });

  it('a repo id the cache lacks: exit 1 and one sentence naming the cache folder and how to get it', async () => {
    for (const [id, command] of [
      ['Org/Missing', 'hf download Org/Missing'],
      ['HuggingFaceTB/SmolLM2-135M@v2', 'hf download HuggingFaceTB/SmolLM2-135M --revision v2'],
      [`HuggingFaceTB/SmolLM2-135M@${'f'.repeat(40)}`, `hf download HuggingFaceTB/SmolLM2-135M --revision ${'f'.repeat(40)}`],
    ]) {
      const missing = await cli('inspect', id);
      assert.equal(missing.code, 1, id);
      assert.equal(missing.stdout, '');
      assert.equal(missing.stderr.trimEnd().split('\n').length, 1, missing.stderr);
      assert.ok(missing.stderr.startsWith(`l3prune: ${id}: is neither a model folder nor a model in the Hugging Face cache ${cache()}; `), missing.stderr);
      assert.ok(missing.stderr.includes(`\`${command}\``) && missing.stderr.includes('huggingface-cli download') && missing.stderr.includes('Models view'), missing.stderr);
    }
  });

  it('download-model, as the Open Hugging Face Model command runs it, finds a cached model without the network', async function () {
    this.timeout(120_000);
    requireWorkerEnvironment(this);
    const steps: unknown[] = [];
    const never = { isCancellationRequested: false, onCancellationRequested: () => ({ dispose: () => undefined }) };
    // An offline environment would refuse before starting; the model is cached, so the worker needs no network.
    const saved = { HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE: process.env.TRANSFORMERS_OFFLINE };
    delete process.env.HF_HUB_OFFLINE;
    delete process.env.TRANSFORMERS_OFFLINE;
    let outcome;
    try {
      outcome = await runModelDownload(DEMO.python, parseRepoRef('HuggingFaceTB/SmolLM2-135M@main')!, (step) => steps.push(step), never);
    } finally {
      for (const [key, value] of Object.entries(saved)) if (value !== undefined) process.env[key] = value;
    }
    assert.deepEqual(outcome, { status: 'ready', path: snapshot, downloaded: false });
    assert.deepEqual(steps, [], 'nothing to download');
  });

  it('an existing folder wins over a repo id of the same spelling', async () => {
    const cwd = process.cwd();
    const local = subdir(cache, 'cwd');
    writeLlamaFolder(path.join(local, 'HuggingFaceTB', 'SmolLM2-135M'), LLAMA3_8B, 1);
    process.chdir(local);
    try {
      assert.equal(await resolveModelTarget('HuggingFaceTB/SmolLM2-135M', cache()), 'HuggingFaceTB/SmolLM2-135M');
      assert.equal(JSON.parse((await cli('inspect', 'HuggingFaceTB/SmolLM2-135M', '--json')).stdout).numLayers, 32);
    } finally {
      process.chdir(cwd);
    }
  });
});

describe('Hugging Face cache: what is counted, and what is refused', () => {
  const cache = useHubCache(useTempDir('l3prune-hub-'));
  const source = () => subdir(cache, 'source');
  before(() => writeLlamaFolder(source(), LLAMA3_8B, 2));

  const repo = (id: string) => path.join(cache(), `models--${id.replace('/', '--')}`);

  it('counts each blob a snapshot links to once, and no blob it does not link to', async () => {
    const snapshot = addSnapshot(cache(), 'Org/Counted', source());
    const sizes = readdirSync(source()).map((n) => statSync(path.join(source(), n)).size);
    // A second name for one blob, and a blob of an older revision no snapshot links to.
    symlinkSync(path.relative(snapshot, path.join(repo('Org/Counted'), 'blobs', blobName('config.json', statSync(path.join(source(), 'config.json')).size))), path.join(snapshot, 'config-copy.json'));
    writeFileSync(path.join(repo('Org/Counted'), 'blobs', 'f'.repeat(64)), Buffer.alloc(12345));
    const [m] = (await listCachedModels(cache())).filter((x) => x.repoId === 'Org/Counted');
    assert.equal(m.bytes, sizes.reduce((a, b) => a + b, 0));
    assert.equal(m.files, sizes.length + 1);
    assert.equal((await inspectModel(m.snapshotDir)).numLayers, 32);
  });

  it('refuses a snapshot whose file links outside the cache’s blobs: in the CLI and in the listing', async () => {
    const snapshot = addSnapshot(cache(), 'Org/Hostile', source());
    const outside = path.join(cache(), 'outside.json');
    writeFileSync(outside, JSON.stringify(JSON.parse(readFileSync(path.join(source(), 'config.json'), 'utf8'))));
    unlinkSync(path.join(snapshot, 'config.json'));
    symlinkSync(outside, path.join(snapshot, 'config.json'));
    const refused = await cli('inspect', 'Org/Hostile');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^l3prune: .*models--Org--Hostile\/snapshots\/[0-9a-f]{40}: is not read: .*config\.json links to .*outside\.json, outside the cache's blobs of models--Org--Hostile; remove .* and download the model again/);
    const [listed] = (await listCachedModels(cache())).filter((x) => x.repoId === 'Org/Hostile');
    assert.match(listed.problem ?? '', /outside the cache's blobs/);
    // A link into another repo's blobs is as far outside as any.
    addSnapshot(cache(), 'Org/Other', source(), { refs: [] });
    const otherBlob = path.join(repo('Org/Other'), 'blobs', blobName('config.json', statSync(path.join(source(), 'config.json')).size));
    assert.ok(existsSync(otherBlob));
    unlinkSync(path.join(snapshot, 'config.json'));
    symlinkSync(path.relative(snapshot, otherBlob), path.join(snapshot, 'config.json'));
    assert.match((await cli('inspect', 'Org/Hostile')).stderr, /outside the cache's blobs/);
  });

  it('refuses refs that hold no commit hash, are large, or are links, and a repo folder that is a link', async () => {
    addSnapshot(cache(), 'Org/Refs', source());
    const ref = path.join(repo('Org/Refs'), 'refs', 'main');
    for (const text of ['../../../../etc', 'x'.repeat(100_000), '']) {
      writeFileSync(ref, text);
      const r = await cli('inspect', 'Org/Refs');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /refs\/main: is not a regular file of at most 256 bytes holding a commit hash/);
    }
    unlinkSync(ref);
    symlinkSync(path.join(cache(), 'outside.json'), ref);
    assert.match((await cli('inspect', 'Org/Refs')).stderr, /refs\/main: is not a regular file/);
    const elsewhere = subdir(cache, 'elsewhere');
    addSnapshot(elsewhere, 'Org/Linked', source());
    symlinkSync(repo('Org/Linked').replace(cache(), elsewhere), repo('Org/Linked'));
    const linked = await cli('inspect', 'Org/Linked');
    assert.equal(linked.code, 1);
    assert.match(linked.stderr, /models--Org--Linked: is not a real folder/);
    assert.ok(!(await listCachedModels(cache())).some((m) => m.repoId === 'Org/Linked'), 'a linked repo is not listed');
  });

  it('refuses a blobs/ folder that is a link, and reads a cache written without symlinks (plain files, no blobs/)', async () => {
    const snapshot = addSnapshot(cache(), 'Org/BlobLink', source());
    const moved = path.join(cache(), 'moved-blobs');
    renameSync(path.join(repo('Org/BlobLink'), 'blobs'), moved);
    symlinkSync(moved, path.join(repo('Org/BlobLink'), 'blobs'));
    assert.ok(existsSync(path.join(snapshot, 'config.json')), 'the links still resolve, through the linked folder');
    assert.match((await cli('inspect', 'Org/BlobLink')).stderr, /models--Org--BlobLink: is not a real folder holding real snapshots\/ and blobs\/ folders/);
    const plain = path.join(repo('Org/Plain'), 'snapshots', COMMIT);
    mkdirSync(plain, { recursive: true });
    // Plain files (hard links: the source's shards are sparse, and a copy would write their 16 GB).
    for (const name of readdirSync(source())) linkSync(path.join(source(), name), path.join(plain, name));
    mkdirSync(path.join(repo('Org/Plain'), 'refs'));
    writeFileSync(path.join(repo('Org/Plain'), 'refs', 'main'), COMMIT);
    const [listed] = (await listCachedModels(cache())).filter((x) => x.repoId === 'Org/Plain');
    assert.equal(listed.bytes, readdirSync(source()).reduce((sum, n) => sum + statSync(path.join(source(), n)).size, 0));
    const shown = await cli('inspect', 'Org/Plain', '--json');
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(JSON.parse(shown.stdout).numLayers, 32);
  });

  it('lists snapshots no ref names, and models without weights, as such', async () => {
    mkdirSync(path.join(repo('Org/Bare'), 'snapshots', 'a'.repeat(40)), { recursive: true });
    mkdirSync(path.join(repo('Org/Bare'), 'blobs'), { recursive: true });
    const [bare] = (await listCachedModels(cache())).filter((x) => x.repoId === 'Org/Bare');
    assert.deepEqual([bare.refs, bare.files, bare.bytes, bare.hasConfig, bare.hasSafetensors], [[], 0, 0, false, false]);
  });
});

describe('Hugging Face cache: downloading with consent', () => {
  const ref = { repoId: 'Org/Name', revision: 'v1', explicit: true };

  it('goes online only for the download the user allowed, and never against an offline environment', () => {
    assert.deepEqual(downloadLaunch(ref, {}), {
      verb: 'download-model',
      args: ['--model', 'Org/Name@v1', '--allow-download'],
      env: { HF_HUB_OFFLINE: '0', TRANSFORMERS_OFFLINE: '0' },
    });
    for (const env of [{ HF_HUB_OFFLINE: '1' }, { TRANSFORMERS_OFFLINE: 'yes' }, { HF_HUB_OFFLINE: 'ON', HF_HUB_CACHE: '/c' }]) {
      assert.throws(() => downloadLaunch(ref, env), (e: Error) => e instanceof DownloadRefusedError && /says offline \(HF_HUB_OFFLINE\).*`hf download Org\/Name --revision v1`/.test(e.message));
    }
    assert.doesNotThrow(() => downloadLaunch(ref, { HF_HUB_OFFLINE: '0' }));
  });

  it('reads the worker’s download events and its closing line, and nothing else', () => {
    const time = '2025-01-01T00:00:00.000Z';
    assert.deepEqual(parseDownloadLine(JSON.stringify({ event: 'download', time, repoId: 'Org/Name', revision: 'v1', filesDone: 1, files: 3, bytesDone: 10, bytes: 30, file: 'config.json' })), {
      kind: 'progress', filesDone: 1, files: 3, bytesDone: 10, bytes: 30, file: 'config.json',
    });
    assert.deepEqual(parseDownloadLine(JSON.stringify({ event: 'model_ready', repoId: 'Org/Name', commit: COMMIT, path: '/c/s', downloaded: true })), {
      kind: 'ready', path: '/c/s', repoId: 'Org/Name', commit: COMMIT, downloaded: true,
    });
    for (const line of ['', 'not json', 'null', '[]', JSON.stringify({ event: 'download', filesDone: -1, files: 3, bytesDone: 0, bytes: 1 }), JSON.stringify({ event: 'model_ready', path: '' })]) {
      assert.equal(parseDownloadLine(line), undefined, line);
    }
  });
});
