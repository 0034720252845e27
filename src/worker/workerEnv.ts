import { existsSync, mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

/**
 * Where and how every Python process of the extension starts. `python -m` and `python -c` put the working
 * directory first on sys.path, so a workspace (or run folder) holding an `l3prune/` or `torch/` folder would
 * replace the installed packages with its own code. The worker therefore starts in a folder of ours (the
 * extension's global storage), and PYTHONSAFEPATH=1 (Python 3.11+) keeps the working directory off sys.path
 * altogether; either alone would do on its own interpreter range.
 */
let home: string | undefined;

/** Set once at activation to a folder under the extension's global storage. */
export function setWorkerHome(dir: string): void {
  home = dir;
}

/** The worker's working directory; without a configured one (tests, the CLI), a private temporary folder. */
export function workerCwd(): string {
  if (!home) {
    // mkdtemp makes it 0700 with an unguessable name: no other user can plant packages in it.
    home = mkdtempSync(path.join(tmpdir(), 'l3prune-worker-'));
  } else {
    mkdirSync(home, { recursive: true });
  }
  return home;
}

/** The environment every worker process gets, over the extension host's own. */
export function workerEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PYTHONUNBUFFERED: '1', HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1', ...extra, PYTHONSAFEPATH: '1' };
}

/**
 * pip's arguments for installing the shipped worker: with `worker/constraints.txt` (pins for every
 * dependency but torch, which stays whatever the user installed for their GPU) when the package has one,
 * so an install resolves to the versions the worker was tested with rather than whatever is newest today.
 */
export function pipInstallArgs(workerFolder: string, exists: (file: string) => boolean = existsSync): string[] {
  const constraints = path.join(workerFolder, 'constraints.txt');
  return ['-m', 'pip', 'install', ...(exists(constraints) ? ['-c', constraints] : []), workerFolder];
}
