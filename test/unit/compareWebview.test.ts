import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { parseCompareMessage } from '../../src/shared/protocol/compareMessages';
import { ROOT } from '../fixtures/demo';

describe('compare panel messages (webview security)', () => {
  const shown = new Set(['/ws/.l3prune/runs/evaluate-a', '/ws/.l3prune/runs/evaluate-b']);

  it('accepts exactly the messages of the protocol', () => {
    assert.deepEqual(parseCompareMessage({ type: 'ready' }, shown), { type: 'ready' });
    assert.deepEqual(parseCompareMessage({ type: 'openRun', id: '/ws/.l3prune/runs/evaluate-a' }, shown), { type: 'openRun', id: '/ws/.l3prune/runs/evaluate-a' });
    assert.deepEqual(parseCompareMessage({ type: 'export', format: 'csv' }, shown), { type: 'export', format: 'csv' });
    assert.deepEqual(parseCompareMessage({ type: 'export', format: 'json' }, shown), { type: 'export', format: 'json' });
  });

  it('rejects malformed messages, runs it was not shown, made-up paths and extra fields', () => {
    const bad: unknown[] = [
      null, undefined, 'ready', 7, [], {}, { type: 'READY' }, { type: 'ready', extra: 1 },
      { type: 'openRun' }, { type: 'openRun', id: 42 }, { type: 'openRun', id: '/etc/passwd' },
      { type: 'openRun', id: '/ws/.l3prune/runs/evaluate-a/../../../../etc' }, { type: 'openRun', id: '/ws/.l3prune/runs/evaluate-c' },
      { type: 'openRun', id: ['/ws/.l3prune/runs/evaluate-a'] }, { type: 'openRun', id: '/ws/.l3prune/runs/evaluate-a', then: 'rm -rf /' },
      { type: 'export' }, { type: 'export', format: 'xlsx' }, { type: 'export', format: 'CSV' }, { type: 'export', format: 'csv', path: '/etc/cron.d/x' },
      { type: 'export', format: ['csv'] }, JSON.parse('{"type":"export","format":"csv","__proto__":{"polluted":true}}'),
      { type: 'runCommand', command: 'workbench.action.terminal.new' }, { type: 'openRun', id: { toString: () => '/ws/.l3prune/runs/evaluate-a' } },
    ];
    for (const message of bad) assert.equal(parseCompareMessage(message, shown), undefined, JSON.stringify(message));
    assert.equal(parseCompareMessage({ type: 'openRun', id: '/ws/.l3prune/runs/evaluate-a' }, new Set()), undefined, 'nothing shown, nothing to open');
  });

  it('never accepts a random value that is not a valid message (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.anything(),
          fc.record({ type: fc.constantFrom('ready', 'openRun', 'export'), id: fc.oneof(fc.string(), fc.constantFrom(...shown), fc.anything()), format: fc.oneof(fc.string(), fc.constantFrom('csv', 'json')) }, { requiredKeys: ['type'] }),
        ),
        (raw) => {
          const parsed = parseCompareMessage(raw, shown);
          if (parsed === undefined) return;
          if (parsed.type === 'openRun') assert.ok(shown.has(parsed.id));
          else if (parsed.type === 'export') assert.ok(parsed.format === 'csv' || parsed.format === 'json');
          else assert.deepEqual(Object.keys(parsed), ['type']);
        },
      ),
      { numRuns: 5000, seed: 3 },
    );
  });

  it('the panel is built by the shared page builder (nonce CSP, limited resource roots) and validates every message', () => {
    const source = readFileSync(path.join(ROOT, 'src/views/comparePanel.ts'), 'utf8');
    assert.match(source, /webviewOptions\(extensionUri\)/, 'resource roots: media and dist only');
    assert.match(source, /renderPage\(/, 'HTML with a fresh nonce and the strict CSP');
    assert.match(source, /onValidatedMessage\(\s*this\.panel\.webview,\s*\(raw\) => parseCompareMessage\(/, 'every message parsed before it is acted on');
    assert.doesNotMatch(source, /onDidReceiveMessage/, 'no unvalidated message handler');
    const page = readFileSync(path.join(ROOT, 'webview/compare/main.ts'), 'utf8');
    assert.doesNotMatch(page, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/, 'the page builds DOM nodes, never HTML strings');
  });
});
