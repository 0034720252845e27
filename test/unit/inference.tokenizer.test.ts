import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { EncoderTokenizer, type TokenizerSettings } from '../../src/inference/tokenizer';
import { DEMO, ROOT, requireWorkerEnvironment } from '../fixtures/demo';

/** Real sentences chosen to hit the tokenisers' edge cases: Unicode, emoji, code, whitespace runs, added tokens. */
const SENTENCES = [
  'The quick brown fox jumps over the lazy dog.',
  'Layer pruning removes the last transformer blocks of a decoder and keeps the first ones.',
  "What's the capital of France? It's Paris, isn't it?",
  "I can't believe it's already 2024 — time flies!",
  'Prices rose 3.5% in Q3, from $1,299.99 to $1,345.00.',
  'Café, naïve, résumé, façade and coöperate are loanwords.',
  '東京は日本の首都です。',
  'Привет, как дела? Всё хорошо.',
  'مرحبا بالعالم',
  'Emoji test: 🚀🔥👍🏽 and a family 👨‍👩‍👧‍👦.',
  'def encode(texts: list[str]) -> np.ndarray:\n    return model(**tok(texts))',
  '   leading and trailing spaces   ',
  'multiple    internal     spaces\tand\ttabs\n\nand blank lines',
  'URL: https://example.com/path?query=1&b=two#frag and e-mail a.b@c.de',
  'ALL CAPS SENTENCE WITH SHOUTING!!!',
  'Hyphenated-words, state-of-the-art, and well-known co-authors.',
  'The year 1999, the number 123456789 and 3.14159265.',
  'She said: "Don\'t do that" — and left; (really?) [yes] {maybe}.',
  '<|im_start|>user\nHello there<|im_end|>',
  'Ünïcödé Ǆ ﬁ ligatures and ½ fractions, ™ symbols ©.',
  'a',
  'Mixed 中文 and English words in one sentence.',
  'supercalifragilisticexpialidocious antidisestablishmentarianism',
  'x = 1e-5; y = 2**10; z = a != b && c >= d',
  'Ça va? Ça va bien, merci. Über Straße groß.',
  'Zero-width\u200bjoiner and non\u00a0breaking space.',
  '한국어 문장도 토큰화합니다.',
  'The L³Prune paper reports 7.7× fewer parameters at the small cut.',
  '',
];

/**
 * What the worker feeds torch: transformers' AutoTokenizer on the same folder, called as l3prune.encoder
 * does (padding=True, truncation=True, max_length), once per text and once for the whole batch. One Python
 * process answers every case: importing transformers takes seconds.
 */
const PYTHON_TOKENIZE = `
import json, sys
from transformers import AutoTokenizer
out = []
for a in json.load(sys.stdin):
    tok = AutoTokenizer.from_pretrained(a["model"], local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = a["paddingSide"]
    single = [tok(t, truncation=True, max_length=a["maxLength"], add_special_tokens=a["addSpecialTokens"])["input_ids"] for t in a["texts"]]
    batch = tok(a["texts"], padding=True, truncation=True, max_length=a["maxLength"], add_special_tokens=a["addSpecialTokens"])
    out.append({"single": single, "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "pad": tok.pad_token_id})
print(json.dumps(out))
`;

interface Case extends Omit<TokenizerSettings, 'padTokenId'> {
  model: string;
}

interface PythonTokens {
  single: number[][];
  input_ids: number[][];
  attention_mask: number[][];
  pad: number;
}

