import * as vscode from 'vscode';
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
  | { kind: 'group'; modelPath: string; label: string; group: ParamGroup; layerIndex?: number };

/** Models tree: each opened model, then its embedding, layers, final norm, head and anything unmatched. */
export class ModelsTreeProvider implements vscode.TreeDataProvider<ModelsNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<ModelsNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly subscriptions: vscode.Disposable[];

  constructor(
    private readonly registry: ModelRegistry,
    private readonly analyses: AnalysisStore,
  ) {
    this.subscriptions = [registry.onDidChange(() => this.changed.fire(undefined)), analyses.onDidChange(() => this.changed.fire(undefined))];
  }

  getChildren(node?: ModelsNode): ModelsNode[] {
    if (!node) return this.registry.list().map((model) => ({ kind: 'model', model }));
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
    if (node.kind === 'model') return undefined;
    const model = this.registry.get(node.modelPath);
    return model ? { kind: 'model', model } : undefined;
  }

  getTreeItem(node: ModelsNode): vscode.TreeItem {
    if (node.kind === 'model') return modelItem(node.model);
    if (node.kind === 'cut') return cutItem(node);
    return groupItem(node);
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

function modelItem(model: OpenedModel): vscode.TreeItem {
  const label = model.path.split(/[\\/]/).pop() || model.path;
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
