import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { RunSummary } from './runStore';

/**
 * The training data checked in the host before a run is spawned, so a file the worker would refuse is refused
 * here with the same file:line and no run folder is left behind. It mirrors worker/l3prune/datasource.py (its
 * ALIASES are kept in step by test/unit/dataCheck.test.ts, which also asks the worker about the same files).
 * Checked here: existence, the format from the suffix, JSONL lines (JSON objects with a non-empty query, positive
 * and negative string), a CSV header, Parquet's magic bytes, a folder's kind. The worker still reads every row
 * (Parquet's, a datasets folder's) and stays the judge; the host only spares the user a run that cannot start.
 */
export const ALIASES = {
  query: ['query', 'anchor', 'question'],
  positive: ['positive', 'pos'],
  negative: ['negative', 'neg', 'hard_negative'],
} as const;
type Role = keyof typeof ALIASES;
const REQUIRED = Object.keys(ALIASES) as Role[];

/** JSONL lines read at most: enough to catch a wrong file or schema at once; the worker reads the rest. */
export const MAX_CHECKED_LINES = 20_000;

function quote(line: string): string {
  const one = line.trim();
  return one.length > 80 ? `“${one.slice(0, 77)}…”` : `“${one}”`;
}

function columnsOf(keys: string[], explicit: Record<string, string> | null): Record<Role, string> | string {
  const mapping = {} as Record<Role, string>;
  for (const role of REQUIRED) {
    if (explicit?.[role]) {
      mapping[role] = explicit[role];
      continue;
    }
    const lower = new Map(keys.map((k) => [k.toLowerCase(), k]));
    const hit = keys.includes(role) ? role : ALIASES[role].map((a) => lower.get(a)).find((k): k is string => k !== undefined);
    if (!hit) return `no column for the ${role} (looked for ${ALIASES[role].join(', ')}); the columns found are ${keys.map((k) => `'${k}'`).join(', ') || 'none'}`;
    mapping[role] = hit;
  }
  return mapping;
}

/** Undefined when the data can be handed to the worker; else one sentence with the file, the line and what to do. */
export async function checkTrainingData(data: string, columns: Record<string, string> | null = null): Promise<string | undefined> {
  const file = path.resolve(data);
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(file);
  } catch {
    return `${file} does not exist; choose a JSONL, CSV or Parquet file of query/positive/negative triples, a datasets folder or an E5 folder.`;
  }
  if (stat.isDirectory()) {
    const names = await fs.promises.readdir(file).catch(() => [] as string[]);
    if (names.includes('dataset_info.json') || names.includes('state.json') || names.includes('dataset_dict.json') || names.some((n) => n.endsWith('.jsonl'))) return undefined;
    return `${file} is a folder but neither a datasets save_to_disk folder nor an E5 folder of .jsonl files; choose a triples file or such a folder.`;
  }
  if (!stat.isFile()) return `${file} is not a regular file; choose a JSONL, CSV or Parquet file of triples.`;
  const suffix = path.extname(file).toLowerCase();
  if (suffix === '.parquet' || suffix === '.pq') return checkParquet(file);
  if (suffix === '.csv' || suffix === '.tsv') return checkCsvHeader(file, suffix === '.tsv' ? '\t' : ',', columns);
  return checkJsonl(file, columns);
}

async function checkParquet(file: string): Promise<string | undefined> {
  const handle = await fs.promises.open(file, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    if (bytesRead < 4 || head.toString('latin1') !== 'PAR1') return `${file} is not a Parquet file (it does not start with PAR1); choose a .parquet file, or rename the file to its real format (.jsonl, .csv).`;
    return undefined;
  } finally {
    await handle.close();
  }
}

async function firstLine(file: string): Promise<string | undefined> {
  const stream = fs.createReadStream(file, { encoding: 'utf8', end: 1 << 20 });
  const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
  try {
    for await (const line of lines) return line;
    return undefined;
  } finally {
    lines.close();
    stream.destroy();
  }
}

async function checkCsvHeader(file: string, delimiter: string, columns: Record<string, string> | null): Promise<string | undefined> {
  const header = (await firstLine(file))?.replace(/^\uFEFF/, '');
  if (!header?.trim()) return `${file} is empty; a CSV file needs a header row naming its columns (query,positive,negative).`;
  const names = header.split(delimiter).map((h) => h.trim().replace(/^"(.*)"$/, '$1'));
  const mapping = columnsOf(names, columns);
  return typeof mapping === 'string' ? `${file} (header): ${mapping}; rename the header's columns or set Columns.` : undefined;
}

