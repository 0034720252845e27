import { EVALUATE_DEFAULTS } from '../protocol/generated/defaults';
import type { MtebTasksReport } from '../protocol/generated/mteb-tasks-report';

type MtebTask = MtebTasksReport['tasks'][number];

/** One row of Evaluate…'s task pick: a built-in task, a real MTEB task, or a section heading. */
export interface TaskRow {
  label: string;
  description?: string;
  detail?: string;
  picked: boolean;
  heading?: boolean;
  builtin?: string;
  mteb?: string;
  /** Its data is not in the datasets cache: picking it asks to download. */
  download?: boolean;
}

/** The tasks LLM2Vec (and so the paper) gives an instruction, the worker's default table. */
const WITH_INSTRUCTION = new Set(Object.keys(EVALUATE_DEFAULTS.instructions));

function mtebRow(t: MtebTask, download: boolean): TaskRow {
  const notes = [
    t.cached && !t.cachedRevision ? 'cached at another revision' : undefined,
    t.supersededBy ? `superseded by ${t.supersededBy}` : undefined,
    WITH_INSTRUCTION.has(t.name) ? 'LLM2Vec instruction' : 'no instruction (texts embedded bare)',
  ].filter(Boolean);
  return { label: t.name, description: `${t.type} · ${t.mainScore}`, detail: `${t.dataset} · ${notes.join(' · ')}`, picked: false, mteb: t.name, download };
}

/** Instruction-carrying (the paper's) tasks first, then by type and name. */
const byRelevance = (a: MtebTask, b: MtebTask): number =>
  Number(WITH_INSTRUCTION.has(b.name)) - Number(WITH_INSTRUCTION.has(a.name)) || a.type.localeCompare(b.type) || a.name.localeCompare(b.name);

/**
 * The pick: the five built-in tasks (picked: the default evaluation), then the MTEB tasks whose data is in the
 * datasets cache (they run offline), then, unless the environment says offline, the others (their data is
 * downloaded after a consent dialog). `report` is the worker's list, or why there is none (mteb not installed).
 */
export function taskRows(report: MtebTasksReport | string | undefined, hubOffline: boolean): TaskRow[] {
  const rows: TaskRow[] = [{ label: 'Built-in tasks (local data)', picked: false, heading: true }];
  for (const key of EVALUATE_DEFAULTS.tasks) rows.push({ label: key, description: 'built-in', picked: true, builtin: key });
  if (!report || typeof report === 'string') return rows;
  const cached = report.tasks.filter((t) => t.cached).sort(byRelevance);
  rows.push({ label: `MTEB tasks cached in ${report.datasetsCache} (run offline)`, picked: false, heading: true });
  rows.push(...cached.map((t) => mtebRow(t, false)));
  if (!hubOffline) {
    rows.push({ label: `MTEB tasks to download (mteb ${report.mtebVersion})`, picked: false, heading: true });
    rows.push(...report.tasks.filter((t) => !t.cached).sort(byRelevance).map((t) => mtebRow(t, true)));
  }
  return rows;
}

/** What the picked rows ask the worker for. */
export function chosenTasks(picked: readonly TaskRow[]): { tasks: string[]; mtebTasks: string[]; toDownload: string[] } {
  return {
    tasks: picked.flatMap((r) => (r.builtin ? [r.builtin] : [])),
    mtebTasks: picked.flatMap((r) => (r.mteb ? [r.mteb] : [])),
    toDownload: picked.flatMap((r) => (r.mteb && r.download ? [r.mteb] : [])),
  };
}
