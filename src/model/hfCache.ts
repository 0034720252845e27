import { constants } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import * as path from 'node:path';
import { ModelReadError } from './errors';

/**
 * The user's Hugging Face hub cache, read without huggingface_hub: which models it holds, and the snapshot
 * folder a repo id (`org/name`, `org/name@revision`) names, which then opens like any model folder.
 *
 * Layout (huggingface_hub's file_download.py): `models--{org}--{name}/refs/{revision}` holds a commit hash,
 * `snapshots/{commit}/…` are links into `blobs/{hash}`. A cache is input like any other: the repo, blobs/ and
 * snapshot folders must be real folders, refs files a few bytes holding a commit hash, and every file of a
 * snapshot a link to a regular file directly inside its own repo's blobs/ (or a plain file, the layout without
 * symlinks); a snapshot with anything else is refused rather than read, since a model read follows its links.
 * Every listing is bounded, and nothing here reads more than a refs file's first bytes.
 */

export const MAX_REF_BYTES = 256;
const LIMITS = { repos: 2000, snapshotsPerRepo: 100, refsPerRepo: 200, entriesPerSnapshot: 10_000, depth: 8 };
const COMMIT = /^[0-9a-f]{40}$/;
const PART = '[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?';
const REPO_REF = new RegExp(`^(${PART}/${PART})(?:@([\\s\\S]*))?$`);
/** A branch or tag as a path under refs/ ("main", "v1.0", "refs/pr/1"), as huggingface_hub stores it. */
const REF_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*(?:\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/;
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

export interface RepoRef {
  repoId: string;
  /** The branch, tag or commit asked for; `main` when none was. */
  revision: string;
  /** The text named a revision (`@…`). */
  explicit: boolean;
}

export interface CachedModel {
  repoId: string;
  repoDir: string;
  commit: string;
  snapshotDir: string;
  /** The refs (branches, tags) that name this commit, sorted; empty for a snapshot no ref names any more. */
  refs: string[];
  /** Bytes on disk of the distinct blobs this snapshot's files link to (plain files counted as they are). */
  bytes: number;
  files: number;
  hasConfig: boolean;
  hasSafetensors: boolean;
  /** Why the snapshot is not opened (a link out of its blobs, a limit passed); its numbers are then partial. */
  problem?: string;
}

/** Python's os.path.expandvars: `$NAME` and `${NAME}` of set variables replaced, anything else left as it is. */
function expandVars(text: string, env: NodeJS.ProcessEnv): string {
  return text.replace(/\$(\w+|\{[^}]*\})/g, (whole, name: string) => {
    const key = name.startsWith('{') ? name.slice(1, -1) : name;
    return env[key] ?? whole;
  });
}

function expandUser(text: string, home: string): string {
  return text === '~' || text.startsWith('~/') || text.startsWith(`~${path.sep}`) ? path.join(home, text.slice(1)) : text;
}

/**
 * The hub cache folder by huggingface_hub's rules (constants.py): `$HF_HUB_CACHE`, else the legacy
 * `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, with `$HF_HOME` defaulting to `$XDG_CACHE_HOME/huggingface`,
 * itself defaulting to `~/.cache/huggingface`.
 */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  const norm = (p: string) => expandVars(expandUser(p, home), env);
  const hfHome = norm(env.HF_HOME ?? path.join(env.XDG_CACHE_HOME ?? path.join(home, '.cache'), 'huggingface'));
  const hub = norm(env.HF_HUB_CACHE ?? env.HUGGINGFACE_HUB_CACHE ?? path.join(hfHome, 'hub'));
  return path.resolve(hub);
}

export class RepoRefError extends ModelReadError {}

/**
 * The repo id `text` spells, or undefined when it does not look like `org/name[@revision]` (it is then a path).
 * A repo id with a revision that is neither a ref name nor a commit hash is an error.
 */
