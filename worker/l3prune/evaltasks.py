"""Built-in evaluation tasks of the `evaluate` verb: data readers, MTEB's metrics, MTEB's result-file format.

Each task turns a small local data set into a list of unique texts to embed and a scorer that takes their
unit-length embeddings (rows in the same order) and returns MTEB's metric fields for that task type:

  key                  MTEB task name                    type                main score
  sts                  LeeDocumentSTS                    STS                 cosine_spearman
  retrieval            WordNetWordToGlossRetrieval       Retrieval           ndcg_at_10
  classification       WordNetLexnameClassification      Classification      accuracy
  clustering           WordNetLexnameClustering          Clustering          v_measure
  pair_classification  WordNetSensePairClassification    PairClassification  cosine_ap

The data (docs/data-sources.md) lives in <data-dir>/sts.jsonl and <data-dir>/eval/ (demo_assets.build_eval).
`cap` (--max-examples) shrinks a task for quick runs; how each task shrinks is in its reader's docstring, and
a capped run's results name the cap in dataset_revision, so they are never mistaken for full-set numbers.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .data import DataError
from .fileio import iter_jsonl

# The MTEB result-file format these files follow (TaskResult, flat pair-classification scores since 1.12.48);
# the local label says no MTEB code computed them. MTEB's loader accepts it (a PEP 440 version >= 1.12.48).
MTEB_FORMAT_VERSION = "1.12.48+l3prune"
LANGUAGES = ["eng-Latn"]
SPLIT = "test"
RETRIEVAL_KS = (1, 3, 5, 10, 20, 100, 1000)
CLUSTERING_RUNS = 5
CLASSIFICATION_MAX_ITER = 100  # MTEB's logistic regression setting
MIN_CAP = 4


# ---------------------------------------------------------------------------------------------------------------
# metrics (MTEB's definitions; each is checked against hand-computed values in tests/test_evaluate.py)
def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(np.asarray(x, float), np.asarray(y, float)).statistic)


def pearson(x, y) -> float:
    from scipy.stats import pearsonr

    return float(pearsonr(np.asarray(x, float), np.asarray(y, float)).statistic)


def retrieval_metrics(scores: np.ndarray, relevant: list[set[int]], ks=RETRIEVAL_KS) -> dict:
    """nDCG, MAP, recall, precision and MRR at each k (binary relevance, trec_eval's definitions).

    scores: (queries, docs) similarities; relevant[q]: indices of q's relevant docs. Ties rank the lower doc
    index first, so results do not depend on sort-algorithm details. MAP@k divides by all of q's relevant docs
    and P@k by k even when fewer than k docs exist, as trec_eval's map_cut and P do.
    """
    out = {f"{m}_at_{k}": 0.0 for m in ("ndcg", "map", "recall", "precision", "mrr") for k in ks}
    nq = len(relevant)
    for q in range(nq):
        rel = relevant[q]
        if not rel:
            raise ValueError(f"query {q} has no relevant document")
        order = np.argsort(-scores[q], kind="stable")
        hits = np.isin(order, list(rel))
        ranks = np.flatnonzero(hits) + 1  # 1-based ranks of the relevant docs
        for k in ks:
            top = ranks[ranks <= k]
            dcg = float(np.sum(1.0 / np.log2(top + 1)))
            idcg = float(np.sum(1.0 / np.log2(np.arange(1, min(k, len(rel)) + 1) + 1)))
            out[f"ndcg_at_{k}"] += dcg / idcg
            out[f"map_at_{k}"] += float(np.sum(np.arange(1, len(top) + 1) / top)) / len(rel)
            out[f"recall_at_{k}"] += len(top) / len(rel)
            out[f"precision_at_{k}"] += len(top) / k
            out[f"mrr_at_{k}"] += 1.0 / top[0] if len(top) else 0.0
    return {k: v / nq for k, v in out.items()}


def average_precision(labels, scores) -> float:
    """Area under the precision-recall curve as a step function (sklearn's average_precision_score, as MTEB)."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(np.asarray(labels, int), np.asarray(scores, float)))


def best_accuracy(labels, scores) -> tuple[float, float]:
    """Best accuracy of 'similar iff score > t' over all thresholds t (midpoints between sorted scores)."""
    y = np.asarray(labels, int)[np.argsort(-np.asarray(scores, float), kind="stable")]
    s = np.sort(np.asarray(scores, float))[::-1]
    n, neg = len(y), int((y == 0).sum())
    best, thr = 0.0, -1.0
    pos_above = neg_above = 0
    for i in range(n - 1):
        pos_above += y[i] == 1
        neg_above += y[i] == 0
        acc = (pos_above + (neg - neg_above)) / n
        if acc > best:
            best, thr = acc, (s[i] + s[i + 1]) / 2
    return float(best), float(thr)


def best_f1(labels, scores) -> tuple[float, float, float, float]:
    """(f1, precision, recall, threshold) at the threshold that maximises F1, as MTEB's pair classification."""
    y = np.asarray(labels, int)[np.argsort(-np.asarray(scores, float), kind="stable")]
    s = np.sort(np.asarray(scores, float))[::-1]
    total = int(y.sum())
    best = (0.0, 0.0, 0.0, 0.0)
    tp = 0
    for i in range(len(y) - 1):
        tp += y[i] == 1
        if tp:
            p, r = tp / (i + 1), tp / total
            f = 2 * p * r / (p + r)
            if f > best[0]:
                best = (f, p, r, (s[i] + s[i + 1]) / 2)
    return tuple(float(v) for v in best)  # type: ignore[return-value]


def v_measure(labels, clusters) -> float:
    from sklearn.metrics import v_measure_score

    return float(v_measure_score(labels, clusters))


def classification_scores(x_train, y_train, x_test, y_test, seed: int) -> dict:
    """MTEB's linear probe: logistic regression on the frozen embeddings, scored on the test split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    clf = LogisticRegression(max_iter=CLASSIFICATION_MAX_ITER, random_state=seed)
    clf.fit(x_train, y_train)
    pred = clf.predict(x_test)
    return {
        "accuracy": float(accuracy_score(y_test, pred)),
        "f1": float(f1_score(y_test, pred, average="macro")),
        "f1_weighted": float(f1_score(y_test, pred, average="weighted")),
    }


def clustering_scores(x, labels, seed: int, runs: int = CLUSTERING_RUNS) -> dict:
    """Mean V-measure of `runs` k-means clusterings (k = number of labels), each from its own seeded init."""
    from sklearn.cluster import KMeans

    k = len(set(labels))
    vs = []
    for r in range(runs):
        km = KMeans(n_clusters=k, n_init=1, random_state=seed + r)
        vs.append(v_measure(labels, km.fit_predict(x)))
    return {"v_measure": float(np.mean(vs)), "v_measure_std": float(np.std(vs)), "v_measures": vs}


# ---------------------------------------------------------------------------------------------------------------
# tasks
@dataclass
class LoadedTask:
    key: str
    name: str
    type: str
    metric: str
    texts: list[str]
    files: list[Path]
    examples: int
    cap: int | None
    scorer: Callable[[np.ndarray, int], dict] = field(repr=False)

    def revision(self) -> str:
        """What was evaluated: a digest of the data files, plus the cap when the task was shrunk."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        return f"local-{h.hexdigest()[:16]}" + (f"-max{self.cap}" if self.cap else "")

    def score(self, emb: np.ndarray, seed: int) -> dict:
        scores = self.scorer(emb, seed)
        return {k: _finite(v) for k, v in scores.items()}


def _finite(v):
    # A degenerate model (all embeddings equal) makes correlations undefined; JSON has no NaN.
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _read_jsonl(path: Path, fields: dict[str, type | tuple], what: str) -> list[dict]:
    if not path.is_file():
        raise DataError(
            f"{what} data file {path} does not exist; build the demo data with scripts/setup-worker.sh "
            "or pass --data-dir with the evaluation files (see docs/data-sources.md)"
        )
    rows = []
    for lineno, obj in iter_jsonl(path, DataError):
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        for k, t in fields.items():
            if k not in obj:
                raise DataError(f"{path}:{lineno}: missing field '{k}'; each line needs {', '.join(fields)}")
            if not isinstance(obj[k], t) or isinstance(obj[k], bool):
                raise DataError(f"{path}:{lineno}: field '{k}' has the wrong type ({type(obj[k]).__name__})")
            if isinstance(obj[k], str) and not obj[k].strip():
                raise DataError(f"{path}:{lineno}: field '{k}' is empty")
        rows.append(obj)
    if not rows:
        raise DataError(f"{what} data file {path} is empty")
    return rows


def _unique(texts) -> tuple[list[str], dict[str, int]]:
    index: dict[str, int] = {}
    for t in texts:
        index.setdefault(t, len(index))
    return list(index), index


def _first_labels(rows: list[dict], cap: int | None) -> list[dict]:
    """A cap keeps max(2, cap // 4) labels (in file order), so capped clusters still hold several texts."""
    if not cap:
        return rows
    labels: list[str] = []
    for r in rows:
        if r["label"] not in labels:
            labels.append(r["label"])
    keep = set(labels[: max(2, cap // 4)])
    return [r for r in rows if r["label"] in keep]


def load_sts(data_dir: Path, cap: int | None) -> LoadedTask:
    """sts.jsonl {sentence1, sentence2, score}; a cap keeps that many pairs, drawn with a fixed seed (not --seed,
    so runs with different seeds see the same pairs)."""
    path = data_dir / "sts.jsonl"
    rows = _read_jsonl(path, {"sentence1": str, "sentence2": str, "score": (int, float)}, "STS")
    if cap and cap < len(rows):
        rows = [rows[i] for i in sorted(random.Random(0).sample(range(len(rows)), cap))]
    texts, ix = _unique([t for r in rows for t in (r["sentence1"], r["sentence2"])])
    a = [ix[r["sentence1"]] for r in rows]
    b = [ix[r["sentence2"]] for r in rows]
    gold = [float(r["score"]) for r in rows]

    def scorer(e: np.ndarray, seed: int) -> dict:
        cos = np.sum(e[a] * e[b], axis=1)
        man = -np.sum(np.abs(e[a] - e[b]), axis=1)
        euc = -np.linalg.norm(e[a] - e[b], axis=1)
        out = {}
        for name, s in (("cosine", cos), ("manhattan", man), ("euclidean", euc)):
            out[f"{name}_pearson"] = pearson(s, gold)
            out[f"{name}_spearman"] = spearman(s, gold)
        out["pearson"], out["spearman"] = out["cosine_pearson"], out["cosine_spearman"]
        return out

    return LoadedTask("sts", "LeeDocumentSTS", "STS", "cosine_spearman", texts, [path], len(rows), cap, scorer)


def load_retrieval(data_dir: Path, cap: int | None) -> LoadedTask:
    """BEIR layout in eval/retrieval/: corpus.jsonl {_id, text}, queries.jsonl {_id, text}, qrels/test.tsv.
    A cap keeps the first `cap` queries and a corpus of their relevant documents plus the first others in file
    order, up to 4 x cap documents."""
    base = data_dir / "eval" / "retrieval"
    corpus = _read_jsonl(base / "corpus.jsonl", {"_id": str, "text": str}, "retrieval corpus")
    queries = _read_jsonl(base / "queries.jsonl", {"_id": str, "text": str}, "retrieval queries")
    qrels_path = base / "qrels" / "test.tsv"
    if not qrels_path.is_file():
        raise DataError(f"retrieval data file {qrels_path} does not exist; build the demo data with scripts/setup-worker.sh")
    try:
        qrels_text = qrels_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{qrels_path}: byte {e.start} is not UTF-8; save the file as UTF-8") from None
    except OSError as e:
        raise DataError(f"{qrels_path} cannot be read ({e.strerror or e})") from None
    qrels: dict[str, set[str]] = {}
    for lineno, line in enumerate(qrels_text.splitlines(), start=1):
        parts = line.split("\t")
        if lineno == 1 and parts[0] == "query-id" or not line.strip():
            continue
        if len(parts) != 3:
            raise DataError(f"{qrels_path}:{lineno}: expected query-id<TAB>corpus-id<TAB>score")
        try:
            score = float(parts[2])
        except ValueError:
            raise DataError(f"{qrels_path}:{lineno}: score {parts[2]!r} is not a number") from None
        if score > 0:
            qrels.setdefault(parts[0], set()).add(parts[1])
    doc_ids = {d["_id"] for d in corpus}
    for q, ds in qrels.items():
        missing = ds - doc_ids
        if missing:
            raise DataError(f"{qrels_path}: query {q} is relevant to document {sorted(missing)[0]}, which is not in corpus.jsonl")
    queries = [q for q in queries if q["_id"] in qrels]
    if not queries:
        raise DataError(f"{qrels_path} gives no query of queries.jsonl a relevant document")
    if cap:
        queries = queries[:cap]
        rel = set().union(*(qrels[q["_id"]] for q in queries))
        room = max(4 * cap, len(rel)) - len(rel)
        others = [d for d in corpus if d["_id"] not in rel][:room]
        keep = rel | {d["_id"] for d in others}
        corpus = [d for d in corpus if d["_id"] in keep]
    texts, ix = _unique([q["text"] for q in queries] + [d["text"] for d in corpus])
    qi = [ix[q["text"]] for q in queries]
    di = [ix[d["text"]] for d in corpus]
    pos = {d["_id"]: j for j, d in enumerate(corpus)}
    relevant = [{pos[d] for d in qrels[q["_id"]]} for q in queries]

    def scorer(e: np.ndarray, seed: int) -> dict:
        return retrieval_metrics(e[qi] @ e[di].T, relevant)

    files = [base / "corpus.jsonl", base / "queries.jsonl", qrels_path]
    return LoadedTask("retrieval", "WordNetWordToGlossRetrieval", "Retrieval", "ndcg_at_10", texts, files, len(queries), cap, scorer)


def load_classification(data_dir: Path, cap: int | None) -> LoadedTask:
    """eval/classification.jsonl {text, label, split: train|test}; a cap keeps max(2, cap // 4) labels and the
    first `cap` texts of each split."""
    path = data_dir / "eval" / "classification.jsonl"
    rows = _first_labels(_read_jsonl(path, {"text": str, "label": str, "split": str}, "classification"), cap)
    train = [r for r in rows if r["split"] == "train"][: cap or None]
    test = [r for r in rows if r["split"] == "test"][: cap or None]
    if not train or not test:
        raise DataError(f"{path} needs rows with split 'train' and rows with split 'test'")
    if len({r["label"] for r in train}) < 2:
        raise DataError(f"{path}: the train split needs at least two labels")
    texts, ix = _unique([r["text"] for r in train + test])
    tr, te = [ix[r["text"]] for r in train], [ix[r["text"]] for r in test]
    ytr, yte = [r["label"] for r in train], [r["label"] for r in test]

    def scorer(e: np.ndarray, seed: int) -> dict:
        return classification_scores(e[tr], ytr, e[te], yte, seed)

    return LoadedTask("classification", "WordNetLexnameClassification", "Classification", "accuracy", texts, [path], len(test), cap, scorer)


def load_clustering(data_dir: Path, cap: int | None) -> LoadedTask:
    """eval/clustering.jsonl {text, label}; a cap keeps max(2, cap // 4) labels and their first `cap` texts."""
    path = data_dir / "eval" / "clustering.jsonl"
    rows = _first_labels(_read_jsonl(path, {"text": str, "label": str}, "clustering"), cap)[: cap or None]
    if len({r["label"] for r in rows}) < 2:
        raise DataError(f"{path}: clustering needs texts of at least two labels")
    texts, ix = _unique([r["text"] for r in rows])
    idx = [ix[r["text"]] for r in rows]
    labels = [r["label"] for r in rows]

    def scorer(e: np.ndarray, seed: int) -> dict:
        return clustering_scores(e[idx], labels, seed)

    return LoadedTask("clustering", "WordNetLexnameClustering", "Clustering", "v_measure", texts, [path], len(rows), cap, scorer)


def load_pair_classification(data_dir: Path, cap: int | None) -> LoadedTask:
    """eval/pair_classification.jsonl {sentence1, sentence2, label: 1 similar | 0 not}; a cap keeps the first
    `cap` pairs (the file alternates labels, so a prefix stays balanced)."""
    path = data_dir / "eval" / "pair_classification.jsonl"
    rows = _read_jsonl(path, {"sentence1": str, "sentence2": str, "label": int}, "pair classification")[: cap or None]
    bad = [r["label"] for r in rows if r["label"] not in (0, 1)]
    if bad:
        raise DataError(f"{path}: label must be 0 or 1, got {bad[0]!r}")
    if len({r["label"] for r in rows}) < 2:
        raise DataError(f"{path}: pair classification needs pairs of both labels (0 and 1)")
    texts, ix = _unique([t for r in rows for t in (r["sentence1"], r["sentence2"])])
    a = [ix[r["sentence1"]] for r in rows]
    b = [ix[r["sentence2"]] for r in rows]
    y = [r["label"] for r in rows]

    def scorer(e: np.ndarray, seed: int) -> dict:
        cos = np.sum(e[a] * e[b], axis=1)
        acc, acc_t = best_accuracy(y, cos)
        f1, p, r, f1_t = best_f1(y, cos)
        return {"cosine_accuracy": acc, "cosine_accuracy_threshold": acc_t, "cosine_f1": f1, "cosine_f1_threshold": f1_t,
                "cosine_precision": p, "cosine_recall": r, "cosine_ap": average_precision(y, cos)}

    return LoadedTask("pair_classification", "WordNetSensePairClassification", "PairClassification", "cosine_ap", texts, [path], len(rows), cap, scorer)


LOADERS: dict[str, Callable[[Path, int | None], LoadedTask]] = {
    "sts": load_sts,
    "retrieval": load_retrieval,
    "classification": load_classification,
    "clustering": load_clustering,
    "pair_classification": load_pair_classification,
}
TASK_KEYS = tuple(LOADERS)


def latency_texts(data_dir: Path) -> list[str] | None:
    path = data_dir / "eval" / "latency.jsonl"
    if not path.is_file():
        return None
    return [r["text"] for r in _read_jsonl(path, {"text": str}, "latency")]


def task_result_file(task: LoadedTask, scores: dict, seconds: float) -> dict:
    """MTEB's TaskResult JSON (what TaskResult.to_disk writes; TaskResult.from_disk reads it back)."""
    entry = {**_round(scores), "main_score": _round(scores.get(task.metric)), "hf_subset": "default", "languages": LANGUAGES}
    return {
        "dataset_revision": task.revision(),
        "task_name": task.name,
        "mteb_version": MTEB_FORMAT_VERSION,
        "scores": {SPLIT: [entry]},
        "evaluation_time": round(seconds, 3),
        "kg_co2_emissions": None,
    }


def _round(v, n: int = 6):
    # TaskResult.to_disk rounds scores to 6 decimals; the same here keeps files comparable.
    if isinstance(v, dict):
        return {k: _round(x, n) for k, x in v.items()}
    if isinstance(v, list):
        return [_round(x, n) for x in v]
    if isinstance(v, float):
        return round(v, n)
    return v
