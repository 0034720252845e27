import type { VariantRow } from '../compare/variants';
import { firstMatch, isArrayOf, isMessage, isOneOf, isString, type Check } from './validate';

/** The Compare Variants panel's contract, shared by the host (src/views/comparePanel) and its page (webview/compare). */
export type CompareToWebview =
  /** `highlight`: the run the panel was opened for (its row is selected). */
  | { type: 'show'; rows: VariantRow[]; highlight?: string }
  | { type: 'exported'; format: ExportFormat; path: string };

export type ExportFormat = 'csv' | 'json';

export type CompareFromWebview =
  | { type: 'ready' }
  /** Show an evaluation's run (its row in the Runs tree and its page). */
  | { type: 'openRun'; id: string }
  /** Show the training run of the trained variant a row scored. */
  | { type: 'openTraining'; id: string }
  /** Evaluate these rows' variants again under their model's reference conditions (the flagged rows). */
  | { type: 'reevaluate'; ids: string[] }
  | { type: 'export'; format: ExportFormat };

/**
 * `id` must be a row the page was shown, never a path a compromised page makes up; the export only names
 * a format, the file is chosen in a save dialog on the host.
 */
export function parseCompareMessage(raw: unknown, shownIds: ReadonlySet<string>): CompareFromWebview | undefined {
  const shownId: Check<string> = (v): v is string => isString(v) && shownIds.has(v);
  return firstMatch<CompareFromWebview>(raw, [
    isMessage('ready', {}),
    isMessage('openRun', { id: shownId }),
    isMessage('openTraining', { id: shownId }),
    (v): v is CompareFromWebview => isMessage('reevaluate', { ids: isArrayOf(shownId, 1000) })(v) && (v as { ids: string[] }).ids.length > 0,
    isMessage('export', { format: isOneOf<ExportFormat>('csv', 'json') }),
  ]);
}
