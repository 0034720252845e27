import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { MAX_BATCH_SIZE, MAX_TEXT_CHARS, MAX_TEXTS, parseTryEncoderMessage } from '../../src/shared/protocol/tryEncoderMessages';
import { ROOT } from '../fixtures/demo';

describe('Try Encoder panel messages (webview security)', () => {
  it('accepts exactly the messages of the protocol', () => {
    assert.deepEqual(parseTryEncoderMessage({ type: 'ready' }), { type: 'ready' });
    const compare = { type: 'compare', texts: ['a', 'b'], batchSize: 16 };
    assert.deepEqual(parseTryEncoderMessage(compare), compare);
    const most = { type: 'compare', texts: Array.from({ length: MAX_TEXTS }, () => 'x'.repeat(MAX_TEXT_CHARS)), batchSize: MAX_BATCH_SIZE };
    assert.deepEqual(parseTryEncoderMessage(most), most);
  });

  it('rejects malformed messages, too few or too many texts, huge texts, odd batch sizes and extra fields', () => {
    const bad: unknown[] = [
      null, undefined, 'ready', 3, [], {}, { type: 'READY' }, { type: 'ready', extra: 1 },
      { type: 'compare' }, { type: 'compare', texts: ['a', 'b'] }, { type: 'compare', texts: ['only one'], batchSize: 4 },
      { type: 'compare', texts: [], batchSize: 4 }, { type: 'compare', texts: 'a\nb', batchSize: 4 },
      { type: 'compare', texts: ['a', 2], batchSize: 4 }, { type: 'compare', texts: ['a', 'b'], batchSize: 0 },
      { type: 'compare', texts: ['a', 'b'], batchSize: MAX_BATCH_SIZE + 1 }, { type: 'compare', texts: ['a', 'b'], batchSize: 2.5 },
      { type: 'compare', texts: ['a', 'b'], batchSize: '4' }, { type: 'compare', texts: ['a', 'b'], batchSize: 4, folder: '/etc' },
      { type: 'compare', texts: Array.from({ length: MAX_TEXTS + 1 }, () => 'x'), batchSize: 4 },
      { type: 'compare', texts: ['a', 'x'.repeat(MAX_TEXT_CHARS + 1)], batchSize: 4 },
      JSON.parse('{"type":"compare","texts":["a","b"],"batchSize":4,"__proto__":{"polluted":true}}'),
      { type: 'runCommand', command: 'workbench.action.terminal.new' },
    ];
    for (const message of bad) assert.equal(parseTryEncoderMessage(message), undefined, JSON.stringify(message)?.slice(0, 120));
  });

  it('never accepts a random value that is not a valid message (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.anything(),
          fc.record({ type: fc.constantFrom('ready', 'compare'), texts: fc.oneof(fc.array(fc.string()), fc.anything()), batchSize: fc.oneof(fc.integer(), fc.anything()) }, { requiredKeys: ['type'] }),
        ),
        (raw) => {
          const parsed = parseTryEncoderMessage(raw);
          if (parsed === undefined) return;
          if (parsed.type === 'ready') return assert.deepEqual(Object.keys(parsed), ['type']);
          assert.ok(parsed.texts.length >= 2 && parsed.texts.length <= MAX_TEXTS && parsed.texts.every((t) => typeof t === 'string' && t.length <= MAX_TEXT_CHARS));
          assert.ok(Number.isInteger(parsed.batchSize) && parsed.batchSize >= 1 && parsed.batchSize <= MAX_BATCH_SIZE);
        },
      ),
      { numRuns: 5000, seed: 7 },
    );
  });

  it('the panel is built by the shared page builder and validates every message; the page builds no HTML strings', () => {
    const source = readFileSync(path.join(ROOT, 'src/inference/tryEncoderPanel.ts'), 'utf8');
    assert.match(source, /webviewOptions\(extensionUri\)/, 'resource roots: media and dist only');
    assert.match(source, /renderPage\(/, 'HTML with a fresh nonce and the strict CSP');
    assert.match(source, /onValidatedMessage\(\s*panel\.webview,\s*parseTryEncoderMessage,/, 'every message parsed before it is acted on');
    assert.doesNotMatch(source, /onDidReceiveMessage/, 'no unvalidated message handler');
    const page = readFileSync(path.join(ROOT, 'webview/tryEncoder/main.ts'), 'utf8');
    assert.doesNotMatch(page, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function|setAttribute\('style'/, 'DOM nodes and CSSOM only');
  });
});