export function parseRepoRef(text: string): RepoRef | undefined {
  const m = REPO_REF.exec(text);
  if (!m || m[1].includes('--') || m[1].includes('..')) return undefined;
  const revision = m[2];
  if (revision !== undefined && !COMMIT.test(revision) && !isRefName(revision)) {
    throw new RepoRefError(text, 'names a revision that is neither a branch, a tag nor a 40-digit commit hash', `write ${m[1]}@main, ${m[1]}@<tag> or ${m[1]}@<commit>`);
  }
  return { repoId: m[1], revision: revision ?? 'main', explicit: revision !== undefined };
}

const isRefName = (name: string) => name.length <= 128 && REF_NAME.test(name) && !name.includes('..') && !name.endsWith('.lock');
export const repoRefText = (ref: RepoRef) => (ref.explicit ? `${ref.repoId}@${ref.revision}` : ref.repoId);
export const repoFolder = (cacheDir: string, repoId: string) => path.join(cacheDir, `models--${repoId.replace('/', '--')}`);

/** How a user gets a model into the cache, as a shell command. */
export function downloadCommand(ref: RepoRef): string {
  return `hf download ${ref.repoId}${ref.explicit ? ` --revision ${ref.revision}` : ''}`;
}

/** The repo and commit of a path inside a cache snapshot (`…/models--org--name/snapshots/<commit>`), for labels. */
export function cachedRepoOf(folder: string): { repoId: string; commit: string } | undefined {
  const parts = path.resolve(folder).split(path.sep);
  const i = parts.lastIndexOf('snapshots');
  if (i < 1 || i !== parts.length - 2 || !COMMIT.test(parts[i + 1])) return undefined;
  const repo = /^models--(.+)$/.exec(parts[i - 1])?.[1]?.split('--');
  if (!repo || repo.length > 2 || repo.some((p) => !p)) return undefined;
  return { repoId: repo.join('/'), commit: parts[i + 1] };
}

async function isRealDir(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** blobs/ may be missing (a cache written without symlinks keeps plain files in snapshots/), but never a link. */
async function blobsFolderOk(repoDir: string): Promise<boolean> {
  try {
    return (await lstat(path.join(repoDir, 'blobs'))).isDirectory();
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/** A refs file's commit: a regular file (not a link) of at most MAX_REF_BYTES holding 40 hex digits, else undefined. */
async function readRef(file: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | NOFOLLOW | (constants.O_NONBLOCK ?? 0));
  } catch {
    return undefined;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile() || info.size > MAX_REF_BYTES) return undefined;
    const buffer = Buffer.alloc(MAX_REF_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const text = buffer.subarray(0, bytesRead).toString('latin1').trim();
    return COMMIT.test(text) ? text : undefined;
  } finally {
    await handle.close();
  }
}

/** Every ref of a repo (`refs/**`) that holds a commit, by ref name; bounded in count and depth. */
async function readRefs(repoDir: string): Promise<Map<string, string>> {
  const refs = new Map<string, string>();
  const walk = async (dir: string, prefix: string, depth: number): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (refs.size >= LIMITS.refsPerRepo) return;
      const name = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.isDirectory() && depth < 4) await walk(path.join(dir, entry.name), name, depth + 1);
      else if (entry.isFile() && isRefName(name)) {
        const commit = await readRef(path.join(dir, entry.name));
        if (commit) refs.set(name, commit);
      }
    }
  };
  if (await isRealDir(path.join(repoDir, 'refs'))) await walk(path.join(repoDir, 'refs'), '', 0);
  return refs;
}

interface SnapshotFiles {
  bytes: number;
  files: number;
  names: Set<string>;
  problem?: string;
}

/**
 * Walks a snapshot without following anything: each link must name a regular file directly in the repo's
 * blobs/ (two names for one blob count once), each folder must be a real one, within the limits.
 */
