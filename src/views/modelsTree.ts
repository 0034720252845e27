import { stat } from 'node:fs/promises';
import * as vscode from 'vscode';
import { cachedRepoOf, hubCacheDir, listCachedModels, type CachedModel } from '../model/hfCache';
import { formatBytes, formatParams } from '../shared/format/units';
import type { LayerStack, ParamGroup, TensorSummary } from '../shared/model/stack';
import { planKeep } from '../shared/prune/plan';
import type { InitialLossView } from '../shared/protocol/layerStackMessages';
import type { AnalysisStore } from '../workspace/analyses';
import type { ModelRegistry, OpenedModel } from '../workspace/modelRegistry';
import { escapeMarkdown, untrustedMarkdown } from './untrustedMarkdown';

export type ModelsNode =
  | { kind: 'model'; model: OpenedModel }
  | { kind: 'cut'; modelPath: string; variant: 'small' | 'large'; stack: LayerStack; analysis: InitialLossView }
  | { kind: 'group'; modelPath: string; label: string; group: ParamGroup; layerIndex?: number }
  | { kind: 'hfCache'; cacheDir: string }
  | { kind: 'hfModel'; cacheDir: string; model: CachedModel }
  | { kind: 'hfNote'; cacheDir: string; label: string };

/** A listing of the cache is reused this long: the tree asks again on every change of the opened models. */
const CACHE_LISTING_MS = 10_000;

/**
 * Models tree: each opened model, then its embedding, layers, final norm, head and anything unmatched; last,
 * when the user has a Hugging Face hub cache, a group listing its models (read only when it is expanded).
 */
export class ModelsTreeProvider implements vscode.TreeDataProvider<ModelsNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<ModelsNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly subscriptions: vscode.Disposable[];
  private listing?: { cacheDir: string; at: number; models: Promise<CachedModel[]> };

  constructor(
    private readonly registry: ModelRegistry,
    private readonly analyses: AnalysisStore,
    private readonly cacheDir: () => string = () => hubCacheDir(),
  ) {
    this.subscriptions = [
      // A model just opened may have just been downloaded into the cache: its group is listed afresh.
      registry.onDidChange(() => {
        this.listing = undefined;
        this.changed.fire(undefined);
      }),
      analyses.onDidChange(() => this.changed.fire(undefined)),
    ];
  }

  async getChildren(node?: ModelsNode): Promise<ModelsNode[]> {
    if (!node) {
      const opened: ModelsNode[] = this.registry.list().map((model) => ({ kind: 'model', model }));
      const cacheDir = this.cacheDir();
      return (await isFolder(cacheDir)) ? [...opened, { kind: 'hfCache', cacheDir }] : opened;
    }
    if (node.kind === 'hfCache') return this.cachedModels(node.cacheDir);
    if (node.kind !== 'model' || node.model.state !== 'ready') return [];
    const { stack } = node.model;
    const analysis = this.analyses.get(stack.path);
    const cuts: ModelsNode[] =
      analysis && analysis.losses.length === stack.layers.length
        ? (['small', 'large'] as const).map((variant) => ({ kind: 'cut', modelPath: stack.path, variant, stack, analysis }))
        : [];
    return [...cuts, ...stackGroups(stack)];
  }

  getParent(node: ModelsNode): ModelsNode | undefined {
    if (node.kind === 'model' || node.kind === 'hfCache') return undefined;
    if (node.kind === 'hfModel' || node.kind === 'hfNote') return { kind: 'hfCache', cacheDir: node.cacheDir };
    const model = this.registry.get(node.modelPath);
    return model ? { kind: 'model', model } : undefined;
  }

  getTreeItem(node: ModelsNode): vscode.TreeItem {
    if (node.kind === 'model') return modelItem(node.model);
    if (node.kind === 'cut') return cutItem(node);
    if (node.kind === 'hfCache') return cacheGroupItem(node.cacheDir);
    if (node.kind === 'hfModel') return cachedModelItem(node.model);
    if (node.kind === 'hfNote') return new vscode.TreeItem(node.label, vscode.TreeItemCollapsibleState.None);
    return groupItem(node);
  }

  private async cachedModels(cacheDir: string): Promise<ModelsNode[]> {
    const now = Date.now();
    if (!this.listing || this.listing.cacheDir !== cacheDir || now - this.listing.at > CACHE_LISTING_MS) {
      this.listing = { cacheDir, at: now, models: listCachedModels(cacheDir) };
    }
    const models = await this.listing.models;
    if (!models.length) return [{ kind: 'hfNote', cacheDir, label: 'No models in the cache yet (hf download org/name adds one)' }];
    return models.map((model) => ({ kind: 'hfModel', cacheDir, model }));
  }

  dispose(): void {
    this.subscriptions.forEach((d) => d.dispose());
    this.changed.dispose();
  }
}

