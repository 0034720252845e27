"""Built-in evaluation tasks of the `evaluate` verb: data readers, MTEB's metrics, MTEB's result-file format.

Each task turns a small local data set into a list of texts to embed (which of them are "queries", the texts
that get the task's instruction, follows LLM2Vec: every text but a retrieval document) and scores their raw
embeddings (rows in the same order; the model's own output, not normalised) with MTEB's procedure for that task
type. Where the `mteb` package is installed, mteb's own evaluators compute the scores (mteb_adapter.score_builtin,
on task objects built from this data); without it the fallback here follows the same procedure step by step:

  key                  MTEB task name                    type                main score
  sts                  LeeDocumentSTS                    STS                 cosine_spearman
  retrieval            WordNetWordToGlossRetrieval       Retrieval           ndcg_at_10
  classification       WordNetLexnameClassification      Classification      accuracy
  clustering           WordNetLexnameClustering          Clustering          v_measure
  pair_classification  WordNetSensePairClassification    PairClassification  max_ap

STS: Pearson/Spearman of cosine, -Manhattan, -Euclidean similarity. Retrieval: cosine ranking, trec_eval metrics.
Classification: logistic regression (max_iter 100) on raw embeddings, averaged over 10 experiments that each
train on 8 examples per label, undersampled as mteb's AbsTaskClassification does. Clustering: mteb's
AbsTaskClustering: 10 bootstrap samples (16384 draws with replacement), MiniBatchKMeans (batch 512, k-means++,
n_init 1), V-measure averaged. Pair classification: best accuracy/F1 thresholds and AP for cosine, Euclidean,
Manhattan and dot product; main score the max AP.

The data (docs/data-sources.md) lives in <data-dir>/sts.jsonl and <data-dir>/eval/ (demo_assets.build_eval).
`cap` (--max-examples) shrinks a task for quick runs; how each task shrinks is in its reader's docstring, and
a capped run's results name the cap in dataset_revision, so they are never mistaken for full-set numbers.
"""
from __future__ import annotations

import hashlib
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .data import DataError
from .fileio import iter_jsonl

# The MTEB result-file format these files follow (TaskResult, flat pair-classification scores since 1.12.48);
# the local label says no MTEB code computed them (a file mteb scored names mteb's version). MTEB's loader accepts
# it (a PEP 440 version >= 1.12.48).
MTEB_FORMAT_VERSION = "1.12.48+l3prune"
ENGINE_MTEB = "mteb"
ENGINE_FALLBACK = "l3prune"
LANGUAGES = ["eng-Latn"]
SPLIT = "test"
RETRIEVAL_KS = (1, 3, 5, 10, 20, 100, 1000)
# mteb 2.26's settings (AbsTaskClassification, AbsTaskClustering); the fallback uses the same.
CLASSIFICATION_MAX_ITER = 100
CLASSIFICATION_EXPERIMENTS = 10
SAMPLES_PER_LABEL = 8
CLUSTERING_RUNS = 10  # mteb's n_clusters: bootstrap samples per level
CLUSTERING_SAMPLE = 16_384  # mteb's max_documents_per_cluster: draws (with replacement) per bootstrap sample
KMEANS_BATCH_SIZE = 512
MIN_CAP = 4


def seed32(seed: int) -> int:
    """The spec's seed as numpy and scikit-learn accept it (0 .. 2**32 - 1); both engines get the same value."""
    return int(seed) % 2**32


def mteb_instruction(instruction: str) -> str:
    """LLM2Vec's normalisation (mteb's llm2vec_instruction): a non-empty instruction ends with a colon."""
    instruction = instruction.strip()
    if instruction and not instruction.endswith(":"):
        instruction = instruction.strip(".") + ":"
    return instruction


def format_query(instruction: str | None, text: str):
    """The one place an evaluation query gets its task instruction: a textpipe.Text (the text pipeline builds the
    string the model sees, textpipe.INSTRUCTION_FORMAT, and pools the text's own tokens only); no instruction: the
    bare text."""
    inst = mteb_instruction(instruction or "")
    if not inst:
        return text
    from .textpipe import EVAL_INSTRUCTION_FORMAT, Text

    return Text(text, inst, EVAL_INSTRUCTION_FORMAT)


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


