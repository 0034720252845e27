/**
 * How each model family names its tensors. A tensor is an embedding, part of decoder/encoder layer i,
 * the final norm, or the head; anything else is kept as "other" so that no parameter is ever dropped.
 * Patterns are matched against the full tensor name; prefixes such as `model.` or `transformer.` vary
 * between checkpoints of one family, so they are optional.
 */
export interface FamilyNaming {
  family: string;
  /** First capture group is the layer index. */
  layer: RegExp;
  embedding: RegExp;
  finalNorm: RegExp;
  head: RegExp;
}

const LLAMA_LIKE: Omit<FamilyNaming, 'family'> = {
  layer: /(?:^|\.)layers\.(\d+)\./,
  embedding: /(?:^|\.)embed_tokens\./,
  finalNorm: /^(?:model\.)?(?:language_model\.)?(?:model\.)?norm\./,
  head: /^(?:language_model\.)?lm_head\./,
};

const FAMILIES: Record<string, Omit<FamilyNaming, 'family'>> = {
  llama: LLAMA_LIKE,
  mistral: LLAMA_LIKE,
  mixtral: LLAMA_LIKE,
  qwen2: LLAMA_LIKE,
  qwen3: LLAMA_LIKE,
  phi3: LLAMA_LIKE,
  gemma: LLAMA_LIKE,
  gemma2: LLAMA_LIKE,
  gemma3_text: LLAMA_LIKE,
  olmo: LLAMA_LIKE,
  olmo2: LLAMA_LIKE,
  granite: LLAMA_LIKE,
  phi: {
    layer: /(?:^|\.)layers\.(\d+)\./,
    embedding: /(?:^|\.)embed_tokens\./,
    finalNorm: /(?:^|\.)final_layernorm\./,
    head: /^lm_head\./,
  },
  gpt2: {
    layer: /(?:^|\.)h\.(\d+)\./,
    embedding: /(?:^|\.)(?:wte|wpe)\./,
    finalNorm: /(?:^|\.)ln_f\./,
    head: /^lm_head\./,
  },
  gpt_neox: {
    layer: /(?:^|\.)layers\.(\d+)\./,
    embedding: /(?:^|\.)embed_in\./,
    finalNorm: /(?:^|\.)final_layer_norm\./,
    head: /^embed_out\./,
  },
  bert: {
    layer: /(?:^|\.)encoder\.layer\.(\d+)\./,
    embedding: /(?:^|\.)embeddings\./,
    // BERT normalises inside each layer (post-LN) and has no final norm.
    finalNorm: /(?!)/,
    head: /^(?:bert\.)?(?:pooler|cls)\./,
  },
};

FAMILIES.roberta = FAMILIES.bert;
FAMILIES.xlm_roberta = FAMILIES.bert;

/** For a family we do not know: the union of the conventions above, most specific first. */
const GENERIC: Omit<FamilyNaming, 'family'> = {
  layer: /(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\./,
  embedding: /(?:^|\.)(?:embed_tokens|wte|wpe|embed_in|embeddings|word_embeddings)\./,
  finalNorm: /(?:^|\.)(?:final_layernorm|final_layer_norm|ln_f)\.|^(?:model\.)?norm\./,
  head: /^(?:lm_head|embed_out|pooler|cls)\./,
};

export const KNOWN_FAMILIES = Object.freeze(Object.keys(FAMILIES));

export function namingFor(family: string): FamilyNaming {
  return { family, ...(Object.hasOwn(FAMILIES, family) ? FAMILIES[family] : GENERIC) };
}

export type TensorGroup =
  | { kind: 'embedding' }
  | { kind: 'layer'; index: number }
  | { kind: 'finalNorm' }
  | { kind: 'head' }
  | { kind: 'other' };

export function groupTensor(name: string, naming: FamilyNaming): TensorGroup {
  const layer = naming.layer.exec(name);
  if (layer) {
    const index = Number(layer[1]);
    if (Number.isSafeInteger(index)) return { kind: 'layer', index };
  }
  if (naming.embedding.test(name)) return { kind: 'embedding' };
  if (naming.finalNorm.test(name)) return { kind: 'finalNorm' };
  if (naming.head.test(name)) return { kind: 'head' };
  return { kind: 'other' };
}
