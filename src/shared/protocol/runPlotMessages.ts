import { firstMatch, isBoolean, isFiniteNumber, isMessage, isOneOf, isString, type Check } from './validate';

/** The run-plot contract shared by the sidebar view and the run page (src/views) and their page (webview/runPlot). */
export interface PlotRun {
  id: string;
  label: string;
  status: string;
  step: number[];
  loss: number[];
  elapsedMs: number[];
  /** Per point, null where the step event had no such field (older workers). */
  learningRate: Array<number | null>;
  tokensPerSecond: Array<number | null>;
  memoryBytes: Array<number | null>;
  /** What memoryBytes measures: "accelerator" or "process RSS" (a CPU run). */
  memoryKind?: string;
}

/** The run page's choices, kept by the host across reopen and window reload. */
export interface RunPagePrefs {
  smoothing: number;
  xAxis: 'step' | 'time';
  /** The raw loss drawn faint behind the smoothed one. */
  raw: boolean;
  learningRate: boolean;
  tokensPerSecond: boolean;
  memory: boolean;
}

export const DEFAULT_RUN_PAGE_PREFS: RunPagePrefs = { smoothing: 0.6, xAxis: 'step', raw: true, learningRate: true, tokensPerSecond: true, memory: true };

/** One line of the run page's summary block: a label and its text (already formatted by the host). */
export type SummaryRow = [string, string];

export type PlotPoints = Pick<PlotRun, 'step' | 'loss' | 'elapsedMs' | 'learningRate' | 'tokensPerSecond' | 'memoryBytes'>;

export type RunPlotToWebview =
  | { type: 'series'; mode: 'compact' | 'full'; runs: PlotRun[]; prefs: RunPagePrefs; summary: SummaryRow[] }
  | ({ type: 'append'; id: string; status: string } & PlotPoints)
  | { type: 'summary'; summary: SummaryRow[] };

export type RunPlotFromWebview = { type: 'ready' } | { type: 'openRun'; id: string } | ({ type: 'prefs' } & RunPagePrefs);

const isSmoothing: Check<number> = (v): v is number => isFiniteNumber(v) && v >= 0 && v <= 0.99;

/** `id` must name a run the page was shown, not any path a compromised page makes up. */
export function parseRunPlotMessage(raw: unknown, shownIds: ReadonlySet<string>): RunPlotFromWebview | undefined {
  const shownId: Check<string> = (v): v is string => isString(v) && shownIds.has(v);
  return firstMatch<RunPlotFromWebview>(raw, [
    isMessage('ready', {}),
    isMessage('openRun', { id: shownId }),
    isMessage('prefs', { smoothing: isSmoothing, xAxis: isOneOf('step', 'time'), raw: isBoolean, learningRate: isBoolean, tokensPerSecond: isBoolean, memory: isBoolean }),
  ]);
}

/** Stored prefs are read back from a Memento another version may have written: anything odd falls back to the default. */
export function prefsFrom(stored: unknown): RunPagePrefs {
  const record = stored && typeof stored === 'object' ? (stored as Record<string, unknown>) : {};
  const prefs = { ...DEFAULT_RUN_PAGE_PREFS };
  for (const key of Object.keys(DEFAULT_RUN_PAGE_PREFS) as Array<keyof RunPagePrefs>) {
    const candidate = { ...prefs, [key]: record[key] ?? prefs[key] };
    if (parseRunPlotMessage({ type: 'prefs', ...candidate }, new Set())) Object.assign(prefs, candidate);
  }
  return prefs;
}