def best_accuracy(labels, scores, high_score_more_similar: bool = True) -> tuple[float, float]:
    """Best accuracy of 'similar iff score beyond t' over thresholds t between neighbouring sorted scores, as
    mteb's pair classification: a threshold never splits tied scores; the first best is kept."""
    rows = sorted(zip(np.asarray(scores, float).tolist(), np.asarray(labels, int).tolist()), key=lambda r: r[0],
                  reverse=high_score_more_similar)
    n = len(rows)
    best, thr = 0.0, -1.0
    pos_above, neg_below = 0, sum(1 for _, y in rows if y == 0)
    for i in range(n - 1):
        if rows[i][1] == 1:
            pos_above += 1
        else:
            neg_below -= 1
        if rows[i][0] == rows[i + 1][0]:
            continue
        acc = (pos_above + neg_below) / n
        if acc > best:
            best, thr = acc, (rows[i][0] + rows[i + 1][0]) / 2
    return float(best), float(thr)


def best_f1(labels, scores, high_score_more_similar: bool = True) -> tuple[float, float, float, float]:
    """(f1, precision, recall, threshold) at the threshold that maximises F1, as mteb's pair classification."""
    rows = sorted(zip(np.asarray(scores, float).tolist(), np.asarray(labels, int).tolist()), key=lambda r: r[0],
                  reverse=high_score_more_similar)
    total = sum(y for _, y in rows)
    best = (0.0, 0.0, 0.0, 0.0)
    tp = 0
    for i in range(len(rows) - 1):
        tp += rows[i][1] == 1
        if rows[i][0] == rows[i + 1][0]:
            continue
        if tp:
            p, r = tp / (i + 1), tp / total
            f = 2 * p * r / (p + r)
            if f > best[0]:
                best = (f, p, r, (rows[i][0] + rows[i + 1][0]) / 2)
    return tuple(float(v) for v in best)  # type: ignore[return-value]


def pair_classification_scores(e1: np.ndarray, e2: np.ndarray, labels) -> dict:
    """mteb's PairClassification metrics: accuracy, F1 (with precision, recall), AP for the model's similarity
    (cosine), cosine, Manhattan and Euclidean distance (lower = more similar) and dot product; max_* over them."""
    from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

    e1, e2 = np.asarray(e1), np.asarray(e2)
    cos = 1 - paired_cosine_distances(e1, e2)
    kinds = [("similarity", cosine_pairwise(e1, e2), True), ("cosine", cos, True), ("manhattan", paired_manhattan_distances(e1, e2), False),
             ("euclidean", paired_euclidean_distances(e1, e2), False), ("dot", np.einsum("ij,ij->i", e1, e2), True)]
    y = np.asarray(labels, int)
    out: dict = {}
    best: dict[str, list[float]] = {}
    for name, s, high in kinds:
        acc, _ = best_accuracy(y, s, high)
        f1, p, r, _ = best_f1(y, s, high)
        vals = {"accuracy": acc, "f1": f1, "precision": p, "recall": r, "ap": average_precision(y, s * (1 if high else -1))}
        for k, v in vals.items():
            out[f"{name}_{k}"] = v
            best.setdefault(k, []).append(v)
    for k, vs in best.items():
        out[f"max_{k}"] = max(vs)
    return out


def sts_scores(e1: np.ndarray, e2: np.ndarray, gold) -> dict:
    """mteb's STS metrics: Pearson and Spearman of cosine, -Manhattan and -Euclidean against the gold scores."""
    from sklearn.metrics.pairwise import paired_cosine_distances, paired_euclidean_distances, paired_manhattan_distances

    sims = {"cosine": 1 - paired_cosine_distances(e1, e2), "manhattan": -paired_manhattan_distances(e1, e2),
            "euclidean": -paired_euclidean_distances(e1, e2)}
    out = {}
    for name, s in sims.items():
        out[f"{name}_pearson"] = pearson(gold, s)
        out[f"{name}_spearman"] = spearman(gold, s)
    # mteb: pearson/spearman are of the model's own similarity (mteb_adapter's encoders: cosine_pairwise).
    sim = cosine_pairwise(e1, e2)
    out["pearson"], out["spearman"] = pearson(gold, sim), spearman(gold, sim)
    return out


