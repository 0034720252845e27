import * as vscode from 'vscode';
import { registerCommands } from './commands';
import { ModelsTreeProvider, type ModelsNode } from './views/modelsTree';
import { ModelRegistry } from './workspace/modelRegistry';

/** Composition root: build the services, register views and commands, nothing else. */
export function activate(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel('L³Prune', { log: true });
  const registry = new ModelRegistry(context.workspaceState);
  const modelsTree = new ModelsTreeProvider(registry);
  const modelsView = vscode.window.createTreeView<ModelsNode>('l3prune.models', {
    treeDataProvider: modelsTree,
    showCollapseAll: true,
  });
  context.subscriptions.push(
    log,
    registry,
    modelsTree,
    modelsView,
    ...registerCommands({ extensionUri: context.extensionUri, registry, modelsView, log }),
  );
  void registry.restore();
}

export function deactivate(): void {}