async function readSnapshot(repoDir: string, snapshotDir: string): Promise<SnapshotFiles> {
  const blobs = path.join(repoDir, 'blobs');
  const blobSizes = new Map<string, number>();
  const out: SnapshotFiles = { bytes: 0, files: 0, names: new Set() };
  let seen = 0;
  const refuse = (problem: string) => {
    out.problem ??= problem;
  };
  const walk = async (dir: string, rel: string, depth: number): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      return refuse(`${dir} cannot be listed (${(e as NodeJS.ErrnoException).code ?? e})`);
    }
    for (const entry of entries) {
      if (out.problem) return;
      if (++seen > LIMITS.entriesPerSnapshot) return refuse(`it holds more than ${LIMITS.entriesPerSnapshot} files, which is no model`);
      const file = path.join(dir, entry.name);
      const name = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isSymbolicLink()) {
        let target: string;
        try {
          target = path.resolve(dir, await readlink(file));
        } catch {
          return refuse(`${file} is a link that cannot be read`);
        }
        if (path.dirname(target) !== blobs) return refuse(`${file} links to ${target}, outside the cache's blobs of ${path.basename(repoDir)}`);
        let info;
        try {
          info = await lstat(target);
        } catch {
          return refuse(`${file} links to ${target}, which is missing (an interrupted download)`);
        }
        if (!info.isFile()) return refuse(`${file} links to ${target}, which is not a regular file`);
        blobSizes.set(target, info.size);
      } else if (entry.isDirectory()) {
        if (depth >= LIMITS.depth) return refuse(`it nests folders deeper than ${LIMITS.depth}, which is no model`);
        await walk(file, name, depth + 1);
        continue;
      } else if (entry.isFile()) {
        out.bytes += (await lstat(file)).size;
      } else {
        return refuse(`${file} is not a regular file`);
      }
      out.files++;
      out.names.add(name);
    }
  };
  await walk(snapshotDir, '', 0);
  for (const size of blobSizes.values()) out.bytes += size;
  return out;
}

function describe(repoId: string, repoDir: string, commit: string, refs: string[], files: SnapshotFiles): CachedModel {
  const top = [...files.names].filter((n) => !n.includes('/'));
  return {
    repoId,
    repoDir,
    commit,
    snapshotDir: path.join(repoDir, 'snapshots', commit),
    refs: refs.sort(),
    bytes: files.bytes,
    files: files.files,
    hasConfig: top.includes('config.json'),
    hasSafetensors: top.some((n) => n.endsWith('.safetensors') && !n.startsWith('adapter_')) || top.includes('model.safetensors.index.json'),
    problem: files.problem,
  };
}

/** `models--org--name` → `org/name` (`models--gpt2` → `gpt2`); undefined for anything else. */
function repoIdOf(folderName: string): string | undefined {
  const parts = /^models--(.+)$/.exec(folderName)?.[1]?.split('--');
  return parts && parts.length <= 2 && parts.every((p) => p !== '') ? parts.join('/') : undefined;
}

/**
 * Every model snapshot in the cache, one entry per snapshot folder (with the refs that name it), sorted by
 * repo id, named snapshots first. Repos that are links or hold no real snapshots/ are left out.
 */
export async function listCachedModels(cacheDir: string = hubCacheDir()): Promise<CachedModel[]> {
  let entries;
  try {
    entries = await readdir(cacheDir, { withFileTypes: true });
  } catch {
    return [];
  }
  const repos = entries.filter((e) => e.isDirectory() && repoIdOf(e.name) !== undefined).slice(0, LIMITS.repos);
  const models: CachedModel[] = [];
  // A few repos at a time: each is a handful of small reads, and a large cache must not open thousands at once.
  for (let i = 0; i < repos.length; i += 8) {
    const batch = await Promise.all(repos.slice(i, i + 8).map((e) => listRepo(cacheDir, e.name)));
    models.push(...batch.flat());
  }
  return models.sort((a, b) => a.repoId.localeCompare(b.repoId) || Number(!a.refs.length) - Number(!b.refs.length) || a.commit.localeCompare(b.commit));
}