def cosine_pairwise(a, b) -> np.ndarray:
    """Row-wise cosine similarity in float64: the similarity_pairwise of the worker's MTEB models."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    return np.sum(a * b, axis=-1) / np.where(na * nb == 0, 1, na * nb)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    return (a / np.where(na == 0, 1, na)) @ (b / np.where(nb == 0, 1, nb)).T


def v_measure(labels, clusters) -> float:
    from sklearn.metrics import v_measure_score

    return float(v_measure_score(labels, clusters))


def undersample(labels, seed: int, experiments: int = CLASSIFICATION_EXPERIMENTS,
                samples_per_label: int = SAMPLES_PER_LABEL) -> list[list[int]]:
    """The training rows of each experiment, as mteb's AbsTaskClassification._undersample_data draws them: one
    index list, shuffled again before each experiment by a fresh RandomState(seed); the first samples_per_label
    rows of each label in that order."""
    idxs = list(range(len(labels)))
    out = []
    for _ in range(experiments):
        np.random.RandomState(seed32(seed)).shuffle(idxs)
        count: dict = {}
        chosen = []
        for i in idxs:
            if count.get(labels[i], 0) < samples_per_label:
                chosen.append(i)
                count[labels[i]] = count.get(labels[i], 0) + 1
        out.append(chosen)
    return out


def _classification_metrics(y_test, pred) -> dict:
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, precision_score, recall_score

    out = {
        "accuracy": float(accuracy_score(y_test, pred)),
        "f1": float(f1_score(y_test, pred, average="macro")),
        "f1_weighted": float(f1_score(y_test, pred, average="weighted")),
        "precision": float(precision_score(y_test, pred, average="macro")),
        "precision_weighted": float(precision_score(y_test, pred, average="weighted")),
        "recall": float(recall_score(y_test, pred, average="macro")),
        "recall_weighted": float(recall_score(y_test, pred, average="weighted")),
        "ap": None,
        "ap_weighted": None,
    }
    if len(np.unique(y_test)) == 2:
        out["ap"] = float(average_precision_score(y_test, pred, average="macro"))
        out["ap_weighted"] = float(average_precision_score(y_test, pred, average="weighted"))
    return out


def classification_scores(x_train, y_train, x_test, y_test, seed: int, experiments: int = CLASSIFICATION_EXPERIMENTS,
                          samples_per_label: int = SAMPLES_PER_LABEL) -> dict:
    """mteb's linear probe: per experiment a logistic regression (max_iter 100, random_state = seed) fitted on
    the undersampled training rows' embeddings, scored on the test split; the metrics averaged over experiments.
    Labels are integers (0..k-1 in sorted label order), as mteb's datasets hold them."""
    from sklearn.linear_model import LogisticRegression

    names = sorted(set(y_train) | set(y_test))
    code = {n: i for i, n in enumerate(names)}
    ytr = np.array([code[v] for v in y_train])
    yte = np.array([code[v] for v in y_test])
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    per = []
    for rows in undersample(ytr.tolist(), seed, experiments, samples_per_label):
        clf = LogisticRegression(max_iter=CLASSIFICATION_MAX_ITER, random_state=seed32(seed))
        with warnings.catch_warnings():  # max_iter 100 often stops short, as in mteb; stderr is for errors only
            warnings.simplefilter("ignore")
            clf.fit(x_train[rows], ytr[rows])
        per.append(_classification_metrics(yte, clf.predict(x_test)))
    avg = {}
    for k in per[0]:
        vals = [p[k] for p in per if p[k] is not None]
        avg[k] = float(np.mean(vals)) if vals else None
    return {**avg, "scores_per_experiment": per}


