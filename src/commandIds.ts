/**
 * Every command the extension registers, free of the vscode module so plain mocha can load it.
 * package.json's contributes.commands declares the same ids with their titles (test/unit/commandTable.test.ts),
 * and src/commands.ts's handler table is keyed by CommandId, so the three cannot drift apart.
 */
export const COMMAND_IDS = [
  'l3prune.openWalkthrough',
  'l3prune.openModelFolder',
  'l3prune.openOnnxModel',
  'l3prune.openHuggingFaceModel',
  'l3prune.showLayerStack',
  'l3prune.removeModel',
  'l3prune.computeInitialLoss',
  'l3prune.pruneAtSmallCut',
  'l3prune.pruneAtLargeCut',
  'l3prune.pruneAndFinetune',
  'l3prune.openRun',
  'l3prune.compareRuns',
  'l3prune.cancelRun',
  'l3prune.resumeRun',
  'l3prune.deleteRun',
  'l3prune.evaluate',
  'l3prune.exportOnnx',
  'l3prune.exportSentenceTransformers',
  'l3prune.encodeTexts',
  'l3prune.compareVariants',
  'l3prune.revealRun',
  'l3prune.renameRun',
  'l3prune.tryEncoder',
  'l3prune.convertPickleWeights',
  'l3prune.showDevices',
  'l3prune.previewData',
] as const;

export type CommandId = (typeof COMMAND_IDS)[number];
