import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { COMMAND_IDS } from '../../src/commandIds';
import { ROOT } from '../fixtures/demo';

describe('command table', () => {
  const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const contributed = (manifest.contributes.commands as Array<{ command: string; enablement?: string }>).map((c) => c.command).sort();
  // src/commands.ts's handler table is a Record<CommandId, Handler>: the type checker ties it to these ids.
  const handled = [...COMMAND_IDS].sort();

  it('every contributed command has a handler, and every handler is contributed', () => {
    assert.ok(handled.length >= 10, `found ${handled.length} handlers`);
    assert.deepEqual(handled, contributed);
  });

  it('commands that start the worker are disabled in untrusted workspaces', () => {
    const worker = ['l3prune.computeInitialLoss', 'l3prune.evaluate', 'l3prune.exportOnnx', 'l3prune.tryEncoder', 'l3prune.convertPickleWeights'];
    for (const id of worker) {
      const command = manifest.contributes.commands.find((c: { command: string }) => c.command === id);
      assert.ok(command, id);
      assert.match(String(command.enablement ?? ''), /isWorkspaceTrusted/, `${id} enablement`);
    }
  });
});
