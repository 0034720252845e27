import * as path from 'node:path';
import * as vscode from 'vscode';
import type { LayerStack } from './model/stack';
import { LayerStackPanel } from './views/layerStackPanel';
import type { ModelsNode } from './views/modelsTree';
import type { ModelRegistry } from './workspace/modelRegistry';

export interface Services {
  extensionUri: vscode.Uri;
  registry: ModelRegistry;
  modelsView: vscode.TreeView<ModelsNode>;
  log: vscode.LogOutputChannel;
}

type Handler = (services: Services, ...args: unknown[]) => unknown;

/** Command ids → handlers, one table; package.json declares the same ids with their titles. */
export const COMMANDS: Record<string, Handler> = {
  'l3prune.openModelFolder': (s, arg) => openModel(s, arg, 'folder'),
  'l3prune.openOnnxModel': (s, arg) => openModel(s, arg, 'onnx'),
  'l3prune.showLayerStack': (s, arg) => showLayerStack(s, arg),
  'l3prune.removeModel': (s, arg) => removeModel(s, arg),
};

export function registerCommands(services: Services): vscode.Disposable[] {
  return Object.entries(COMMANDS).map(([id, handler]) =>
    vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      try {
        return await handler(services, ...args);
      } catch (e) {
        const message = (e as Error).message ?? String(e);
        services.log.error(`${id}: ${message}`);
        void vscode.window.showErrorMessage(message);
        return undefined;
      }
    }),
  );
}

/** A command may get a path, a Uri (explorer, scripts, tests) or a tree node (context menus). */
function pathFromArg(arg: unknown): string | undefined {
  if (typeof arg === 'string' && arg.trim()) return arg;
  if (arg instanceof vscode.Uri) return arg.fsPath;
  const node = arg as ModelsNode | undefined;
  if (node?.kind === 'model') return node.model.path;
  if (node?.kind === 'group') return node.modelPath;
  return undefined;
}

async function openModel(s: Services, arg: unknown, kind: 'folder' | 'onnx'): Promise<LayerStack | undefined> {
  let target = pathFromArg(arg);
  if (!target) {
    const picked = await vscode.window.showOpenDialog({
      canSelectFolders: kind === 'folder',
      canSelectFiles: kind === 'onnx',
      canSelectMany: false,
      openLabel: 'Open Model',
      title: kind === 'folder' ? 'Open a Hugging Face model folder (config.json + safetensors)' : 'Open an ONNX model',
      filters: kind === 'onnx' ? { 'ONNX models': ['onnx'] } : undefined,
    });
    target = picked?.[0]?.fsPath;
    if (!target) return undefined;
  }
  const stack = await s.registry.open(target);
  s.log.info(`opened ${stack.path}: ${stack.family}, ${stack.numLayers} layers, ${stack.totalParams} params`);
  const node = s.registry.get(stack.path);
  if (node) await s.modelsView.reveal({ kind: 'model', model: node }, { expand: true, select: true }).then(undefined, () => undefined);
  for (const warning of stack.warnings) s.log.warn(`${stack.name}: ${warning}`);
  return stack;
}

async function pickModel(s: Services, arg: unknown): Promise<string | undefined> {
  const given = pathFromArg(arg) ?? pathFromArg(s.modelsView.selection[0]);
  if (given) return given;
  const models = s.registry.list();
  if (models.length === 1) return models[0].path;
  if (!models.length) {
    const choice = await vscode.window.showInformationMessage('No model is open yet.', 'Open Model Folder…', 'Open ONNX Model…');
    if (choice === 'Open Model Folder…') return (await openModel(s, undefined, 'folder'))?.path;
    if (choice === 'Open ONNX Model…') return (await openModel(s, undefined, 'onnx'))?.path;
    return undefined;
  }
  const picked = await vscode.window.showQuickPick(
    models.map((m) => ({ label: path.basename(m.path), description: m.path, modelPath: m.path })),
    { title: 'Pick a model' },
  );
  return picked?.modelPath;
}

async function showLayerStack(s: Services, arg: unknown): Promise<void> {
  const modelPath = await pickModel(s, arg);
  if (!modelPath) return;
  const entry = s.registry.get(modelPath);
  const stack = entry?.state === 'ready' ? entry.stack : await s.registry.open(modelPath);
  LayerStackPanel.show(s.extensionUri, stack, { log: (line) => s.log.warn(line) });
}

async function removeModel(s: Services, arg: unknown): Promise<void> {
  const modelPath = await pickModel(s, arg);
  if (!modelPath) return;
  LayerStackPanel.forModel(path.resolve(modelPath))?.dispose();
  await s.registry.remove(modelPath);
}
