import * as path from 'node:path';
import * as vscode from 'vscode';
import { PENDING_PRUNE_KEY, registerCommands } from './commands';
import { followWithProgress } from './runs/runCommands';
import { runsRoot } from './runs/runLocation';
import { DEFAULT_MAX_RUNS, RunStore, type RunSummary } from './runs/runStore';
import { TASK_TYPE, TrainTaskProvider, type TrainTaskDeps } from './runs/trainTask';
import type { Services } from './services';
import { LayerStackPanel } from './views/layerStackPanel';
import { ModelsTreeProvider, type ModelsNode } from './views/modelsTree';
import { LossPlotViewProvider, registerRunPanelSerializer, useRunPagePrefs } from './views/runPlots';
import { RunsTreeProvider } from './views/runsTree';
import { RunStatusBar } from './views/runStatusBar';
import { DeviceReports } from './worker/devices';
import { MtebTaskLists } from './worker/mtebTasks';
import { ownProcesses } from './worker/ownProcesses';
import { findPython } from './worker/python';
import { createRemoteCodeConsent } from './worker/remoteCodeDialog';
import { setWorkerHome } from './worker/workerEnv';
import { setWorkerLog } from './worker/workerLog';
import { ensureWorkerPackage } from './worker/workerPackage';
import { AnalysisStore } from './workspace/analyses';
import { GuideContext } from './workspace/guideContext';
import { ModelRegistry } from './workspace/modelRegistry';

let shuttingDown = false;

/** Composition root: build the services, register views, tasks and commands, nothing else. */
export function activate(context: vscode.ExtensionContext): void {
  shuttingDown = false;
  const log = vscode.window.createOutputChannel('L³Prune', { log: true });
  const root = () => runsRoot(context.globalStorageUri);
  // Workers start in a folder of ours, not the workspace (whose own l3prune/ would shadow the package).
  setWorkerHome(path.join(context.globalStorageUri.fsPath, 'worker-home'));
  // Every worker launch and its end are logged where they are spawned (src/worker/workerLog.ts).
  setWorkerLog(log);
  // Which workers this extension launched: its own state, never a workspace file.
  ownProcesses.attach(context.globalState);
  const consent = createRemoteCodeConsent(context.globalState, log);

  const registry = new ModelRegistry(context.workspaceState, configuredModels);
  const analyses = new AnalysisStore(context.workspaceState, root);
  const modelsTree = new ModelsTreeProvider(registry, analyses);
  const modelsView = vscode.window.createTreeView<ModelsNode>('l3prune.models', { treeDataProvider: modelsTree, showCollapseAll: true });

  const store = new RunStore(root, undefined, { maxRuns: () => vscode.workspace.getConfiguration('l3prune').get<number>('maxRuns', DEFAULT_MAX_RUNS) });
  const runsTree = new RunsTreeProvider(store);
  const runsView = vscode.window.createTreeView<RunSummary>('l3prune.runs', { treeDataProvider: runsTree, canSelectMany: true });
  const guide = new GuideContext(registry, analyses, store, context.workspaceState, () => context.workspaceState.get(PENDING_PRUNE_KEY) !== undefined);
  const lossPlot = new LossPlotViewProvider(context.extensionUri, store, (line) => log.warn(line));
  useRunPagePrefs(context.globalState);

  // The task type and the commands launch training alike; a launch is followed in a progress notification.
  const trainTasks: TrainTaskDeps = {
    python: async (resource) => {
      const python = await findPython(resource);
      log.info(`worker interpreter: ${python.executable} (${python.source})`);
      if (!(await ensureWorkerPackage(python.executable, context.extensionUri, log))) {
        throw new Error(`the L³Prune worker is not available in ${python.executable}`);
      }
      return python.executable;
    },
    runsRoot: root,
    store,
    consent,
    log: (line) => log.warn(line),
    onLaunched: (runDir) => followWithProgress(store, runDir),
    isShuttingDown: () => shuttingDown,
    devices: (python) => deviceReports.get(python).catch(() => undefined),
  };
  const deviceReports = new DeviceReports(log);
  // Asked in the background (the layer-stack panel's plan): never an install prompt, only a trusted workspace.
  const devices = async (resource?: vscode.Uri) =>
    vscode.workspace.isTrusted ? deviceReports.get((await findPython(resource)).executable).catch(() => undefined) : undefined;
  const services: Services = {
    extensionUri: context.extensionUri,
    globalStorageUri: context.globalStorageUri,
    workspaceState: context.workspaceState,
    log,
    registry,
    analyses,
    guide,
    store,
    trainTasks,
    consent,
    devices,
    mtebTasks: new MtebTaskLists(log),
    modelsView,
    runsView,
  };

  context.subscriptions.push(
    { dispose: () => (shuttingDown = true) },
    log,
    registry,
    analyses,
    modelsTree,
    modelsView,
    runsTree,
    runsView,
    lossPlot,
    guide,
    new RunStatusBar(store),
    store,
    vscode.window.registerWebviewViewProvider(LossPlotViewProvider.viewId, lossPlot),
    registerRunPanelSerializer(context.extensionUri, store, (line) => log.warn(line)),
    runsView.onDidChangeSelection((e) => lossPlot.select(e.selection)),
    vscode.tasks.registerTaskProvider(TASK_TYPE, new TrainTaskProvider(trainTasks)),
    // An analysis finished or restored while its model's panel is open redraws the curve there.
    analyses.onDidChange((model) => {
      const entry = registry.get(model);
      if (entry?.state === 'ready') LayerStackPanel.forModel(model)?.update(entry.stack, analyses.get(model));
    }),
    ...registerCommands(services),
  );
  void registry.restore();
  void analyses.restore();
  // Reattach: runs still alive after a reload are found by pid and heartbeat on the first refresh.
  store.start();
}

export function deactivate(): void {
  // A window closing or reloading must not cancel detached training runs through their task terminals.
  shuttingDown = true;
}

/** Models a team lists in settings (`l3prune.models`), relative paths taken from the workspace folder. */
function configuredModels(): string[] {
  const listed = vscode.workspace.getConfiguration('l3prune').get<unknown>('models');
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  if (!Array.isArray(listed)) return [];
  return listed.filter((p): p is string => typeof p === 'string' && p.trim() !== '').map((p) => (folder ? path.resolve(folder, p) : path.resolve(p)));
}
