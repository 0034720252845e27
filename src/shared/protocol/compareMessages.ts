import type { VariantRow } from '../compare/variants';
import { firstMatch, isMessage, isOneOf, isString, type Check } from './validate';

/** The Compare Variants panel's contract, shared by the host (src/views/comparePanel) and its page (webview/compare). */
export type CompareToWebview =
  /** `highlight`: the run the panel was opened for (its row is selected). */
  | { type: 'show'; rows: VariantRow[]; highlight?: string }
  | { type: 'exported'; format: ExportFormat; path: string };

export type ExportFormat = 'csv' | 'json';

export type CompareFromWebview = { type: 'ready' } | { type: 'openRun'; id: string } | { type: 'export'; format: ExportFormat };

/**
 * `id` must be a row the page was shown, never a path a compromised page makes up; the export only names
 * a format, the file is chosen in a save dialog on the host.
 */
export function parseCompareMessage(raw: unknown, shownIds: ReadonlySet<string>): CompareFromWebview | undefined {
  const shownId: Check<string> = (v): v is string => isString(v) && shownIds.has(v);
  return firstMatch<CompareFromWebview>(raw, [
    isMessage('ready', {}),
    isMessage('openRun', { id: shownId }),
    isMessage('export', { format: isOneOf<ExportFormat>('csv', 'json') }),
  ]);
}
