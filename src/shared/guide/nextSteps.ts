/**
 * What a finished job offers next, in its closing notification: the one map from "what just ended" to the
 * commands of the step after it, so the training, analysis, evaluation and export notifications cannot drift
 * apart. Free of vscode so the rule is testable; the host turns each step into a button that runs the command
 * with these arguments (src/workspace/nextStepsHost.ts). The ids are package.json's; the unit test holds them
 * to it.
 */
export interface FinishedJob {
  verb: string;
  status: 'succeeded' | 'failed' | 'cancelled';
  runDir: string;
  /** The model folder the job worked on (analyze: the cut is chosen on its layer stack). */
  model?: string;
  /** analyze: the two cuts found. */
  cuts?: { small: number; large: number };
  /** export-onnx: the exported folder (Try Encoder loads it). */
  outDir?: string;
  /** A failed or cancelled training run that can go on from its checkpoint. */
  resumable?: boolean;
}

export interface NextStep {
  /** The button's label. */
  title: string;
  command: string;
  args: unknown[];
}

export function nextSteps(job: FinishedJob): NextStep[] {
  const run = [job.runDir];
  if (job.status !== 'succeeded') {
    const steps: NextStep[] = [];
    if (job.verb === 'train' && job.resumable) steps.push({ title: 'Resume', command: 'l3prune.resumeRun', args: run });
    if (job.status === 'failed') steps.push({ title: 'Reveal Run Folder', command: 'l3prune.revealRun', args: run });
    return steps;
  }
  switch (job.verb) {
    case 'train':
      // The run folder names the trained variant: every one of these commands takes it as its argument. Short
      // labels: a notification shrinks four buttons to fit, and "Export Sentence-Transformers…" would be cut.
      return [
        { title: 'Evaluate…', command: 'l3prune.evaluate', args: run },
        { title: 'Export ONNX…', command: 'l3prune.exportOnnx', args: run },
        { title: 'Export ST…', command: 'l3prune.exportSentenceTransformers', args: run },
        { title: 'Compare', command: 'l3prune.compareVariants', args: run },
      ];
    case 'analyze':
      if (!job.model || !job.cuts) return [];
      // Each moves the panel's slider to its cut and keeps that cut for training, whose form its own toast opens.
      return [
        { title: `Prune at Small Cut (keep ${job.cuts.small})`, command: 'l3prune.pruneAtSmallCut', args: [job.model] },
        { title: `Prune at Large Cut (keep ${job.cuts.large})`, command: 'l3prune.pruneAtLargeCut', args: [job.model] },
      ];
    case 'evaluate':
      return [{ title: 'Compare Variants', command: 'l3prune.compareVariants', args: run }];
    case 'export-onnx':
      return job.outDir ? [{ title: 'Try Encoder', command: 'l3prune.tryEncoder', args: [job.outDir] }] : [];
    default:
      return [];
  }
}
