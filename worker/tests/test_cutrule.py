import json
import math

import pytest

from conftest import PROTOCOL
from l3prune.cutrule import cut_points

VECTORS = json.loads((PROTOCOL / "cut-rule-vectors.json").read_text(encoding="utf-8"))["vectors"]


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_cut_rule_matches_the_shared_vectors(v):
    assert cut_points(v["losses"]) == (v["small"], v["large"])


def test_vectors_cover_the_edge_cases_the_typescript_side_relies_on():
    ns = {len(v["losses"]) for v in VECTORS}
    assert {1, 2, 3} <= ns and any(n % 2 for n in ns) and 30 in ns
    assert any(v["large"] == len(v["losses"]) for v in VECTORS), "a curve whose minimum is at depth N"


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [math.inf, 1.0], [1.0, "2"]])
def test_cut_rule_rejects_empty_and_non_finite_curves(bad):
    with pytest.raises(ValueError):
        cut_points(bad)
