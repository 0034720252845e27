"""The one text pipeline (l3prune/textpipe.py) against the paper's rule as tests/paper_reference.py reads it from
PAPER.md: the chat user turn found from the tokenizer's own template (no system prompt), the instruction prefix,
and the embed mask -- which positions get pooled."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from conftest import DEMO_MODEL
from paper_reference import EXPECTED_TURN, make_tiny_variant, paper_inputs, paper_pool, real_positions
from l3prune.encoder import load_encoder, pool, prune
from l3prune.textpipe import Text, TextPipeline, chat_user_turn, embed_mask, pipeline_for

ITEMS = [
    ("Retrieve semantically similar text", "A man is playing a guitar on stage."),
    (None, "A person plays an instrument."),
    ("Given a question, retrieve relevant answers", "The cat sleeps on the warm sofa."),
    (None, "OK"),
    ("Classify", "Two kids run across the park while the rain falls over the quiet town and the market is crowded."),
]


@pytest.fixture(scope="module", params=["qwen", "llama3"])
def chat_model(request, tmp_path_factory):
    return request.param, make_tiny_variant(tmp_path_factory.mktemp(f"tiny-{request.param}"), chat=request.param)


def test_user_turn_of_hand_written_templates_leaves_out_system_prompt_and_bos(chat_model):
    family, path = chat_model
    tok = AutoTokenizer.from_pretrained(path)
    assert chat_user_turn(tok) == EXPECTED_TURN[family]
    full = pipeline_for(tok).full_text(Text("hello there", "Do it"))
    assert full == EXPECTED_TURN[family][0] + "Do it; hello there" + EXPECTED_TURN[family][1]
    assert "system" not in full and "helpful" not in full and "<|begin_of_text|>" not in full
    assert pipeline_for(tok, "off").full_text(Text("hello there", "Do it")) == "Do it; hello there"


def test_smollm2_real_template_user_turn(demo_model):
    tok = AutoTokenizer.from_pretrained(demo_model)
    # SmolLM2's template inserts "You are a helpful AI assistant named SmolLM..." when no system turn is given.
    assert chat_user_turn(tok) == ("<|im_start|>user\n", "<|im_end|>")


def test_no_template_means_no_wrapper(tiny_llama):
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    assert chat_user_turn(tok) is None
    assert pipeline_for(tok).full_text(Text("x", "I")) == "I; x" and pipeline_for(tok).full_text("x") == "x"
    with pytest.raises(ValueError, match="chatTemplate"):
        pipeline_for(tok, "on")


def test_embed_mask_is_the_last_k_real_positions_either_padding_side():
    am = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    got = embed_mask(am, [2, 6, 9])  # 9 > the real length: clamped to it
    assert got.tolist() == [[0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    assert embed_mask(am, [0, 1, 1]).tolist()[0] == [0, 0, 0, 0, 0, 1]  # never empty


def _check_against_paper(enc, tok, items, max_length, wrapper):
    ref = paper_inputs(tok, items, max_length, wrapper)
    ours = enc.tokenize([Text(t, i) for i, t in items])
    for key in ("input_ids", "attention_mask", "embed_mask"):
        assert ours[key].tolist() == ref[key].tolist(), key
    with torch.no_grad():
        out = enc.model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"], position_ids=real_positions(ref["attention_mask"]))
    for mode in ("mean", "weighted_mean", "last_token"):
        torch.testing.assert_close(enc.encode([Text(t, i) for i, t in items], mode), paper_pool(out.last_hidden_state, ref["embed_mask"], mode),
                                   rtol=0, atol=1e-5)
    return ref


def test_chat_template_model_pools_exactly_the_papers_positions(chat_model):
    """Reference test (b): a chat-template model; expected positions from PAPER.md's rule, the wrapper from PAPER.md's
    table for this family (not from our extraction)."""
    family, path = chat_model
    enc = load_encoder(path, max_length=40)
    ref = _check_against_paper(enc, enc.tokenizer, ITEMS, 40, EXPECTED_TURN[family])
    # The quirk the paper's code has: the end-of-turn token is pooled, the text's first token is not.
    eot = enc.tokenizer.convert_tokens_to_ids(EXPECTED_TURN[family][1])
    row = ref["input_ids"][1].tolist()
    assert row[-1] == eot and ref["embed_mask"][1, -1] == 1
    # Truncated at max length: the suffix is cut and the pooled span reaches back into the instruction.
    short = load_encoder(path, max_length=12)
    _check_against_paper(short, short.tokenizer, ITEMS, 12, EXPECTED_TURN[family])


def test_bos_and_instruction_are_attended_but_not_pooled(tmp_path):
    path = make_tiny_variant(tmp_path / "bos", bos=True)
    enc = load_encoder(path, max_length=40)
    assert enc.tokenizer("A dog.")["input_ids"][0] == 2
    ref = _check_against_paper(enc, enc.tokenizer, ITEMS, 40, None)
    # The document row "A person plays an instrument." pools its 5 word tokens (+ "."), never the BOS.
    assert int(ref["embed_mask"][1].sum()) == len(enc.tokenizer("A person plays an instrument.", add_special_tokens=False)["input_ids"])
    ids = ref["input_ids"][1][ref["embed_mask"][1].bool()].tolist()
    assert 2 not in ids


def test_demo_model_pools_the_papers_positions(demo_model):
    enc = load_encoder(demo_model, max_length=32)
    prune(enc.model, 2)
    _check_against_paper(enc, enc.tokenizer, ITEMS, 32, ("<|im_start|>user\n", "<|im_end|>"))
    off = load_encoder(demo_model, max_length=32, chat_template="off")
    prune(off.model, 2)
    _check_against_paper(off, off.tokenizer, ITEMS, 32, None)


def test_pool_weights_only_pooled_tokens():
    h = torch.tensor([[[5.0], [7.0], [1.0], [2.0], [3.0]]])
    em = torch.tensor([[0, 0, 1, 1, 1]])  # two instruction tokens, three text tokens
    torch.testing.assert_close(pool(h, em, "weighted_mean"), torch.tensor([[14 / 6]]))
    torch.testing.assert_close(pool(h, em, "mean"), torch.tensor([[2.0]]))
    torch.testing.assert_close(pool(h, em, "last_token"), torch.tensor([[3.0]]))


def test_pipeline_manifest_describes_the_rule():
    m = TextPipeline("<|im_start|>user\n", "<|im_end|>").manifest()
    assert m == {"instructionFormat": "{instruction}; ", "chatPrefix": "<|im_start|>user\n", "chatSuffix": "<|im_end|>",
                 "embedMask": "last-k", "paddingSide": "left"}
