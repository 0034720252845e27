import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Services } from '../services';
import { formatBytes } from '../shared/format/units';
import { isEncoded, isStExported, type EncodedEvent, type RunEvent, type StExportedEvent } from '../shared/protocol/workerEvents';
import { newRunDir, runsRoot } from '../runs/runLocation';
import { WorkspaceNotTrustedError } from '../worker/python';
import { refusedCode } from '../worker/remoteCodeDialog';
import { runWorkerVerb, type Cancellation, type VerbOutcome } from '../worker/workerVerb';
import { runWithProgress } from '../worker/workerProgress';
import { notifyFinished } from '../workspace/nextStepsHost';
import { revealPath } from '../views/reveal';
import { chooseVariant, workerPython } from './variantCommands';
import { variantArgs, variantModelFolders, type Variant } from './variantRuns';

/**
 * Encoders out of the extension: a variant as a sentence-transformers folder (export-st) and a file of texts
 * embedded into a .npy (encode). Both run the worker verb with progress, in a run folder of their own.
 */

export interface ExportStRequest {
  python: string;
  runDir: string;
  variant: Variant;
  /** The sentence-transformers folder; the worker's default is <run-dir>/sentence-transformers. */
  out?: string;
  trustRemoteCode?: boolean;
  env?: Record<string, string>;
}

export function exportStArgs(request: ExportStRequest): string[] {
  const args = variantArgs(request.variant);
  if (request.out) args.push('--out', request.out);
  if (request.trustRemoteCode) args.push('--trust-remote-code');
  return args;
}

export function runExportSt(request: ExportStRequest, onEvent: (event: RunEvent) => void, cancellation: Cancellation): Promise<VerbOutcome<StExportedEvent>> {
  return runWorkerVerb({ python: request.python, verb: 'export-st', args: exportStArgs(request), runDir: request.runDir, env: request.env }, isStExported, onEvent, cancellation);
}

export interface EncodeRequest {
  python: string;
  runDir: string;
  variant: Variant;
  /** A .jsonl file of {"text", "instruction"?} rows, or a .txt file of one text per line. */
  input: string;
  /** The .npy to write; it must not exist. */
  output: string;
  /** The instruction of every text that has none of its own (queries); absent: documents. */
  instruction?: string;
  trustRemoteCode?: boolean;
  env?: Record<string, string>;
}

export function encodeArgs(request: EncodeRequest): string[] {
  const args = [...variantArgs(request.variant), '--input', request.input, '--output', request.output];
  if (request.instruction) args.push('--instruction', request.instruction);
  if (request.trustRemoteCode) args.push('--trust-remote-code');
  return args;
}

export function runEncode(request: EncodeRequest, onEvent: (event: RunEvent) => void, cancellation: Cancellation): Promise<VerbOutcome<EncodedEvent>> {
  return runWorkerVerb({ python: request.python, verb: 'encode', args: encodeArgs(request), runDir: request.runDir, env: request.env }, isEncoded, onEvent, cancellation);
}

const ST_STAGES: Record<string, string> = {
  reference: 'worker reference embeddings',
  save: 'writing the folder',
  parity: 'parity check in sentence-transformers',
};

function stepOf(event: RunEvent): { done?: number; message?: string } | undefined {
  if (event.event === 'model_loaded') return { message: 'model loaded' };
  if (event.event === 'progress' && typeof event.batch === 'number' && typeof event.batches === 'number' && event.batches > 0) {
    const stage = typeof event.stage === 'string' ? ST_STAGES[event.stage] ?? event.stage : undefined;
    const texts = typeof event.samplesDone === 'number' && typeof event.samples === 'number' ? `${event.samplesDone} of ${event.samples} texts` : undefined;
    return { done: event.batch / event.batches, message: stage ?? texts };
  }
  return undefined;
}

