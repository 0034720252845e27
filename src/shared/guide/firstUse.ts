/**
 * The first-use walkthrough's progress (package.json's contributes.walkthroughs): each step completes on a
 * context key that is true only once the thing itself exists (an opened model, a succeeded run), so a step
 * started and abandoned stays open. Free of vscode so the rule is testable; src/workspace/guideContext.ts
 * sets the keys.
 */
export const GUIDE_CONTEXT = {
  modelOpen: 'l3prune.guide.modelOpen',
  initialLoss: 'l3prune.guide.initialLoss',
  cutChosen: 'l3prune.guide.cutChosen',
  trained: 'l3prune.guide.trained',
  evaluated: 'l3prune.guide.evaluated',
  compared: 'l3prune.guide.compared',
  exported: 'l3prune.guide.exported',
} as const;

export type GuideStep = keyof typeof GUIDE_CONTEXT;

/** The verbs whose succeeded runs are a trained, an evaluated and an exported variant. */
const VERBS_OF: Partial<Record<GuideStep, readonly string[]>> = {
  trained: ['train'],
  evaluated: ['evaluate'],
  exported: ['export-onnx', 'export-st'],
};

export interface GuideFacts {
  /** Models opened whose headers were read (a model that failed to open does not count). */
  readyModels: number;
  /** Models with an initial-loss curve. */
  analysedModels: number;
  /** A cut was kept for Prune and Finetune (a training run, started at a cut, counts as well). */
  cutChosen: boolean;
  /** The Compare Variants panel was shown with at least one evaluated variant. */
  compared: boolean;
  runs: ReadonlyArray<{ verb: string; status: string }>;
}

export function guideProgress(facts: GuideFacts): Record<GuideStep, boolean> {
  const succeeded = (step: GuideStep) => facts.runs.some((r) => r.status === 'succeeded' && (VERBS_OF[step] ?? []).includes(r.verb));
  return {
    modelOpen: facts.readyModels > 0,
    initialLoss: facts.analysedModels > 0,
    cutChosen: facts.cutChosen || facts.runs.some((r) => r.verb === 'train'),
    trained: succeeded('trained'),
    evaluated: succeeded('evaluated'),
    compared: facts.compared,
    exported: succeeded('exported'),
  };
}