function pythonTokenize(cases: Case[]): PythonTokens[] {
  const out = execFileSync(DEMO.python, ['-c', PYTHON_TOKENIZE], {
    input: JSON.stringify(cases.map((c) => ({ ...c, texts: SENTENCES }))),
    env: { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' },
    maxBuffer: 64 << 20,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  return JSON.parse(out.toString()) as PythonTokens[];
}

function rows(flat: BigInt64Array, batch: number, seq: number): number[][] {
  return Array.from({ length: batch }, (_, b) => Array.from(flat.subarray(b * seq, (b + 1) * seq), Number));
}

async function checkAgainst(expected: PythonTokens, settings: Case): Promise<EncoderTokenizer> {
  const tokenizer = await EncoderTokenizer.fromFolder(settings.model, { ...settings, padTokenId: expected.pad });
  SENTENCES.forEach((text, i) => assert.deepEqual(tokenizer.encode(text), expected.single[i], `ids of ${JSON.stringify(text)}`));
  const batch = tokenizer.encodeBatch(SENTENCES);
  assert.deepEqual(rows(batch.inputIds, batch.batch, batch.seq), expected.input_ids, 'padded input_ids');
  assert.deepEqual(rows(batch.attentionMask, batch.batch, batch.seq), expected.attention_mask, 'attention_mask');
  return tokenizer;
}

const MINILM = path.join(ROOT, '.demo/models/all-minilm-l6-v2');

const CASES = {
  smolRight: { model: DEMO.model, maxLength: 512, paddingSide: 'right', addSpecialTokens: true },
  smolLeftShort: { model: DEMO.model, maxLength: 7, paddingSide: 'left', addSpecialTokens: true },
  bertRight: { model: MINILM, maxLength: 512, paddingSide: 'right', addSpecialTokens: true },
  bertShort: { model: MINILM, maxLength: 6, paddingSide: 'right', addSpecialTokens: true },
  bertPlainLeft: { model: MINILM, maxLength: 16, paddingSide: 'left', addSpecialTokens: false },
} satisfies Record<string, Case>;

describe('encoder tokenizer (tokenizers.js) against the worker’s Hugging Face tokenizer', function () {
  this.timeout(120_000);
  let hasMiniLM = false;
  const expected = new Map<string, PythonTokens>();
  before(function () {
    requireWorkerEnvironment(this);
    hasMiniLM = existsSync(path.join(MINILM, 'tokenizer.json'));
    const names = Object.keys(CASES).filter((name) => hasMiniLM || !name.startsWith('bert')) as Array<keyof typeof CASES>;
    pythonTokenize(names.map((name) => CASES[name])).forEach((tokens, i) => expected.set(names[i], tokens));
  });

  describe('SmolLM2 (byte-level BPE, no special tokens added)', () => {
    it(`gives the same ids for ${SENTENCES.length} varied sentences, right padding`, () => checkAgainst(expected.get('smolRight')!, CASES.smolRight));
    it('truncates to maxLength and pads on the left like the worker', () => checkAgainst(expected.get('smolLeftShort')!, CASES.smolLeftShort));
  });

  describe('all-MiniLM-L6-v2 (BERT WordPiece, [CLS] … [SEP])', () => {
    before(function () {
      if (hasMiniLM) return;
      // The set-up may leave MiniLM out on purpose (L3PRUNE_SKIP_MINILM=1); otherwise CI must have it.
      if (process.env.CI && process.env.L3PRUNE_SKIP_MINILM !== '1') assert.fail(`missing ${MINILM}: run bash scripts/setup.sh`);
      this.skip();
    });
    it(`gives the same ids for ${SENTENCES.length} varied sentences, special tokens included`, () => checkAgainst(expected.get('bertRight')!, CASES.bertRight));
    it('keeps [CLS] and [SEP] when it truncates (they count against maxLength)', async () => {
      const tokenizer = await checkAgainst(expected.get('bertShort')!, CASES.bertShort);
      const ids = tokenizer.encode(SENTENCES[1]);
      assert.equal(ids.length, 6);
      assert.equal(ids[0], 101);
      assert.equal(ids[5], 102);
    });
    it('leaves the special tokens out when the export says so', () => checkAgainst(expected.get('bertPlainLeft')!, CASES.bertPlainLeft));
  });
});

/**
 * The worker's text pipeline (l3prune.textpipe) on the same tokenizer folder: the chat user turn it finds, and for
 * each text (with and without an instruction) the left-padded batch's ids, attention mask and embed mask.
 */
const PYTHON_PIPELINE = `
import json, sys
from transformers import AutoTokenizer
from l3prune.textpipe import Text, pipeline_for
out = []
for a in json.load(sys.stdin):
    tok = AutoTokenizer.from_pretrained(a["model"], local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    pipe = pipeline_for(tok, a["chatTemplate"])
    texts = [Text(t["text"], t["instruction"]) for t in a["items"]]
    b = pipe.tokenize(tok, texts, a["maxLength"])
    out.append({"pipeline": pipe.manifest(), "pad": tok.pad_token_id, **{k: b[k].tolist() for k in ("input_ids", "attention_mask", "embed_mask")}})
print(json.dumps(out))
`;

const PIPELINE_ITEMS = (JSON.parse(readFileSync(path.join(__dirname, '../fixtures/pipeline-texts.json'), 'utf8')) as {
  texts: Array<{ text: string; instruction: string | null }>;
}).texts;

describe('the text pipeline (chat user turn, instruction prefix, embed mask) against the worker’s', function () {
  this.timeout(120_000);
  const cases = [
    { model: DEMO.model, chatTemplate: 'auto', maxLength: 512 },
    { model: DEMO.model, chatTemplate: 'auto', maxLength: 12 },
    { model: DEMO.model, chatTemplate: 'off', maxLength: 12 },
    { model: MINILM, chatTemplate: 'auto', maxLength: 512 },
    { model: MINILM, chatTemplate: 'auto', maxLength: 10 },
  ];
  let expected: Array<{ pipeline: { instructionFormat: string; chatPrefix: string | null; chatSuffix: string | null }; pad: number; input_ids: number[][]; attention_mask: number[][]; embed_mask: number[][] }> = [];
  let run: typeof cases = [];
  before(function () {
    requireWorkerEnvironment(this);
    run = cases.filter((c) => c.model !== MINILM || existsSync(path.join(MINILM, 'tokenizer.json')));
    const out = execFileSync(DEMO.python, ['-c', PYTHON_PIPELINE], {
      input: JSON.stringify(run.map((c) => ({ ...c, items: PIPELINE_ITEMS }))),
      env: { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' },
      cwd: path.join(ROOT, 'worker'),
      maxBuffer: 64 << 20,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    expected = JSON.parse(out.toString());
  });

  for (const [i, c] of cases.entries()) {
    it(`${path.basename(c.model)}, chatTemplate ${c.chatTemplate}, maxLength ${c.maxLength}: ${PIPELINE_ITEMS.length} texts`, async function () {
      const at = run.indexOf(c);
      if (at < 0) this.skip();
      const want = expected[at];
      if (c.model === DEMO.model) assert.equal(want.pipeline.chatPrefix, c.chatTemplate === 'auto' ? '<|im_start|>user\n' : null);
      else assert.equal(want.pipeline.chatPrefix, null, 'BERT has no chat template');
      const tokenizer = await EncoderTokenizer.fromFolder(c.model, {
        maxLength: c.maxLength, paddingSide: 'left', addSpecialTokens: true, padTokenId: want.pad, ...want.pipeline,
      });
      const batch = tokenizer.encodeBatch(PIPELINE_ITEMS.map((t) => ({ text: t.text, instruction: t.instruction })));
      assert.deepEqual(rows(batch.inputIds, batch.batch, batch.seq), want.input_ids, 'padded input_ids');
      assert.deepEqual(rows(batch.attentionMask, batch.batch, batch.seq), want.attention_mask, 'attention_mask');
      assert.deepEqual(rows(batch.embedMask, batch.batch, batch.seq), want.embed_mask, `embed_mask (case ${i})`);
    });
  }
});

describe('encoder tokenizer errors', () => {
  it('names the file when tokenizer.json is missing', async () => {
    await assert.rejects(
      EncoderTokenizer.fromFolder(path.join(ROOT, 'no-such-folder'), { maxLength: 8, paddingSide: 'right', addSpecialTokens: true, padTokenId: 0 }),
      /no-such-folder[/\\]tokenizer\.json cannot be read \(ENOENT\)/,
    );
  });
});