function stackGroups(stack: LayerStack): ModelsNode[] {
  const modelPath = stack.path;
  const nodes: ModelsNode[] = [{ kind: 'group', modelPath, label: 'Embedding', group: stack.embedding }];
  for (const layer of stack.layers) {
    nodes.push({ kind: 'group', modelPath, label: `Layer ${layer.index}`, group: layer, layerIndex: layer.index });
  }
  if (stack.finalNorm.tensors.length) nodes.push({ kind: 'group', modelPath, label: 'Final norm', group: stack.finalNorm });
  if (stack.head.tensors.length) nodes.push({ kind: 'group', modelPath, label: 'Head', group: stack.head });
  if (stack.other.tensors.length) nodes.push({ kind: 'group', modelPath, label: 'Other', group: stack.other });
  return nodes;
}

async function isFolder(dir: string): Promise<boolean> {
  try {
    return (await stat(dir)).isDirectory();
  } catch {
    return false;
  }
}

function cacheGroupItem(cacheDir: string): vscode.TreeItem {
  const item = new vscode.TreeItem('Hugging Face cache', vscode.TreeItemCollapsibleState.Collapsed);
  item.id = 'hfCache';
  item.description = cacheDir;
  item.tooltip = untrustedMarkdown(`Models downloaded with huggingface_hub, in ${escapeMarkdown(cacheDir)} ($HF_HUB_CACHE, else $HF_HOME/hub). Open one to read its layer stack.`);
  item.iconPath = new vscode.ThemeIcon('library');
  item.contextValue = 'l3prune.hfCache';
  return item;
}

function cachedModelItem(model: CachedModel): vscode.TreeItem {
  const item = new vscode.TreeItem(model.repoId, vscode.TreeItemCollapsibleState.None);
  item.id = `hfModel:${model.snapshotDir}`;
  const usable = !model.problem && model.hasConfig && model.hasSafetensors;
  const why = model.problem ? 'not read' : !model.hasConfig ? 'no config.json' : !model.hasSafetensors ? 'no safetensors weights' : undefined;
  item.description = [model.refs.length ? model.refs.join(', ') : 'no branch', model.commit.slice(0, 7), formatBytes(model.bytes), why].filter(Boolean).join(' · ');
  // Repo ids, ref names and paths come from folder and file names in the cache: the model's own text.
  const e = escapeMarkdown;
  item.tooltip = untrustedMarkdown(
    [
      `**${e(model.repoId)}** at ${e(model.commit)}${model.refs.length ? ` (${e(model.refs.join(', '))})` : ''}`,
      '',
      e(model.snapshotDir),
      '',
      `${model.files} files, ${formatBytes(model.bytes)} on disk`,
      ...(model.problem ? ['', `⚠ ${e(model.problem)}`] : usable ? [] : ['', `⚠ ${e(why ?? '')}: L³Prune reads config.json and safetensors weights`]),
    ].join('\n'),
  );
  item.iconPath = new vscode.ThemeIcon(model.problem ? 'error' : usable ? 'layers' : 'warning');
  item.contextValue = 'l3prune.hfModel';
  if (!model.problem) item.command = { command: 'l3prune.openModelFolder', title: 'Open Model', arguments: [model.snapshotDir] };
  return item;
}

