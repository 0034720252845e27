import { existsSync } from 'node:fs';
import * as vscode from 'vscode';

export class WorkspaceNotTrustedError extends Error {
  constructor() {
    super('This workspace is not trusted, so L³Prune starts no Python worker here; trust the workspace to run it.');
  }
}

/** The parts of the ms-python extension's API we use (both its current and its legacy shape). */
interface PythonExtensionApi {
  ready?: Promise<void>;
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { path: string };
    resolveEnvironment(env: { path: string }): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
  };
  settings?: { getExecutionDetails(resource?: vscode.Uri): { execCommand?: string[] } };
}

export interface PythonChoice {
  executable: string;
  source: 'setting' | 'python-extension' | 'default';
}

/**
 * Which interpreter runs the worker. An explicit `l3prune.pythonPath` wins (VS Code ignores a workspace's
 * value of it while the workspace is untrusted: it is a restricted setting); then the interpreter selected
 * in the Python extension; then `python3` on PATH. Nothing is resolved in an untrusted workspace at all.
 */
export async function findPython(resource?: vscode.Uri): Promise<PythonChoice> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  const configured = vscode.workspace.getConfiguration('l3prune', resource).get<string>('pythonPath')?.trim();
  if (configured) return { executable: configured, source: 'setting' };
  const fromExtension = await pythonFromExtension(resource);
  if (fromExtension) return { executable: fromExtension, source: 'python-extension' };
  return { executable: 'python3', source: 'default' };
}

async function pythonFromExtension(resource?: vscode.Uri): Promise<string | undefined> {
  const extension = vscode.extensions.getExtension<PythonExtensionApi>('ms-python.python');
  if (!extension) return undefined;
  try {
    const api = extension.isActive ? extension.exports : await extension.activate();
    await api?.ready;
    if (api?.environments) {
      const resolved = await api.environments.resolveEnvironment(api.environments.getActiveEnvironmentPath(resource));
      const executable = resolved?.executable.uri?.fsPath;
      if (executable && existsSync(executable)) return executable;
    }
    return api?.settings?.getExecutionDetails(resource).execCommand?.[0];
  } catch {
    // A broken or still-loading Python extension must not block the worker; fall back to the default.
    return undefined;
  }
}
