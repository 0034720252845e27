import type * as vscode from 'vscode';
import type { RunStore, RunSummary } from './runs/runStore';
import type { TrainTaskDeps } from './runs/trainTask';
import type { ModelsNode } from './views/modelsTree';
import type { AnalysisStore } from './workspace/analyses';
import type { GuideContext } from './workspace/guideContext';
import type { ModelRegistry } from './workspace/modelRegistry';
import type { RemoteCodeConsent } from './worker/remoteCode';
import type { DevicesReport } from './shared/protocol/generated/devices-report';
import type { MtebTaskLists } from './worker/mtebTasks';

/**
 * What commands, tasks and panels share, built once by extension.ts (the composition root) and handed down;
 * no other module constructs any of it. A feature asks for the part it uses (`Pick<Services, …>`), so its
 * signature says what it depends on and a test can build just that part.
 */
export interface Services {
  extensionUri: vscode.Uri;
  /** Where run folders live when the workspace does not say otherwise (see runs/runLocation). */
  globalStorageUri: vscode.Uri;
  workspaceState: vscode.Memento;
  log: vscode.LogOutputChannel;
  /** Models opened in this workspace, and the initial-loss analyses computed for them. */
  registry: ModelRegistry;
  analyses: AnalysisStore;
  /** The first-use walkthrough's progress, told what no store records (a cut chosen, variants compared). */
  guide: GuideContext;
  /** Every run folder, kept current by polling; its `onDidChange` listeners are disposables. */
  store: RunStore;
  /** What the `l3prune` task type needs to launch and follow a training run. */
  trainTasks: TrainTaskDeps;
  /** The user's answers on running a model folder's own code, asked in a dialog and kept in global state. */
  consent: RemoteCodeConsent;
  /** The worker's devices report (asked once per interpreter and session; undefined untrusted or on failure). */
  devices: (resource?: vscode.Uri) => Promise<DevicesReport | undefined>;
  /** The MTEB tasks each interpreter's mteb knows, with their cache state (asked once per interpreter and session). */
  mtebTasks: MtebTaskLists;
  modelsView: vscode.TreeView<ModelsNode>;
  runsView: vscode.TreeView<RunSummary>;
}

/** The part of the services the run commands (open, cancel, resume, delete, train) use. */
export type RunServices = Pick<Services, 'extensionUri' | 'store' | 'trainTasks' | 'log' | 'devices'>;