function modelItem(model: OpenedModel): vscode.TreeItem {
  // A cache snapshot's folder is named by its commit; the repo id says which model it is.
  const label = cachedRepoOf(model.path)?.repoId ?? (model.path.split(/[\\/]/).pop() || model.path);
  const item = new vscode.TreeItem(label, vscode.TreeItemCollapsibleState.Collapsed);
  item.id = `model:${model.path}`;
  item.resourceUri = vscode.Uri.file(model.path);
  if (model.state === 'loading') {
    item.description = 'reading headers…';
    item.iconPath = new vscode.ThemeIcon('loading~spin');
    item.contextValue = 'l3prune.model.loading';
  } else if (model.state === 'failed') {
    item.description = 'cannot be read';
    item.tooltip = model.error;
    item.iconPath = new vscode.ThemeIcon('error', new vscode.ThemeColor('errorForeground'));
    item.contextValue = 'l3prune.model.failed';
    item.collapsibleState = vscode.TreeItemCollapsibleState.None;
  } else {
    const { stack } = model;
    item.description = `${stack.family} · ${stack.numLayers} layers · ${formatParams(stack.totalParams)} params`;
    // The folder name, path and warnings (which quote config.json and tensor names) are the model's own text.
    const e = escapeMarkdown;
    item.tooltip = untrustedMarkdown(
      [
        `**${e(label)}** (${e(stack.source)})`,
        '',
        e(stack.path),
        '',
        `${stack.numLayers} layers, hidden size ${e(String(stack.hiddenSize ?? '?'))}, ${formatParams(stack.totalParams)} params, ${formatBytes(stack.totalBytes)}`,
        ...stack.warnings.map((w) => `- ⚠ ${e(w)}`),
      ].join('\n'),
    );
    item.iconPath = new vscode.ThemeIcon(stack.source === 'onnx' ? 'symbol-interface' : 'layers');
    item.contextValue = 'l3prune.model';
  }
  return item;
}

function cutItem(node: Extract<ModelsNode, { kind: 'cut' }>): vscode.TreeItem {
  const keep = node.variant === 'small' ? node.analysis.small : node.analysis.large;
  const plan = planKeep(node.stack, keep);
  const item = new vscode.TreeItem(`L³Prune ${node.variant} cut: keep ${keep}`, vscode.TreeItemCollapsibleState.None);
  item.id = `cut:${node.modelPath}:${node.variant}`;
  item.description = `${formatParams(plan.params)} params · −${formatBytes(plan.bytesRemoved)} · loss ${node.analysis.losses[keep - 1].toFixed(3)}`;
  item.tooltip = untrustedMarkdown(
    `Initial loss is lowest at depth ${keep} in the ${node.variant === 'small' ? 'lower' : 'upper'} half of the stack.\n\n` +
      `Keeping ${keep} of ${plan.numLayers} layers removes ${(plan.paramsRemovedShare * 100).toFixed(1)}% of the parameters ` +
      `(${formatBytes(plan.bytesRemoved)}), expected layer-stack speed-up ×${plan.expectedSpeedup.toFixed(2)}.`,
  );
  item.iconPath = new vscode.ThemeIcon(node.variant === 'small' ? 'fold-down' : 'fold');
  item.contextValue = `l3prune.cut.${node.variant}`;
  item.command = {
    command: node.variant === 'small' ? 'l3prune.pruneAtSmallCut' : 'l3prune.pruneAtLargeCut',
    title: 'Prune at this cut',
    arguments: [node.modelPath],
  };
  return item;
}

const MAX_TOOLTIP_TENSORS = 40;

function groupItem(node: Extract<ModelsNode, { kind: 'group' }>): vscode.TreeItem {
  const item = new vscode.TreeItem(node.label, vscode.TreeItemCollapsibleState.None);
  item.id = `group:${node.modelPath}:${node.label}`;
  item.description = `${formatParams(node.group.params)} params · ${formatBytes(node.group.bytes)}`;
  item.tooltip = untrustedMarkdown(tensorTable(node.group.tensors));
  item.iconPath = new vscode.ThemeIcon(node.layerIndex !== undefined ? 'symbol-field' : node.label === 'Other' ? 'question' : 'symbol-constant');
  item.contextValue = 'l3prune.group';
  return item;
}

/**
 * A tensor name from a safetensors header, as a code span: nothing renders inside one, and with backticks,
 * pipes and line breaks removed it can neither close the span nor the table cell.
 */
export function tensorName(name: string): string {
  return `\`${String(name).replace(/[|`\r\n\u2028\u2029]/g, '')}\``;
}

function tensorTable(tensors: TensorSummary[]): string {
  if (!tensors.length) return 'no tensors';
  const rows = tensors
    .slice(0, MAX_TOOLTIP_TENSORS)
    .map((t) => `| ${tensorName(t.name)} | ${escapeMarkdown(String(t.dtype))} | ${t.shape.join('×') || 'scalar'} | ${formatParams(t.params)} |`);
  const more = tensors.length > MAX_TOOLTIP_TENSORS ? `\n\n…and ${tensors.length - MAX_TOOLTIP_TENSORS} more` : '';
  return `| tensor | dtype | shape | params |\n|---|---|---|---|\n${rows.join('\n')}${more}`;
}
