import * as path from 'node:path';
import * as vscode from 'vscode';
import { pipInstallArgs, workerCwd, workerEnv } from './workerEnv';
import { loadExeca } from './workerProcess';
import { SuccessCache } from './successCache';

/** Interpreters the worker was found in this session (a path's packages rarely vanish while VS Code runs). */
const checked = new SuccessCache();

/**
 * Makes sure the chosen interpreter can run the worker. A missing interpreter gets a pointer to the
 * setting; a missing `l3prune` package gets an offer to install the copy shipped inside the extension
 * into that interpreter (pip, with progress), never a silent install.
 */
export function ensureWorkerPackage(python: string, extensionUri: vscode.Uri, log: vscode.LogOutputChannel): Promise<boolean> {
  return checked.check(python, () => checkWorkerPackage(python, extensionUri, log));
}

async function checkWorkerPackage(python: string, extensionUri: vscode.Uri, log: vscode.LogOutputChannel): Promise<boolean> {
  const { execa } = await loadExeca();
  const started = Date.now();
  // -c puts the working directory first on sys.path, like -m: the probe starts where the worker does.
  const probe = await execa(python, ['-c', 'import l3prune, torch, transformers, safetensors; print(l3prune.__file__)'], {
    reject: false,
    timeout: 120_000,
    cwd: workerCwd(),
    env: workerEnv(),
  });
  log.info(`worker package check in ${python}: ${probe.exitCode === 0 ? 'found' : 'not found'} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  if (probe.exitCode === 0) return true;
  if ((probe as { code?: string }).code === 'ENOENT' || /ENOENT/.test(String(probe.message ?? ''))) {
    const choice = await vscode.window.showErrorMessage(
      `Python interpreter "${python}" was not found. Select one in the Python extension or set l3prune.pythonPath.`,
      'Open Settings',
    );
    if (choice) void vscode.commands.executeCommand('workbench.action.openSettings', 'l3prune.pythonPath');
    return false;
  }
  log.warn(`worker check failed with ${python}: ${String(probe.stderr).slice(-500)}`);
  const install = 'Install Worker';
  const choice = await vscode.window.showWarningMessage(
    `The L³Prune worker (with torch, transformers, peft, safetensors) is not installed in ${python}. Install it there with pip?`,
    { modal: true },
    install,
  );
  if (choice !== install) return false;
  const workerFolder = path.join(extensionUri.fsPath, 'worker');
  const ok = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'Installing the L³Prune worker with pip…', cancellable: false },
    async () => {
      const result = await execa(python, pipInstallArgs(workerFolder), { reject: false, cwd: workerCwd(), env: workerEnv() });
      log.info(String(result.stdout).slice(-2000));
      if (result.exitCode !== 0) log.error(String(result.stderr).slice(-4000));
      return result.exitCode === 0;
    },
  );
  if (!ok) void vscode.window.showErrorMessage('pip could not install the L³Prune worker; see the L³Prune output for its message.');
  return ok;
}
