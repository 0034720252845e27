import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseCompareMessage } from '../../src/shared/protocol/compareMessages';
import { parseLayerStackMessage } from '../../src/shared/protocol/layerStackMessages';
import { parseRunPlotMessage } from '../../src/shared/protocol/runPlotMessages';
import { parseTryEncoderMessage } from '../../src/shared/protocol/tryEncoderMessages';
import { hostileMessages } from '../fixtures/hostileMessages';
import { contentSecurityPolicy, escapeHtml, newNonce } from '../../src/views/csp';

describe('webview security', () => {
  it('a CSP that allows only our nonce-tagged script and never eval or inline code', () => {
    const csp = contentSecurityPolicy('https://webview.example', 'abc123');
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'nonce-abc123'(;|$)/);
    // Styles: our files and the toolkit's nonce-tagged probe; never an inline style attribute.
    assert.match(csp, /style-src https:\/\/webview\.example 'nonce-abc123'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-eval|unsafe-inline|\*/);
    assert.match(csp, /connect-src 'none'/);
  });

  it('a fresh, unguessable nonce per load', () => {
    const nonces = new Set(Array.from({ length: 1000 }, newNonce));
    assert.equal(nonces.size, 1000);
    for (const nonce of nonces) assert.match(nonce, /^[A-Za-z0-9_-]{24}$/);
  });

  it('escapes text placed in HTML', () => {
    assert.equal(escapeHtml(`<script>alert("x")</script>&'`), '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;');
  });

  describe('layer-stack panel messages', () => {
    it('accepts exactly the messages of the protocol', () => {
      assert.deepEqual(parseLayerStackMessage({ type: 'ready' }, 30), { type: 'ready' });
      assert.deepEqual(parseLayerStackMessage({ type: 'keepChanged', keep: 12 }, 30), { type: 'keepChanged', keep: 12 });
      assert.deepEqual(parseLayerStackMessage({ type: 'trainAt', keep: 30 }, 30), { type: 'trainAt', keep: 30 });
      assert.deepEqual(parseLayerStackMessage({ type: 'trainAt', keep: 1 }, 30), { type: 'trainAt', keep: 1 });
    });
    it('rejects wrong types, extra fields and keeps outside the stack', () => {
      const bad: unknown[] = [
        null, undefined, 'ready', 42, [], {}, { type: 'READY' }, { type: 'ready', extra: 1 },
        { type: 'keepChanged' }, { type: 'keepChanged', keep: 0 }, { type: 'keepChanged', keep: 31 },
        { type: 'keepChanged', keep: 2.5 }, { type: 'keepChanged', keep: '3' }, { type: 'keepChanged', keep: Number.NaN },
        { type: 'trainAt', keep: -1 }, { type: 'trainAt', keep: 31 }, { type: 'trainAt' }, { type: 'trainAt', keep: 7, data: '/etc/passwd' },
        { type: 'pruneAt', keep: 7 }, JSON.parse('{"type":"keepChanged","keep":3,"__proto__":{"admin":true}}'),
        { type: 'runCommand', command: 'rm -rf /' },
      ];
      for (const message of bad) assert.equal(parseLayerStackMessage(message, 30), undefined, JSON.stringify(message));
    });
    it('never accepts a random value that is not a valid message (fuzz)', () => {
      fc.assert(
        fc.property(fc.oneof(fc.anything(), fc.record({ type: fc.constantFrom('ready', 'keepChanged', 'trainAt'), keep: fc.anything() })), (raw) => {
          const parsed = parseLayerStackMessage(raw, 30);
          if (parsed === undefined) return;
          assert.ok(parsed.type === 'ready' || (Number.isInteger(parsed.keep) && parsed.keep >= 1 && parsed.keep <= 30));
        }),
        { numRuns: 5000, seed: 1 },
      );
    });
  });

  describe('the hostile messages the end-to-end tests post to live panels', () => {
    // The e2e counts one "ignored" log line per message, so every case must be invalid for its panel.
    const panels: Array<[string, readonly string[], (raw: unknown) => unknown]> = [
      ['layer stack', ['ready', 'keepChanged', 'trainAt'], (raw) => parseLayerStackMessage(raw, 30)],
      ['loss plot', ['ready', 'openRun'], (raw) => parseRunPlotMessage(raw, new Set(['run-a']))],
      ['compare', ['ready', 'openRun', 'export'], (raw) => parseCompareMessage(raw, new Set(['run-a']))],
      ['try encoder', ['ready', 'compare'], parseTryEncoderMessage],
    ];
    for (const [name, types, parse] of panels) {
      it(`are all refused by the ${name} panel`, function () {
        this.timeout(30_000); // ten-odd 1 MiB strings per hundred cases
        const messages = hostileMessages(types, 440, 11);
        // As they travel: JSON from the test to the page, then structured clone to the host.
        const accepted = messages.filter((m) => parse(structuredClone(JSON.parse(JSON.stringify(m)))) !== undefined);
        assert.deepEqual(accepted, []);
        assert.ok(new Set(messages.map((m) => JSON.stringify(m)?.slice(0, 40))).size > 50, 'varied cases');
      });
    }
  });
});