async function checkJsonl(file: string, columns: Record<string, string> | null): Promise<string | undefined> {
  const stream = fs.createReadStream(file, { encoding: 'utf8' });
  const lines = readline.createInterface({ input: stream, crlfDelay: Infinity });
  let lineno = 0;
  let mapping: Record<Role, string> | undefined;
  let any = false;
  const hint = suffixHint(file);
  try {
    for await (const raw of lines) {
      lineno += 1;
      if (lineno > MAX_CHECKED_LINES) break;
      if (raw.includes('\uFFFD')) return `${file}:${lineno}: not valid UTF-8 text; save the file as UTF-8.`;
      const line = raw.trim();
      if (!line) continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        return `${file}:${lineno}: not valid JSON, ${quote(line)}; each line must be one JSON object with query, positive and negative${hint}.`;
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        return `${file}:${lineno}: expected a JSON object with query/positive/negative, got ${quote(line)}${hint}.`;
      }
      const row = value as Record<string, unknown>;
      if (!mapping) {
        const found = columnsOf(Object.keys(row), columns);
        if (typeof found === 'string') return `${file}:${lineno}: ${found}; name the fields query, positive and negative, or set Columns.`;
        mapping = found;
      }
      for (const role of REQUIRED) {
        const column = mapping[role];
        const v = row[column];
        if (!(column in row)) return `${file}:${lineno}: missing field '${column}' in ${quote(line)}; each line needs ${REQUIRED.map((r) => mapping![r]).join(', ')}.`;
        if (typeof v !== 'string') return `${file}:${lineno}: field '${column}' must be a string, got ${v === null ? 'null' : typeof v} in ${quote(line)}.`;
        if (!v.trim()) return `${file}:${lineno}: field '${column}' is empty in ${quote(line)}; every triple needs a ${role}.`;
      }
      any = true;
    }
  } catch (e) {
    return `${file} cannot be read (${(e as Error).message}).`;
  } finally {
    lines.close();
    stream.destroy();
  }
  return any ? undefined : `${file} holds no triples; it needs at least one line with query/positive/negative.`;
}

function suffixHint(file: string): string {
  const suffix = path.extname(file).toLowerCase();
  return suffix === '.jsonl' || suffix === '.json' ? '' : ` (a ${suffix || 'suffixless'} file is read as JSONL; CSV needs .csv, Parquet .parquet)`;
}

/**
 * Data files a run refused as bad input (run.json's error.resumable false, see run.schema.json) and that have not
 * changed since: the form and the data pick do not offer them again.
 */
export function refusedData(
  runs: ReadonlyArray<{ verb: string; status: string; resumable?: boolean; endedAt?: string | null; data?: string; message?: string }>,
): Map<string, number> {
  const refused = new Map<string, number>();
  for (const run of runs) {
    if (run.verb !== 'train' || run.status !== 'failed' || run.resumable !== false || !run.data) continue;
    // A refused model or spec says nothing about the data: only a message that names the data file counts.
    if (!run.message?.includes(path.basename(run.data))) continue;
    // endedAt is to the millisecond; the file's mtime only has to be no later (a changed file is offered again).
    const at = Date.parse(run.endedAt ?? '');
    if (Number.isFinite(at)) refused.set(path.resolve(run.data), Math.max(at, refused.get(path.resolve(run.data)) ?? 0));
  }
  return refused;
}

export function stillRefused(file: string, refused: Map<string, number>): boolean {
  const at = refused.get(path.resolve(file));
  if (at === undefined) return false;
  try {
    return fs.statSync(file).mtimeMs <= at;
  } catch {
    return true;
  }
}

/** refusedData of the runs a store lists. */
export function refusedDataOf(runs: readonly RunSummary[]): Map<string, number> {
  return refusedData(
    runs.map((r) => {
      const data = (r.record.spec as { data?: unknown }).data;
      return { verb: r.verb, status: r.status, resumable: r.record.error?.resumable, endedAt: r.record.endedAt, data: typeof data === 'string' ? data : undefined, message: r.error };
    }),
  );
}
