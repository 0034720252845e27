import pytest
import torch

from conftest import TRIPLES
from l3prune.encoder import load_encoder, pool

TEXTS = [TRIPLES[0][0], TRIPLES[1][1], "A dog.", TRIPLES[3][2]]


def test_weighted_mean_uses_positions_of_real_tokens_only():
    h = torch.tensor([[[1.0], [2.0], [3.0], [0.0]], [[0.0], [1.0], [2.0], [3.0]]])
    right = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])  # row 0 right-padded, row 1 left-padded
    # weights 1,2,3 over the real tokens: (1*1 + 2*2 + 3*3) / 6 = 14/6 for both rows.
    torch.testing.assert_close(pool(h, right, "weighted_mean"), torch.tensor([[14 / 6], [14 / 6]]))
    torch.testing.assert_close(pool(h, right, "mean"), torch.tensor([[2.0], [2.0]]))
    torch.testing.assert_close(pool(h, right, "last_token"), torch.tensor([[3.0], [3.0]]))


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError):
        pool(torch.zeros(1, 2, 3), torch.ones(1, 2), "cls")


def _padding_side_invariance(model_dir, atol):
    enc = load_encoder(model_dir)
    for pooling in ("mean", "weighted_mean", "last_token"):
        enc.tokenizer.padding_side = "right"
        right = enc.encode(TEXTS, pooling)
        enc.tokenizer.padding_side = "left"
        left = enc.encode(TEXTS, pooling)
        # The batch really is padded, on different sides, or the test would prove nothing.
        assert enc.tokenize(TEXTS)["attention_mask"][:, 0].min() == 0
        torch.testing.assert_close(left, right, rtol=0, atol=atol, msg=lambda m: f"{pooling}: {m}")
        # Padding must not leak in either: each text alone gives the same embedding.
        alone = torch.cat([enc.encode([t], pooling) for t in TEXTS])
        torch.testing.assert_close(alone, right, rtol=0, atol=atol, msg=lambda m: f"{pooling} alone: {m}")


def test_left_and_right_padding_give_the_same_embeddings_tiny(tiny_llama):
    _padding_side_invariance(tiny_llama, 1e-5)


def test_left_and_right_padding_give_the_same_embeddings_demo(demo_model):
    _padding_side_invariance(demo_model, 1e-4)