async function listRepo(cacheDir: string, folderName: string): Promise<CachedModel[]> {
  const repoId = repoIdOf(folderName)!;
  const repoDir = path.join(cacheDir, folderName);
  if (!(await isRealDir(path.join(repoDir, 'snapshots')))) return [];
  const blobsOk = await blobsFolderOk(repoDir);
  const refs = await readRefs(repoDir);
  let snapshots;
  try {
    snapshots = (await readdir(path.join(repoDir, 'snapshots'), { withFileTypes: true })).filter((e) => e.isDirectory() && COMMIT.test(e.name));
  } catch {
    return [];
  }
  const out: CachedModel[] = [];
  for (const snapshot of snapshots.slice(0, LIMITS.snapshotsPerRepo)) {
    const names = [...refs].filter(([, commit]) => commit === snapshot.name).map(([name]) => name);
    const files = blobsOk
      ? await readSnapshot(repoDir, path.join(repoDir, 'snapshots', snapshot.name))
      : { bytes: 0, files: 0, names: new Set<string>(), problem: `${path.join(repoDir, 'blobs')} is not a real folder` };
    out.push(describe(repoId, repoDir, snapshot.name, names, files));
  }
  return out;
}

/**
 * The snapshot folder `ref` names in the cache, checked (see above), or undefined when the cache does not hold
 * it. A cache entry that is there but unsafe or unreadable is an error naming what is wrong.
 */
export async function findCachedSnapshot(ref: RepoRef, cacheDir: string = hubCacheDir()): Promise<string | undefined> {
  const repoDir = repoFolder(cacheDir, ref.repoId);
  let info;
  try {
    info = await lstat(repoDir);
  } catch {
    return undefined;
  }
  const remedy = `remove ${repoDir} and download the model again (${downloadCommand(ref)})`;
  if (!info.isDirectory() || !(await isRealDir(path.join(repoDir, 'snapshots'))) || !(await blobsFolderOk(repoDir))) {
    throw new ModelReadError(repoDir, 'is not a real folder holding real snapshots/ and blobs/ folders (a symbolic link or a file), so L³Prune does not read through it', remedy);
  }
  let commit: string | undefined = ref.revision;
  if (!COMMIT.test(ref.revision)) {
    const refFile = path.join(repoDir, 'refs', ...ref.revision.split('/'));
    try {
      await lstat(refFile);
    } catch {
      return undefined;
    }
    commit = await readRef(refFile);
    if (!commit) throw new ModelReadError(refFile, `is not a regular file of at most ${MAX_REF_BYTES} bytes holding a commit hash`, remedy);
  }
  const snapshotDir = path.join(repoDir, 'snapshots', commit);
  if (!(await isRealDir(snapshotDir))) return undefined;
  const files = await readSnapshot(repoDir, snapshotDir);
  if (files.problem) throw new ModelReadError(snapshotDir, `is not read: ${files.problem}`, remedy);
  return snapshotDir;
}

/**
 * What a model argument names: an existing path as it is, else a repo id's checked snapshot folder, else
 * the path (whose reader then says it does not exist). A repo id the cache lacks is an error that names the
 * cache folder searched and how to get the model.
 */
export async function resolveModelTarget(target: string, cacheDir: string = hubCacheDir()): Promise<string> {
  try {
    await lstat(target);
    return target;
  } catch {
    // not a path: perhaps a repo id
  }
  const ref = parseRepoRef(target);
  if (!ref) return target;
  const snapshot = await findCachedSnapshot(ref, cacheDir);
  if (snapshot) return snapshot;
  throw new ModelReadError(
    repoRefText(ref),
    `is neither a model folder nor a model in the Hugging Face cache ${cacheDir}`,
    `get it with \`${downloadCommand(ref)}\` (older huggingface_hub: \`huggingface-cli download ${ref.repoId}${ref.explicit ? ` --revision ${ref.revision}` : ''}\`), or in VS Code with "L3Prune: Open Hugging Face Model…" (the Models view lists the cache), or pass a model folder`,
  );
}
