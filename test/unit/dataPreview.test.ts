import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { histogramBars, parseDataPreviewMessage } from '../../src/shared/protocol/dataPreviewMessages';
import type { DataPreview } from '../../src/shared/protocol/generated/data-preview';
import { dataPreviewArgs, parseDataPreviewReport, runDataPreview } from '../../src/worker/dataPreview';
import { DEMO, requireWorkerEnvironment, ROOT } from '../fixtures/demo';

const never = { isCancellationRequested: false, onCancellationRequested: () => ({ dispose() {} }) };

describe('data preview: the worker report', function () {
  this.timeout(240_000);
  let tmp: string;
  let report: DataPreview;
  const rows = readFileSync(DEMO.triples, 'utf8').split('\n').filter(Boolean).slice(0, 200).map((l) => JSON.parse(l) as Record<string, string>);

  before(async function () {
    requireWorkerEnvironment(this);
    tmp = mkdtempSync(path.join(tmpdir(), 'l3prune-preview-'));
    // A CSV with sentence-transformers' column names and one of our own choosing, written here by hand.
    const quote = (v: string) => `"${v.replace(/"/g, '""')}"`;
    const csv = ['anchor,positive,other,task', ...rows.map((r) => [r.query, r.positive, r.negative, r.task].map(quote).join(','))].join('\n');
    writeFileSync(path.join(tmp, 'triples.csv'), csv + '\n');
    const outcome = await runDataPreview({ python: DEMO.python, data: path.join(tmp, 'triples.csv'), model: DEMO.model, maxLength: 16, dataColumns: { negative: 'other' } }, never);
    assert.equal(outcome.status, 'done', JSON.stringify(outcome));
    report = (outcome as { report: DataPreview }).report;
  });
  after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

  it('is the data as the file holds it: format, mapped columns, rows and tasks', () => {
    assert.equal(report.format, 'csv');
    assert.deepEqual(report.columns, { query: 'anchor', positive: 'positive', negative: 'other', instruction: null, task: 'task', symmetric: null });
    assert.equal(report.rows, rows.length);
    const tasks = new Map<string, number>();
    for (const r of rows) tasks.set(r.task, (tasks.get(r.task) ?? 0) + 1);
    assert.deepEqual(report.tasks, [...tasks].map(([name, n]) => ({ name, rows: n })));
    for (const s of report.samples) {
      const row = rows[s.row - 1];
      assert.ok(s.query.includes(row.query) && s.negative.includes(row.negative), `sample row ${s.row} is that row of the file`);
    }
    assert.equal(report.lengths.texts, 3 * rows.length);
    assert.ok(report.lengths.truncated > 0 && report.lengths.truncated <= report.lengths.texts);
  });

  it('refuses a report whose histogram does not add up, or that breaks the schema', () => {
    const line = (r: unknown) => JSON.stringify(r);
    assert.deepEqual(parseDataPreviewReport(line(report)), report);
    const tampered: unknown[] = [
      { ...report, lengths: { ...report.lengths, counts: report.lengths.counts.map((c, i) => (i === 0 ? c + 1 : c)) } },
      { ...report, lengths: { ...report.lengths, edges: [...report.lengths.edges].reverse() } },
      { ...report, format: 'xlsx' },
      { ...report, event: 'devices' },
      { ...report, extra: true },
      { ...report, samples: [...report.samples, ...report.samples] },
    ];
    for (const r of tampered) assert.equal(typeof parseDataPreviewReport(line(r)), 'string', line(r).slice(0, 80));
    assert.match(String(parseDataPreviewReport('not json')), /no report/);
  });

  it('passes on the worker’s own sentence when the data cannot be read', async () => {
    const outcome = await runDataPreview({ python: DEMO.python, data: path.join(tmp, 'triples.csv'), model: DEMO.model, maxLength: 16 }, never);
    assert.equal(outcome.status, 'failed');
    assert.match((outcome as { message: string }).message, /no column for the negative .*'anchor', 'positive', 'other', 'task'.*--data-columns negative=COLUMN/);
  });

  it('builds the bars from the report’s bins, marking those past max length', () => {
    const bars = histogramBars(report.lengths, report.maxLength);
    assert.equal(bars.length, report.lengths.counts.length);
    assert.equal(bars.reduce((a, b) => a + b.count, 0), report.lengths.texts);
    for (const b of bars) assert.equal(b.truncated, b.to - 1 > report.maxLength, `bar ${b.from}..${b.to - 1} against max length ${report.maxLength}`);
    assert.ok(bars.at(-1)!.to > report.lengths.max, 'the bins reach past the longest text');
  });
});

describe('data preview panel messages (webview security)', () => {
  it('accepts exactly the messages of the protocol', () => {
    assert.deepEqual(parseDataPreviewMessage({ type: 'ready' }), { type: 'ready' });
    assert.deepEqual(parseDataPreviewMessage({ type: 'recount', maxLength: 1024 }), { type: 'recount', maxLength: 1024 });
    const bad: unknown[] = [
      null, undefined, 'ready', [], {}, { type: 'ready', data: '/etc/passwd' }, { type: 'recount' }, { type: 'recount', maxLength: 1 },
      { type: 'recount', maxLength: 512.5 }, { type: 'recount', maxLength: '512' }, { type: 'recount', maxLength: 1e12 }, { type: 'recount', maxLength: NaN },
      { type: 'recount', maxLength: 512, data: '/etc/shadow' }, { type: 'recount', maxLength: 512, model: '/tmp/evil' }, { type: 'preview', data: '/x' },
      JSON.parse('{"type":"recount","maxLength":512,"__proto__":{"polluted":true}}'),
    ];
    for (const message of bad) assert.equal(parseDataPreviewMessage(message), undefined, JSON.stringify(message));
  });

  it('never accepts a random value that is not a valid message (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.anything(), fc.record({ type: fc.constantFrom('ready', 'recount'), maxLength: fc.oneof(fc.integer(), fc.double(), fc.string()), data: fc.string() }, { requiredKeys: ['type'] })),
        (raw) => {
          const parsed = parseDataPreviewMessage(raw);
          if (parsed === undefined) return;
          if (parsed.type === 'recount') assert.ok(Number.isSafeInteger(parsed.maxLength) && parsed.maxLength >= 2 && Object.keys(parsed).length === 2);
          else assert.deepEqual(Object.keys(parsed), ['type']);
        },
      ),
      { numRuns: 5000, seed: 11 },
    );
  });

  it('the command line names the data, model and columns, and nothing a page could add', () => {
    assert.deepEqual(dataPreviewArgs({ data: '/d/t.parquet', model: '/m', maxLength: 256, dataColumns: { query: 'anchor', negative: 'neg' } }),
      ['--data', '/d/t.parquet', '--model', '/m', '--max-length', '256', '--data-columns', 'query=anchor,negative=neg']);
  });

  it('the panel is built by the shared page builder and validates every message; the page builds DOM nodes only', () => {
    const source = readFileSync(path.join(ROOT, 'src/views/dataPreviewPanel.ts'), 'utf8');
    assert.match(source, /webviewOptions\(extensionUri\)/);
    assert.match(source, /renderPage\(/);
    assert.match(source, /onValidatedMessage\(\s*this\.panel\.webview,\s*parseDataPreviewMessage,/);
    assert.doesNotMatch(source, /onDidReceiveMessage/);
    const page = readFileSync(path.join(ROOT, 'webview/dataPreview/main.ts'), 'utf8');
    assert.doesNotMatch(page, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function|\.style\b|setAttribute\('style'/);
  });
});
