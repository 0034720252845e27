import * as path from 'node:path';
import * as vscode from 'vscode';
import { registerCommands } from './commands';
import { LayerStackPanel } from './views/layerStackPanel';
import { ModelsTreeProvider, type ModelsNode } from './views/modelsTree';
import { runsRoot } from './runs/runLocation';
import { AnalysisStore } from './workspace/analyses';
import { ModelRegistry } from './workspace/modelRegistry';

/** Composition root: build the services, register views and commands, nothing else. */
export function activate(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel('L³Prune', { log: true });
  const registry = new ModelRegistry(context.workspaceState, configuredModels);
  const analyses = new AnalysisStore(context.workspaceState, () => runsRoot(context.globalStorageUri));
  const modelsTree = new ModelsTreeProvider(registry, analyses);
  const modelsView = vscode.window.createTreeView<ModelsNode>('l3prune.models', {
    treeDataProvider: modelsTree,
    showCollapseAll: true,
  });
  context.subscriptions.push(
    log,
    registry,
    analyses,
    modelsTree,
    modelsView,
    ...registerCommands({
      extensionUri: context.extensionUri,
      globalStorageUri: context.globalStorageUri,
      workspaceState: context.workspaceState,
      registry,
      analyses,
      modelsView,
      log,
    }),
  );
  // An analysis finished or restored while its model's panel is open redraws the curve there.
  context.subscriptions.push(
    analyses.onDidChange((model) => {
      const entry = registry.get(model);
      if (entry?.state === 'ready') LayerStackPanel.forModel(model)?.update(entry.stack, analyses.get(model));
    }),
  );
  void registry.restore();
  void analyses.restore();
}

/** Models a team lists in settings (`l3prune.models`), relative paths taken from the workspace folder. */
function configuredModels(): string[] {
  const listed = vscode.workspace.getConfiguration('l3prune').get<unknown>('models');
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  if (!Array.isArray(listed)) return [];
  return listed.filter((p): p is string => typeof p === 'string' && p.trim() !== '').map((p) => (root ? path.resolve(root, p) : path.resolve(p)));
}

export function deactivate(): void {}
