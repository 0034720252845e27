import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { exportPrecision, type RunSummary } from '../runs/runStore';
import type { Services } from '../services';
import { EncoderThread } from './encoderClient';
import { MANIFEST_FILE } from './manifest';
import { TryEncoderPanel } from './tryEncoderPanel';
import type { ComparisonView } from '../shared/protocol/tryEncoderMessages';

export type TryEncoderServices = Pick<Services, 'extensionUri' | 'store' | 'log'>;

/**
 * L³Prune: Try Encoder. The argument may be an exported folder, a run folder whose export sits in onnx/,
 * a Uri, or a run from the Runs tree; without one the user picks among the runs that have an export or
 * browses for a folder. With texts as a second argument (scripts, tests) it compares them at once and
 * returns the result.
 */
export async function tryEncoder(s: TryEncoderServices, arg?: unknown, texts?: unknown): Promise<ComparisonView | undefined> {
  // Running a model is more than the header reading an untrusted workspace is promised.
  if (!vscode.workspace.isTrusted) throw new Error('This workspace is not trusted, so L³Prune runs no models here; trust the workspace to try an encoder.');
  const folder = encoderFolderFromArg(arg) ?? (await pickEncoderFolder(s));
  if (!folder) return undefined;
  const existing = TryEncoderPanel.forFolder(folder);
  const given = Array.isArray(texts) && texts.every((t) => typeof t === 'string') && texts.length >= 2 ? (texts as string[]) : undefined;
  if (existing && !given) {
    existing.panel.reveal();
    return undefined;
  }
  const { thread, info } = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Loading the encoder in ${folder}` },
    () => EncoderThread.open(folder),
  );
  s.log.info(`try encoder: loaded ${info.folder} (${info.manifest.numLayers} of ${info.manifest.originalNumLayers} layers, inputs ${info.inputNames.join(', ')})`);
  const panel = TryEncoderPanel.show(s.extensionUri, thread, info, (line) => s.log.info(line), given);
  return given ? panel.compare(given) : undefined;
}

/** A folder the user pointed at, taken to its export: the folder itself if it holds the manifest, else its onnx/. */
export function encoderFolderFromArg(arg: unknown): string | undefined {
  let folder: string | undefined;
  if (typeof arg === 'string' && arg.trim()) folder = arg;
  else if (arg instanceof vscode.Uri) {
    if (arg.scheme !== 'file') throw new Error(`${arg.toString()} is not a local folder; Try Encoder loads exported encoders from this machine's disk only.`);
    folder = arg.fsPath;
  } else if (arg && typeof (arg as RunSummary).runDir === 'string') {
    const run = arg as RunSummary;
    return exportIn(run.runDir, exportedTo(run)) ?? path.resolve(run.runDir);
  }
  if (!folder) return undefined;
  // A URL is passed on untouched, for the loader to refuse by name.
  if (/^[a-z][a-z0-9+.-]+:\/\//i.test(folder)) return folder;
  const base = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const absolute = base ? path.resolve(base, folder) : path.resolve(folder);
  return exportIn(absolute) ?? absolute;
}

/** An export-onnx run written with --out elsewhere says where in its result. */
function exportedTo(run: RunSummary): string | undefined {
  const outDir = (run as { exported?: { outDir?: unknown } }).exported?.outDir;
  return typeof outDir === 'string' ? outDir : undefined;
}

function exportIn(folder: string, elsewhere?: string): string | undefined {
  for (const candidate of [folder, path.join(folder, 'onnx'), elsewhere]) {
    if (candidate && existsSync(path.join(candidate, MANIFEST_FILE))) return path.resolve(candidate);
  }
  return undefined;
}

async function pickEncoderFolder(s: TryEncoderServices): Promise<string | undefined> {
  const exported = s.store
    .list()
    .map((run) => ({ run, folder: exportIn(run.runDir, exportedTo(run)) }))
    .filter((x): x is { run: RunSummary; folder: string } => x.folder !== undefined);
  const browse = { label: '$(folder-opened) Browse…', detail: `a folder with ${MANIFEST_FILE}, model.onnx and tokenizer.json`, folder: undefined as string | undefined };
  const items = [
    ...exported.map(({ run, folder }) => ({
      label: path.basename(run.runDir),
      description: [run.model && path.basename(run.model), run.keep && `keep ${run.keep}`, exportPrecision(run) !== 'fp32' && exportPrecision(run)].filter(Boolean).join(' · '),
      detail: folder,
      folder,
    })),
    browse,
  ];
  const picked =
    items.length === 1
      ? browse
      : await vscode.window.showQuickPick(items, { title: 'Try an exported ONNX encoder', placeHolder: 'Runs with an ONNX export, or browse for a folder' });
  if (!picked) return undefined;
  if (picked.folder) return picked.folder;
  const uri = await vscode.window.showOpenDialog({
    canSelectFolders: true,
    canSelectFiles: false,
    canSelectMany: false,
    openLabel: 'Try Encoder',
    title: `Pick an exported encoder folder (${MANIFEST_FILE}, model.onnx, tokenizer.json)`,
  });
  const chosen = uri?.[0];
  if (!chosen) return undefined;
  if (chosen.scheme !== 'file') throw new Error(`${chosen.toString()} is not a local folder; Try Encoder loads exported encoders from this machine's disk only.`);
  return exportIn(chosen.fsPath) ?? chosen.fsPath;
}