/** Export Sentence-Transformers Folder…: on a trained run of the Runs tree, or a picked variant. */
export async function exportSentenceTransformers(s: Services, arg: unknown): Promise<void> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  const chosen = await chooseVariant(s, arg, 'export');
  if (!chosen) return;
  const python = await workerPython(s, chosen.variant);
  if (!python) return;
  const trust = await s.consent.decide(variantModelFolders(chosen.variant));
  if (trust === 'refused') return refusedCode(chosen.variant.model);
  const runDir = await newRunDir(runsRoot(s.globalStorageUri), 'export-st');
  s.log.info(`export-st ${chosen.label} → ${runDir}`);
  const outcome = await runWithProgress({
    title: `Exporting ${chosen.label} as a sentence-transformers folder`,
    what: 'Sentence-transformers export',
    start: (onEvent, token) => runExportSt({ python, runDir, variant: chosen.variant, trustRemoteCode: trust === 'trusted' }, onEvent, token),
    progressOf: stepOf,
  });
  void s.store.refresh();
  if (!outcome) return;
  const { result } = outcome;
  await notifyFinished(
    { verb: 'export-st', status: 'succeeded', runDir: outcome.runDir },
    `Exported ${chosen.label}: ${formatBytes(result.bytes)}, ${result.numLayers} of ${result.originalNumLayers} layers; sentence-transformers matches ` +
      `the worker to a cosine of at least ${result.parityMinCosine.toFixed(5)} on ${result.parityTexts} texts. Load it with trust_remote_code=True.`,
    [
      { title: 'Reveal Folder', run: () => revealPath(path.join(result.outDir, 'README.md')) },
      { title: 'Open Model Card', run: () => vscode.commands.executeCommand('markdown.showPreview', vscode.Uri.file(path.join(result.outDir, 'README.md'))) },
    ],
  );
}

/** Encode Texts to .npy…: a variant, a .jsonl/.txt file of texts, where to save the embeddings. */
export async function encodeTexts(s: Services, arg: unknown): Promise<void> {
  if (!vscode.workspace.isTrusted) throw new WorkspaceNotTrustedError();
  const chosen = await chooseVariant(s, arg, 'encode with');
  if (!chosen) return;
  const picked = await vscode.window.showOpenDialog({
    title: 'Texts to encode: JSONL of {"text": …, "instruction": …} or one text per line',
    canSelectMany: false,
    filters: { 'Texts (JSONL, plain text)': ['jsonl', 'txt'] },
    defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri,
  });
  const input = picked?.[0];
  if (!input) return;
  const target = await vscode.window.showSaveDialog({
    title: 'Save the embeddings (float32 .npy, one row per text)',
    filters: { 'NumPy array': ['npy'] },
    defaultUri: vscode.Uri.file(input.fsPath.replace(/\.(jsonl|txt)$/i, '') + '.embeddings.npy'),
  });
  if (!target) return;
  const output = target.fsPath.endsWith('.npy') ? target.fsPath : `${target.fsPath}.npy`;
  // The save dialog has already asked whether to replace it; the worker never overwrites.
  await vscode.workspace.fs.delete(vscode.Uri.file(output)).then(undefined, () => undefined);
  const instruction = await vscode.window.showInputBox({
    title: 'Instruction for texts without one (queries); leave empty to embed documents',
    placeHolder: 'e.g. Given a web search query, retrieve relevant passages that answer the query',
  });
  if (instruction === undefined) return;
  const python = await workerPython(s, chosen.variant);
  if (!python) return;
  const trust = await s.consent.decide(variantModelFolders(chosen.variant));
  if (trust === 'refused') return refusedCode(chosen.variant.model);
  const runDir = await newRunDir(runsRoot(s.globalStorageUri), 'encode');
  s.log.info(`encode ${chosen.label} ${input.fsPath} → ${output} (${runDir})`);
  const outcome = await runWithProgress({
    title: `Encoding ${path.basename(input.fsPath)} with ${chosen.label}`,
    what: 'Encoding',
    start: (onEvent, token) =>
      runEncode({ python, runDir, variant: chosen.variant, input: input.fsPath, output, instruction: instruction.trim() || undefined, trustRemoteCode: trust === 'trusted' }, onEvent, token),
    progressOf: stepOf,
  });
  void s.store.refresh();
  if (!outcome) return;
  const { result } = outcome;
  const reveal = 'Reveal File';
  const choice = await vscode.window.showInformationMessage(
    `Encoded ${result.rows} texts into ${path.basename(result.output)} (${result.rows} × ${result.dim} float32` +
      `${result.textsPerSecond ? `, ${result.textsPerSecond.toFixed(1)} texts/s` : ''}).`,
    reveal,
  );
  if (choice === reveal) await revealPath(result.output);
}
