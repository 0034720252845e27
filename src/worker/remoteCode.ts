import { createHash } from 'node:crypto';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import * as path from 'node:path';
import type { StateStore } from './ownProcesses';

/**
 * Whether the worker may run a model folder's own Python code (transformers' trust_remote_code). That is
 * the user's decision, made in a dialog that names the folder and its .py files, and remembered per folder
 * and per content hash in the extension's own state. It is never data: a `trustRemoteCode: true` in a
 * tasks.json recipe, a run.json, a spec file or a merged model's l3prune_encoder.json is dropped. Only a
 * folder whose config.json (or tokenizer_config.json) has an `auto_map` can make transformers import its
 * code, so only such a folder is asked about; for any other the flag is never passed.
 */

export const TRUSTED_CODE_KEY = 'l3prune.trustedModelCode';
/** The files that decide what code runs: any .py the auto_map may name, and the configs that name it. */
const CONFIG_FILES = ['config.json', 'tokenizer_config.json'];
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** Bounds on what is hashed: a model folder's code is a few files of a few hundred KB. */
const MAX_CODE_FILES = 500;
const MAX_CODE_BYTES = 64 * 1024 * 1024;
const MAX_DEPTH = 3;

export interface CodeReview {
  /** The folder, links resolved: consent is for the folder itself, whatever path named it. */
  folder: string;
  /** An auto_map in its config: transformers would import the folder's code. */
  wantsCode: boolean;
  /** Its .py files, relative, sorted. */
  pyFiles: string[];
  /** sha256 over the names and bytes of those files and of the config files. */
  hash: string;
}

export class CodeReviewError extends Error {}

async function readSmallJson(file: string): Promise<unknown> {
  try {
    const info = await stat(file);
    if (!info.isFile() || info.size > MAX_CONFIG_BYTES) return undefined;
    return JSON.parse(await readFile(file, 'utf8'));
  } catch {
    return undefined;
  }
}

const hasAutoMap = (config: unknown): boolean => {
  if (!config || typeof config !== 'object' || Array.isArray(config)) return false;
  const autoMap = (config as { auto_map?: unknown }).auto_map;
  return autoMap !== undefined && autoMap !== null && autoMap !== false && !(typeof autoMap === 'object' && Object.keys(autoMap).length === 0);
};

/** The .py files under `folder` (not through linked folders, a few levels deep). */
async function pythonFiles(folder: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, rel: string, depth: number) => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const name = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (depth > 0 && entry.name !== '.git' && entry.name !== 'node_modules') await walk(path.join(dir, entry.name), name, depth - 1);
      } else if (entry.name.endsWith('.py') && (entry.isFile() || entry.isSymbolicLink())) {
        found.push(name);
        if (found.length > MAX_CODE_FILES) throw new CodeReviewError(`${folder} holds more than ${MAX_CODE_FILES} Python files; L³Prune does not offer to run that much code`);
      }
    }
  };
  await walk(folder, '', MAX_DEPTH);
  return found.sort();
}

/** What a model folder would run, and the hash its consent is bound to. */
export async function reviewModelCode(folder: string): Promise<CodeReview> {
  let real: string;
  try {
    real = await realpath(folder);
  } catch {
    real = path.resolve(folder);
  }
  const configs = await Promise.all(CONFIG_FILES.map((name) => readSmallJson(path.join(real, name))));
  const wantsCode = configs.some(hasAutoMap);
  if (!wantsCode) return { folder: real, wantsCode, pyFiles: [], hash: '' };
  const pyFiles = await pythonFiles(real);
  const hash = createHash('sha256');
  let total = 0;
  for (const name of [...CONFIG_FILES, ...pyFiles]) {
    const file = path.join(real, name);
    let bytes: Buffer;
    try {
      // A .py that is a link is hashed as what it points to: that is what Python would import.
      const info = await stat(file);
      if (!info.isFile()) continue;
      total += info.size;
      if (total > MAX_CODE_BYTES) throw new CodeReviewError(`the code of ${real} is over ${MAX_CODE_BYTES / 1024 / 1024} MB; L³Prune does not offer to run it`);
      bytes = await readFile(file);
    } catch (e) {
      if (e instanceof CodeReviewError) throw e;
      // A missing config (no tokenizer_config.json) is part of the content too: absent, not empty.
      hash.update(`${name}\0absent\0`);
      continue;
    }
    hash.update(`${name}\0${bytes.length}\0`);
    hash.update(bytes);
  }
  return { folder: real, wantsCode, pyFiles, hash: hash.digest('hex') };
}

/** Folder → hash of the code the user agreed to run. */
export type TrustRecord = Record<string, string>;

export function isTrusted(record: unknown, review: CodeReview): boolean {
  if (!review.wantsCode) return false;
  return !!record && typeof record === 'object' && (record as TrustRecord)[review.folder] === review.hash;
}

/**
 * `trusted`: every folder that wants code has the user's consent for exactly its current code, so pass
 * `--trust-remote-code`. `none`: no folder wants code, so pass nothing. `refused`: the user said no (or the
 * code could not be reviewed), so start nothing.
 */
export type TrustDecision = 'none' | 'trusted' | 'refused';

/** Asks the user about one folder; true only for an explicit yes. */
export type AskConsent = (review: CodeReview) => Promise<boolean>;

export class RemoteCodeConsent {
  constructor(
    private readonly state: StateStore,
    private readonly ask: AskConsent,
    private readonly log: (line: string) => void = () => undefined,
  ) {}

  /** The decision for a worker that may load any of `folders` (a model, a train run's merged model/). */
  async decide(folders: readonly (string | undefined)[]): Promise<TrustDecision> {
    let decision: TrustDecision = 'none';
    const seen = new Set<string>();
    for (const folder of folders) {
      if (!folder) continue;
      let review: CodeReview;
      try {
        review = await reviewModelCode(folder);
      } catch (e) {
        this.log(`not running the code of ${folder}: ${(e as Error).message}`);
        return 'refused';
      }
      if (!review.wantsCode || seen.has(review.folder)) continue;
      seen.add(review.folder);
      const record = this.state.get<TrustRecord>(TRUSTED_CODE_KEY) ?? {};
      if (!isTrusted(record, review)) {
        if (!(await this.ask(review))) {
          this.log(`the user did not allow the code of ${review.folder}`);
          return 'refused';
        }
        await this.state.update(TRUSTED_CODE_KEY, { ...(typeof record === 'object' && record ? record : {}), [review.folder]: review.hash });
        this.log(`the user allowed the code of ${review.folder} (sha256 ${review.hash.slice(0, 12)}…)`);
      }
      decision = 'trusted';
    }
    return decision;
  }
}

/** The worker flag for a decision; `refused` has none, since nothing is started. */
export const trustArgs = (decision: TrustDecision): string[] => (decision === 'trusted' ? ['--trust-remote-code'] : []);
