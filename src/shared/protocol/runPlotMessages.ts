import { firstMatch, isMessage, isString, type Check } from './validate';

/** The loss-plot contract shared by the sidebar view and the run panel (src/views) and their page (webview/runPlot). */
export interface PlotRun {
  id: string;
  label: string;
  status: string;
  step: number[];
  loss: number[];
  elapsedMs: number[];
}

export type RunPlotToWebview =
  | { type: 'series'; mode: 'compact' | 'full'; runs: PlotRun[] }
  | { type: 'append'; id: string; step: number[]; loss: number[]; elapsedMs: number[]; status: string };

export type RunPlotFromWebview = { type: 'ready' } | { type: 'openRun'; id: string };

/** `id` must name a run the page was shown, not any path a compromised page makes up. */
export function parseRunPlotMessage(raw: unknown, shownIds: ReadonlySet<string>): RunPlotFromWebview | undefined {
  const shownId: Check<string> = (v): v is string => isString(v) && shownIds.has(v);
  return firstMatch<RunPlotFromWebview>(raw, [isMessage('ready', {}), isMessage('openRun', { id: shownId })]);
}
