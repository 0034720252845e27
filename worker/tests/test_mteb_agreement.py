"""The built-in tasks scored by mteb's own evaluators and by the fallback (evaltasks) on the same raw embeddings:
they must agree, so a machine without mteb reports MTEB's numbers too. And the query instructions (LLM2Vec)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

from l3prune import evaltasks as T
from l3prune import mteb_adapter

DATA = REPO / ".demo" / "data"
TOL = 1e-5


def require_mteb():
    """mteb is the `eval` extra, installed by scripts/setup-worker.sh: missing in CI is a broken set-up."""
    try:
        import mteb
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("mteb is not installed; scripts/setup-worker.sh installs worker[eval]")
        pytest.skip("mteb is not installed (pip install -e 'worker[eval]')")
    return mteb


def structured_embeddings(task: T.LoadedTask, dim: int = 24, seed: int = 0) -> np.ndarray:
    """Raw (not unit-length) vectors with some signal: texts of one label near a label centre, pairs and
    query/document matches near each other, norms spread over 0.5..3 so that normalising would change things."""
    rng = np.random.default_rng(seed)
    n = len(task.texts)
    e = rng.normal(size=(n, dim))
    e0 = e.copy()
    d = task.data
    if task.key in ("classification", "clustering"):
        labels = (d["ytr"] + d["yte"]) if task.key == "classification" else d["labels"]
        rows = (d["tr"] + d["te"]) if task.key == "classification" else d["idx"]
        centres = {lab: rng.normal(size=dim) * 1.2 for lab in sorted(set(labels))}
        for r, lab in zip(rows, labels):
            e[r] += centres[lab]
    elif task.key in ("sts", "pair_classification"):
        w = d["gold"] if task.key == "sts" else d["y"]
        for a, b, s in zip(d["a"], d["b"], w):
            e[b] += 0.3 * float(s) * e0[a]
    elif task.key == "retrieval":
        for q, rel in zip(d["qi"], d["relevant"]):
            for j in rel:
                e[d["di"][j]] += 0.8 * e0[q]
    e *= rng.uniform(0.5, 3.0, size=(n, 1))
    return e.astype(np.float32)


def _numbers(scores: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in scores.items():
        if isinstance(v, dict):
            out.update(_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                out.update(_numbers(x, f"{prefix}{k}[{i}].") if isinstance(x, dict) else {f"{prefix}{k}[{i}]": x})
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = float(v)
    return out


def compare(task: T.LoadedTask, emb: np.ndarray, seed: int = 0) -> tuple[dict, dict, float]:
    m, e1 = task.score(emb, seed, T.ENGINE_MTEB)
    f, e2 = task.score(emb, seed, T.ENGINE_FALLBACK)
    assert (e1, e2) == (T.ENGINE_MTEB, T.ENGINE_FALLBACK)
    nm, nf = _numbers(m), _numbers(f)
    missing = set(nf) - set(nm)
    assert not missing, f"fallback fields mteb does not write: {sorted(missing)[:5]}"
    diff = max(abs(nm[k] - nf[k]) for k in nf)
    return m, f, diff


@pytest.mark.parametrize("key", ["sts", "retrieval", "classification", "pair_classification"])
def test_fallback_agrees_with_mteb_on_the_same_embeddings(key):
    require_mteb()
    task = T.LOADERS[key](DATA, None)
    emb = structured_embeddings(task)
    m, f, diff = compare(task, emb)
    print(f"{key}: main {task.metric} mteb={m[task.metric]:.8f} fallback={f[task.metric]:.8f} max |diff| over {len(_numbers(f))} fields = {diff:.2e}")
    assert diff <= TOL, (key, diff)
    assert 0 < abs(m[task.metric]) <= 1


def test_pair_classification_main_score_is_the_max_ap_over_similarities():
    task = T.LOADERS["pair_classification"](DATA, None)
    s, _ = task.score(structured_embeddings(task), 0, T.ENGINE_FALLBACK)
    aps = [s[f"{k}_ap"] for k in ("cosine", "euclidean", "manhattan", "dot")]
    assert task.metric == "max_ap" and s["max_ap"] == max(aps)
    assert len(set(np.round(aps, 9))) > 1, "raw vectors: the similarities rank pairs differently"


def test_clustering_fallback_and_mteb_agree_within_one_std_over_ten_seeds():
    require_mteb()
    task = T.LOADERS["clustering"](DATA, None)
    emb = structured_embeddings(task)
    fb = [task.score(emb, s, T.ENGINE_FALLBACK)[0]["v_measure"] for s in range(10)]
    mt = [task.score(emb, s, T.ENGINE_MTEB)[0]["v_measure"] for s in range(10)]
    std = float(np.std(mt))
    print(f"clustering: fallback mean {np.mean(fb):.6f}, mteb mean {np.mean(mt):.6f} (std {std:.6f}); "
          f"max per-seed |diff| {max(abs(a - b) for a, b in zip(fb, mt)):.2e}")
    assert std > 0, "the bootstrap varies with the seed"
    assert abs(np.mean(fb) - np.mean(mt)) <= std


def test_clustering_follows_mteb_bootstrap_fields():
    task = T.LOADERS["clustering"](DATA, 40)
    s, _ = task.score(structured_embeddings(task), 3, T.ENGINE_FALLBACK)
    assert len(s["v_measures"]) == T.CLUSTERING_RUNS == 10 and len(s["ami_scores"]) == 10
    assert s["v_measure"] == pytest.approx(np.mean(s["v_measures"])) and s["v_measure_std"] == pytest.approx(np.std(s["v_measures"]))


def _classification_dir(tmp_path: Path, per_label: int = 16, labels: int = 4, test_per_label: int = 10) -> Path:
    rows = []
    for li in range(labels):
        for i in range(per_label):
            rows.append({"text": f"train text {li}-{i}", "label": f"label{li}", "split": "train"})
        for i in range(test_per_label):
            rows.append({"text": f"test text {li}-{i}", "label": f"label{li}", "split": "test"})
    (tmp_path / "eval").mkdir(parents=True)
    (tmp_path / "eval" / "classification.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_classification_undersamples_eight_per_label_as_mteb(tmp_path):
    require_mteb()
    task = T.LOADERS["classification"](_classification_dir(tmp_path), None)
    d = task.data
    rng = np.random.default_rng(1)
    centres = {f"label{i}": rng.normal(size=8) * 0.6 for i in range(4)}
    emb = rng.normal(size=(len(task.texts), 8))
    for r, lab in zip(d["tr"] + d["te"], d["ytr"] + d["yte"]):
        emb[r] += centres[lab]
    emb = (emb * rng.uniform(0.5, 3.0, size=(len(emb), 1))).astype(np.float32)
    m, f, diff = compare(task, emb, seed=0)
    print(f"classification 16/label: mteb {m['accuracy']:.6f} fallback {f['accuracy']:.6f} max |diff| {diff:.2e}")
    assert diff <= TOL
    per = [p["accuracy"] for p in m["scores_per_experiment"]]
    assert len(per) == 10 and len(set(per)) > 1, "each experiment trains on its own 8 per label"
    picks = T.undersample([T.LOADERS["classification"](tmp_path, None).data["ytr"][i] for i in range(64)], 0)
    assert all(len(p) == 32 for p in picks) and len({tuple(sorted(p)) for p in picks}) == 10
    # Training on all 16 per label (what the old fallback did) gives another number.
    all16 = T.classification_scores(emb[d["tr"]], d["ytr"], emb[d["te"]], d["yte"], 0, experiments=1, samples_per_label=16)
    keys = ("accuracy", "f1", "f1_weighted", "precision", "recall")
    assert max(abs(all16[k] - m[k]) for k in keys) > 1e-3, ({k: all16[k] for k in keys}, {k: m[k] for k in keys})
    assert len({p["f1"] for p in m["scores_per_experiment"]} | {all16["f1"]}) > 1


def test_without_mteb_the_fallback_scores(monkeypatch):
    monkeypatch.setattr(mteb_adapter, "available", lambda: False)
    task = T.LOADERS["sts"](DATA, 8)
    scores, engine = task.score(structured_embeddings(task), 0)
    assert engine == T.ENGINE_FALLBACK and -1 <= scores["cosine_spearman"] <= 1


def test_with_mteb_installed_mteb_scores():
    require_mteb()
    task = T.LOADERS["sts"](DATA, 8)
    assert task.score(structured_embeddings(task), 0)[1] == T.ENGINE_MTEB


# ---------------------------------------------------------------------------------------------------------------
# instructions
def test_the_default_instructions_are_llm2vecs_table_plus_the_built_in_tasks():
    from l3prune import specs

    table = specs.defaults("evaluate")["instructions"]
    assert table["STS12"] == "Retrieve semantically similar text:"
    assert table["SciFact"] == "Given a scientific claim, retrieve documents that support or refute the claim:"
    assert table["Banking77Classification"] == "Given a online banking query, find the corresponding intents:"
    assert len([k for k in table if not k.startswith(("LeeDocument", "WordNet"))]) == 67
    for key in T.TASK_KEYS:
        name = T.LOADERS[key](DATA, 8).name
        assert table[name].endswith(":"), name


def test_instructions_go_to_queries_only_in_retrieval_and_to_every_text_elsewhere():
    from l3prune.textpipe import Text, as_text

    r = T.LOADERS["retrieval"](DATA, 8)
    got = r.inputs("Given a word, retrieve its dictionary definition")
    nq = len(r.data["qi"])
    assert all(isinstance(x, Text) and x.instruction == "Given a word, retrieve its dictionary definition:" for x in got[:nq])
    assert all(isinstance(x, str) for x in got[nq:]) and [as_text(x).text for x in got] == r.texts
    for key in ("sts", "classification", "clustering", "pair_classification"):
        t = T.LOADERS[key](DATA, 8)
        assert all(isinstance(x, Text) and x.instruction == "Do it:" for x in t.inputs("Do it"))
    assert T.LOADERS["sts"](DATA, 8).inputs(None) == T.LOADERS["sts"](DATA, 8).texts
    assert T.format_query("", "x") == "x" and T.mteb_instruction("Classify.") == "Classify:"


def test_the_mteb_encoder_puts_the_instruction_on_queries_only_for_retrieval():
    from types import SimpleNamespace

    from l3prune.textpipe import as_text

    seen = []
    enc = mteb_adapter.MtebEncoder(lambda texts: seen.append(list(texts)) or np.ones((len(texts), 2)),
                                   instructions={"SciFact": "Find it:", "STS12": "Same:"})
    ret, sts = SimpleNamespace(name="SciFact", type="Retrieval"), SimpleNamespace(name="STS12", type="STS")
    enc.encode([{"text": ["q"]}], task_metadata=ret, prompt_type=SimpleNamespace(value="query"))
    enc.encode([{"text": ["d"]}], task_metadata=ret, prompt_type=SimpleNamespace(value="document"))
    enc.encode([{"text": ["s"]}], task_metadata=sts, prompt_type=None)
    enc.encode([{"text": ["u"]}], task_metadata=SimpleNamespace(name="Other", type="STS"), prompt_type=None)
    assert [[(as_text(x).instruction, as_text(x).text) for x in b] for b in seen] == [
        [("Find it:", "q")], [(None, "d")], [("Same:", "s")], [(None, "u")]]
    # Raw vectors in, cosine similarity out.
    a, b = np.array([[3.0, 0.0]]), np.array([[1.0, 1.0]])
    assert float(np.asarray(enc.similarity(a, b))[0, 0]) == pytest.approx(1 / np.sqrt(2))
