"""p % pruned -> layers kept: the paper's floor, in exact arithmetic, against the vectors the TypeScript side uses."""
import json

import pytest

from conftest import PROTOCOL
from l3prune.cutrule import keep_for_prune_percent

FILE = json.loads((PROTOCOL / "keep-rule-vectors.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("v", FILE["vectors"], ids=[f"{v['numLayers']}-{v['percent']}" for v in FILE["vectors"]])
def test_keep_rule_matches_the_shared_vectors(v):
    assert keep_for_prune_percent(v["numLayers"], v["percent"]) == v["keep"]


@pytest.mark.parametrize("v", FILE["invalid"], ids=[f"{v['numLayers']}-{v['percent']}" for v in FILE["invalid"]])
def test_keep_rule_refuses_what_the_typescript_side_refuses(v):
    with pytest.raises(ValueError):
        keep_for_prune_percent(v["numLayers"], v["percent"])


def test_the_paper_cases_are_there_and_the_rule_is_the_papers_floor_where_floats_agree():
    have = {(v["numLayers"], v["percent"]): v["keep"] for v in FILE["vectors"]}
    assert have[(32, 10)] == 28 and have[(32, 20)] == 25 and have[(30, 30)] == 21 and have[(1, 50)] == 1
    for n in range(1, 65):
        for p in range(100):
            exact = keep_for_prune_percent(n, p)
            assert exact == max(1, n * (100 - p) // 100)
            # The paper's int(N * (1 - p)) drifts below the exact floor by at most one layer, never above it.
            assert max(1, int(n * (1 - p / 100))) in (exact, exact - 1)
