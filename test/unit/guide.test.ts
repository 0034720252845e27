import * as assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { GUIDE_CONTEXT, guideProgress } from '../../src/shared/guide/firstUse';
import { isInside, revealWay } from '../../src/workspace/revealWay';
import { ROOT } from '../fixtures/demo';

interface Step { id: string; description: string; media: { markdown?: string; svg?: string; image?: string }; completionEvents: string[] }
const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const commands = new Set((manifest.contributes.commands as Array<{ command: string }>).map((c) => c.command));
const steps: Step[] = manifest.contributes.walkthroughs[0].steps;
const commandLinks = (markdown: string) => [...markdown.matchAll(/\]\(command:([\w.]+)/g)].map((m) => m[1]);

describe('first-use walkthrough', () => {
  it('goes open → initial loss → cut → train → evaluate → compare → export, each step on one of our context keys', () => {
    assert.deepEqual(steps.map((s) => s.id), ['openModel', 'initialLoss', 'chooseCut', 'train', 'evaluate', 'compare', 'export']);
    const keys = steps.map((s) => s.completionEvents.map((e) => e.replace(/^onContext:/, '')));
    assert.deepEqual(keys.flat().sort(), Object.values(GUIDE_CONTEXT).sort());
    for (const s of steps) assert.ok(s.completionEvents.every((e) => e.startsWith('onContext:')), `${s.id} completes on a real event, not on a click`);
  });

  it('links only contributed commands, and every step has a small media file that exists', () => {
    for (const s of steps) {
      const links = commandLinks(s.description);
      assert.ok(links.length >= 1, `${s.id} has a button`);
      for (const id of links) assert.ok(commands.has(id), `${s.id} links ${id}`);
      const file = path.join(ROOT, s.media.markdown ?? s.media.svg ?? s.media.image ?? '');
      assert.ok(statSync(file).size < 2048, `${file} is small`);
    }
    const welcome = manifest.contributes.viewsWelcome.find((w: { view: string }) => w.view === 'l3prune.models').contents as string;
    assert.deepEqual(commandLinks(welcome).filter((id) => /Walkthrough|ModelFolder|HuggingFace/.test(id)), ['l3prune.openModelFolder', 'l3prune.openHuggingFaceModel', 'l3prune.openWalkthrough']);
    assert.ok(commandLinks(welcome).every((id) => commands.has(id)));
  });

  it('has every command under one category a user can type: "l3prune" is a prefix of it, ASCII only', () => {
    const categories = new Set((manifest.contributes.commands as Array<{ category: string }>).map((c) => c.category));
    assert.deepEqual([...categories], ['L3Prune']);
    // The palette matches the typed text against "Category: Title" as shown (no compatibility folding of ³ to 3).
    assert.ok('L3Prune: Open Model Folder…'.toLowerCase().startsWith('l3prune'));
    assert.equal('L³Prune'.toLowerCase().startsWith('l3prune'), false);
  });

  it('counts a run only once it succeeded, and a started training as a chosen cut', () => {
    const none = { readyModels: 0, analysedModels: 0, cutChosen: false, compared: false, runs: [] };
    assert.deepEqual(Object.values(guideProgress(none)), [false, false, false, false, false, false, false]);
    const failed = guideProgress({ ...none, runs: [{ verb: 'train', status: 'failed' }, { verb: 'evaluate', status: 'running' }, { verb: 'export-onnx', status: 'cancelled' }] });
    assert.deepEqual([failed.cutChosen, failed.trained, failed.evaluated, failed.exported], [true, false, false, false]);
    const done = guideProgress({ ...none, readyModels: 1, analysedModels: 1, runs: [{ verb: 'train', status: 'succeeded' }, { verb: 'evaluate', status: 'succeeded' }, { verb: 'export-st', status: 'succeeded' }] });
    assert.deepEqual([done.modelOpen, done.initialLoss, done.trained, done.evaluated, done.exported, done.compared], [true, true, true, true, true, false]);
  });
});

describe('reveal in a remote window', () => {
  it('uses the OS file manager only in a local desktop window, the Explorer for workspace paths, else offers the path', () => {
    assert.equal(revealWay('/home/u/.config/runs/train-1', ['/home/u/project'], true), 'os');
    assert.equal(revealWay('/home/u/project/runs/train-1', ['/srv/other', '/home/u/project'], false), 'explorer');
    assert.equal(revealWay('/home/u/.local/share/code-server/runs/train-1', ['/home/u/project'], false), 'offer');
    assert.equal(revealWay('/home/u/project', [], false), 'offer');
  });

  it('treats a sibling that shares the prefix as outside', () => {
    assert.equal(isInside('/a/b', '/a/b'), true);
    assert.equal(isInside('/a/b/c/d.json', '/a/b/'), true);
    assert.equal(isInside('/a/bc', '/a/b'), false);
    assert.equal(isInside('/a/b/../c', '/a/b'), false);
    assert.equal(isInside('/a/..b', '/a'), true);
  });
});