def clustering_scores(x, labels, seed: int, runs: int = CLUSTERING_RUNS, sample: int = CLUSTERING_SAMPLE) -> dict:
    """mteb's AbsTaskClustering on one label level: `runs` bootstrap samples of `sample` rows drawn with
    replacement (random.Random(seed).choices), each clustered by one MiniBatchKMeans (k = number of labels,
    batch 512, k-means++, n_init 1, random_state = seed); mean and std of V-measure and adjusted mutual information."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics.cluster import adjusted_mutual_info_score, v_measure_score

    x = np.asarray(x)
    y = np.asarray(labels)
    rng = random.Random(seed32(seed))
    km = MiniBatchKMeans(n_clusters=np.unique(y).size, batch_size=KMEANS_BATCH_SIZE, init="k-means++", n_init=1,
                         random_state=seed32(seed))
    vs, amis = [], []
    for _ in range(runs):
        idx = rng.choices(range(len(x)), k=sample)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = km.fit_predict(x[idx])
        vs.append(float(v_measure_score(y[idx], pred)))
        amis.append(float(adjusted_mutual_info_score(y[idx], pred)))
    return {"v_measures": vs, "v_measure": float(np.mean(vs)), "v_measure_std": float(np.std(vs)),
            "ami_scores": amis, "ami": float(np.mean(amis)), "ami_std": float(np.std(amis))}


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
    scorer: Callable[[np.ndarray, int], dict] = field(repr=False)  # the fallback: raw embeddings, seed -> scores
    # What mteb_adapter.score_builtin needs to build the mteb task: row indices into `texts` and the labels.
    data: dict = field(default_factory=dict, repr=False)
    # Rows of `texts` that are queries, the texts a task instruction goes to (LLM2Vec: all but retrieval documents).
    queries: frozenset[int] | None = None

    def revision(self) -> str:
        """What was evaluated: a digest of the data files, plus the cap when the task was shrunk."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        return f"local-{h.hexdigest()[:16]}" + (f"-max{self.cap}" if self.cap else "")

    def inputs(self, instruction: str | None) -> list:
        """The texts to embed: the queries with the task's instruction (format_query), the others as they are."""
        q = range(len(self.texts)) if self.queries is None else self.queries
        return [format_query(instruction, t) if i in q else t for i, t in enumerate(self.texts)]

    def score(self, emb: np.ndarray, seed: int, engine: str | None = None) -> tuple[dict, str]:
        """(scores, engine) from raw embeddings: mteb's evaluators where mteb is installed (engine "mteb"), else the
        fallback here ("l3prune"); engine forces one (mteb then must be installed)."""
        if engine != ENGINE_FALLBACK:
            from . import mteb_adapter

            if engine == ENGINE_MTEB or mteb_adapter.available():
                return _finite(mteb_adapter.score_builtin(self, emb, seed)), ENGINE_MTEB
        scores = self.scorer(emb, seed)
        return {k: _finite(v) for k, v in scores.items()}, ENGINE_FALLBACK


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
        return sts_scores(e[a], e[b], gold)

    return LoadedTask("sts", "LeeDocumentSTS", "STS", "cosine_spearman", texts, [path], len(rows), cap, scorer,
                      data={"a": a, "b": b, "gold": gold})


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
    # Queries and documents are embedded apart: a query carries the instruction, a document never does.
    qtexts, qix = _unique([q["text"] for q in queries])
    dtexts, dix = _unique([d["text"] for d in corpus])
    texts = qtexts + dtexts
    qi = [qix[q["text"]] for q in queries]
    di = [len(qtexts) + dix[d["text"]] for d in corpus]
    pos = {d["_id"]: j for j, d in enumerate(corpus)}
    relevant = [{pos[d] for d in qrels[q["_id"]]} for q in queries]

    def scorer(e: np.ndarray, seed: int) -> dict:
        return retrieval_metrics(cosine_matrix(e[qi], e[di]), relevant)

    files = [base / "corpus.jsonl", base / "queries.jsonl", qrels_path]
    return LoadedTask("retrieval", "WordNetWordToGlossRetrieval", "Retrieval", "ndcg_at_10", texts, files, len(queries), cap, scorer,
                      data={"qi": qi, "di": di, "relevant": relevant}, queries=frozenset(range(len(qtexts))))


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

    return LoadedTask("classification", "WordNetLexnameClassification", "Classification", "accuracy", texts, [path], len(test), cap, scorer,
                      data={"tr": tr, "te": te, "ytr": ytr, "yte": yte})


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

    return LoadedTask("clustering", "WordNetLexnameClustering", "Clustering", "v_measure", texts, [path], len(rows), cap, scorer,
                      data={"idx": idx, "labels": labels})


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
        return pair_classification_scores(e[a], e[b], y)

    return LoadedTask("pair_classification", "WordNetSensePairClassification", "PairClassification", "max_ap", texts, [path], len(rows), cap, scorer,
                      data={"a": a, "b": b, "y": y})


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


def task_result_file(task: LoadedTask, scores: dict, seconds: float, mteb_version: str | None = None) -> dict:
    """MTEB's TaskResult JSON (what TaskResult.to_disk writes; TaskResult.from_disk reads it back); mteb_version:
    the installed mteb's when its evaluators computed the scores, else the local label."""
    entry = {**_round(scores), "main_score": _round(scores.get(task.metric)), "hf_subset": "default", "languages": LANGUAGES}
    return {
        "dataset_revision": task.revision(),
        "task_name": task.name,
        "mteb_version": mteb_version or MTEB_FORMAT_VERSION,
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
