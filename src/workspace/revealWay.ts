import * as path from 'node:path';

/**
 * How to show a file or folder to the user. `revealFileInOS` exists only in a local desktop window (not in
 * code-server, a browser, or Remote-SSH, where the OS that would open is not the one holding the file); the
 * Explorer can reveal only what lies in a workspace folder; anything else is offered as a path to copy.
 * Free of vscode so plain mocha can test it.
 */
export type RevealWay = 'os' | 'explorer' | 'offer';

export function revealWay(target: string, workspaceFolders: readonly string[], localDesktop: boolean): RevealWay {
  if (localDesktop) return 'os';
  return workspaceFolders.some((folder) => isInside(target, folder)) ? 'explorer' : 'offer';
}

/** `target` is `folder` or lies below it (not a sibling that merely shares the prefix, /a/bc under /a/b). */
export function isInside(target: string, folder: string): boolean {
  const rel = path.relative(path.resolve(folder), path.resolve(target));
  // A name that merely starts with two dots (/a/..b) is inside; only a `..` segment climbs out.
  return !(rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel));
}
