"""The `mteb` package, where installed: real MTEB tasks (--mteb-task NAME) with the worker's encoder, and mteb's
own evaluators for the built-in tasks (score_builtin).

mteb is the worker's `eval` extra (scripts/setup-worker.sh installs it); without it --mteb-task is refused and the
built-in tasks use evaltasks' fallback. Data must already be local (the Hugging Face datasets cache): the worker
runs offline, so a task whose data is missing fails with one clear sentence instead of trying to download.
Both mteb APIs are handled: 2.x (`mteb.evaluate`, encode receives a DataLoader of {"text": [...]} batches) and
1.x (`mteb.MTEB(tasks).run`, encode receives a list of strings).
"""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
import warnings
import time
from typing import Callable, Mapping, Sequence

import numpy as np

# The real MTEB task whose metadata (type, main score, splits, licence fields, ...) each built-in task borrows,
# under its own name; the task class is mteb's abstract class of that type, so no dataset-specific code runs.
REFERENCE_TASKS = {
    "STS": "STSBenchmark",
    "Retrieval": "SciFact",
    "Classification": "Banking77Classification",
    "Clustering": "TwentyNewsgroupsClustering.v2",
    "PairClassification": "SprintDuplicateQuestions",
}


class MtebUnavailable(ValueError):
    """mteb is not installed, or a task is unknown or has no local data; the message says which and what to do."""


def _import():
    # Offline already (l3prune/__init__.py): a download attempt fails fast instead of hanging without the hub.
    try:
        import mteb
    except ImportError:
        raise MtebUnavailable("--mteb-task needs the mteb package, which is not installed; install it (pip install mteb) or leave out --mteb-task") from None
    return mteb


def available() -> bool:
    """Whether mteb imports here (then its evaluators score the built-in tasks)."""
    try:
        _import()
    except MtebUnavailable:
        return False
    return True


def version() -> str:
    import mteb

    return str(getattr(mteb, "__version__", None) or _dist_version())


def _dist_version() -> str:
    from importlib.metadata import version as v

    return v("mteb")


def get_tasks(names: Sequence[str]) -> list:
    mteb = _import()
    tasks = []
    for name in names:
        try:
            found = list(mteb.get_tasks(tasks=[name]))
        except Exception as e:  # noqa: BLE001 - mteb raises KeyError/ValueError depending on version
            raise MtebUnavailable(f"MTEB has no task named {name!r} ({type(e).__name__}); check the name with `mteb available_tasks`") from None
        if not found:
            raise MtebUnavailable(f"MTEB has no task named {name!r}; check the name with `mteb available_tasks`")
        tasks.append(found[0])
    return tasks


def load_local_data(task, allow_download: bool = False) -> None:
    """The task's data from the datasets cache; with the user's consent (allowDownload) and an environment that
    does not say offline, from the hub (into that cache, so the next run is offline)."""
    name = task.metadata.name
    from . import HUB_OFFLINE_GIVEN
    from .hfcache import _is_true, offline_by_user

    online = allow_download and not (offline_by_user() or _is_true(HUB_OFFLINE_GIVEN.get("HF_DATASETS_OFFLINE")))
    try:
        with _online() if online else contextlib.nullcontext():
            task.load_data()
    except Exception as e:  # noqa: BLE001 - datasets raises many types when offline
        first = str(e).splitlines()[0][:200] if str(e) else ""
        how = ("the download failed; check the network and the dataset's access terms" if online else
               "allow the download in Evaluate… (or pass --allow-download) where the hub can be reached"
               + (", and unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE" if allow_download else "")
               + ", or put the dataset into the Hugging Face datasets cache on a machine with access first")
        raise MtebUnavailable(f"MTEB task {name}: its data is not in the local datasets cache {datasets_cache_dir()} "
                              f"({type(e).__name__}: {first}); {how}") from None


@contextlib.contextmanager
def _online():
    """datasets reads its offline switches once, at import (the worker sets them, l3prune/__init__.py): lifted for
    one consented load, then restored, with huggingface_hub's own (hfcache.hub_online) around it."""
    from datasets import config as dconfig

    from .hfcache import hub_online

    before = (dconfig.HF_HUB_OFFLINE, getattr(dconfig, "HF_DATASETS_OFFLINE", None))
    dconfig.HF_HUB_OFFLINE = False
    if hasattr(dconfig, "HF_DATASETS_OFFLINE"):
        dconfig.HF_DATASETS_OFFLINE = False
    try:
        with hub_online():
            yield
    finally:
        dconfig.HF_HUB_OFFLINE, offline = before
        if offline is not None:
            dconfig.HF_DATASETS_OFFLINE = offline


# The configs a retrieval dataset needs besides its qrels (mteb's RetrievalDatasetLoader reads all three).
RETRIEVAL_CONFIGS = ("corpus", "queries")


def datasets_cache_dir() -> str:
    """The Hugging Face datasets cache an offline load_dataset reads (HF_DATASETS_CACHE, else HF_HOME/datasets)."""
    from datasets import config

    return str(config.HF_DATASETS_CACHE)


def cache_state(task) -> tuple[bool, bool]:
    """(cached, cachedRevision) of a task's hub dataset in the datasets cache, by the rule an offline
    `datasets.load_dataset` follows (datasets.load.CachedDatasetModuleFactory): <cache>/<org>___<name>/<config>/
    <version>/<hash>/ prepared (dataset_info.json); for retrieval the corpus and queries configs too. A hub
    dataset's <hash> is its commit, so cachedRevision says whether the pinned revision is the one cached."""
    from pathlib import Path

    from datasets.naming import camelcase_to_snakecase

    path, revision = task.metadata.dataset.get("path", ""), str(task.metadata.dataset.get("revision", ""))
    parts = path.split("/")
    if not path or len(parts) > 2:
        return False, False
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = Path(datasets_cache_dir()) / "___".join(parts)
    prepared = [d for d in root.glob("*/*/*") if d.is_dir() and (d / "dataset_info.json").is_file()]
    configs = {d.parent.parent.name for d in prepared}
    needed = set(RETRIEVAL_CONFIGS) if task.metadata.type in ("Retrieval", "Reranking") else set()
    cached = bool(configs) and needed <= configs
    return cached, cached and any(d.name == revision for d in prepared)


def list_tasks(types: Sequence[str], languages: Sequence[str]) -> list[dict]:
    """The public, non-aggregate text tasks of these types and languages, each with its cache state."""
    mteb = _import()
    # Superseded tasks stay: the paper's and LLM2Vec's results name them (STSBenchmark, Banking77Classification).
    kwargs = {"languages": list(languages), "task_types": list(types), "exclude_superseded": False, "modalities": ["text"]}
    import inspect

    accepted = inspect.signature(mteb.get_tasks).parameters
    with _quiet():
        found = mteb.get_tasks(**{k: v for k, v in kwargs.items() if k in accepted})
    out = []
    for task in found:
        meta = task.metadata
        dataset = meta.dataset or {}
        if not getattr(meta, "is_public", True) or "/" not in str(dataset.get("path", "")) or getattr(task, "is_aggregate", False):
            continue
        cached, exact = cache_state(task)
        out.append({"name": meta.name, "type": meta.type, "mainScore": str(meta.main_score), "dataset": str(dataset["path"]),
                    "revision": str(dataset.get("revision", "")), "cached": cached, "cachedRevision": exact,
                    "supersededBy": getattr(task, "superseded_by", None) or getattr(meta, "superseded_by", None)})
    return out


def _texts(inputs) -> list[str]:
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, (list, tuple)) and all(isinstance(t, str) for t in inputs):
        return list(inputs)
    texts: list[str] = []  # mteb 2.x: a DataLoader of batches {"text": [...], ...}
    for batch in inputs:
        texts.extend(str(t) for t in batch["text"])
    return texts


def _cosine(a, b) -> np.ndarray:
    from .evaltasks import cosine_matrix

    return cosine_matrix(np.asarray(a), np.asarray(b))


def _cosine_pairwise(a, b) -> np.ndarray:
    from .evaltasks import cosine_pairwise

    return cosine_pairwise(a, b)


def is_query(task_type: str | None, prompt_type) -> bool:
    """LLM2Vec's convention (its MTEB wrapper): every text of a task gets the task's instruction except the
    documents of retrieval and reranking, which get none."""
    kind = getattr(prompt_type, "value", prompt_type)
    return not (task_type in ("Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking") and kind == "document")


class MtebEncoder:
    """The worker's encoder as an MTEB model: raw embeddings, cosine similarity, and the task's instruction
    (instructions: MTEB task name -> instruction) on its queries (is_query), through evaltasks.format_query."""

    # mteb 2.x treats an object without this attribute as a model name to load from its registry.
    mteb_model_meta = None

    def __init__(self, embed: Callable[[list[str]], np.ndarray], name: str = "l3prune-encoder",
                 instructions: Mapping[str, str] | None = None):
        self._embed = embed
        self.name = name
        self.instructions = dict(instructions or {})

    def encode(self, inputs, *args, task_metadata=None, prompt_type=None, **kwargs) -> np.ndarray:
        from .evaltasks import format_query

        texts = _texts(inputs)
        name = getattr(task_metadata, "name", None) or kwargs.get("task_name")
        inst = self.instructions.get(name) if name else None
        if inst and is_query(getattr(task_metadata, "type", None), prompt_type):
            texts = [format_query(inst, t) for t in texts]
        return self._embed(texts)

    def similarity(self, a, b):
        return _cosine(a, b)

    def similarity_pairwise(self, a, b):
        return _cosine_pairwise(a, b)


class _Precomputed:
    """An MTEB model whose 'texts' are row keys ("#12") into embeddings computed beforehand: mteb scores exactly
    the vectors the fallback would."""

    mteb_model_meta = None

    def __init__(self, emb: np.ndarray):
        self.emb = np.asarray(emb)

    def encode(self, inputs, *args, **kwargs) -> np.ndarray:
        return self.emb[[int(t[1:]) for t in _texts(inputs)]]

    def similarity(self, a, b):
        return _cosine(a, b)

    def similarity_pairwise(self, a, b):
        return _cosine_pairwise(a, b)


def _key(i: int) -> str:
    return f"#{i}"


def builtin_task(task, seed: int):
    """An mteb task object of task.type holding the built-in task's data (texts as row keys), seeded with seed."""
    mteb = _import()
    from datasets import Dataset, DatasetDict
    from mteb import abstasks

    from .evaltasks import LANGUAGES, SPLIT, seed32

    ref = mteb.get_task(REFERENCE_TASKS[task.type])
    meta = ref.metadata.model_copy(update={"name": task.name, "eval_splits": [SPLIT], "eval_langs": list(LANGUAGES),
                                           "main_score": task.metric, "prompt": None,
                                           "description": f"l3prune built-in task {task.key} (local data)"})
    base = {"STS": abstasks.AbsTaskSTS, "Retrieval": abstasks.AbsTaskRetrieval, "Classification": abstasks.AbsTaskClassification,
            "Clustering": abstasks.AbsTaskClustering, "PairClassification": abstasks.AbsTaskPairClassification}[task.type]
    attrs: dict = {"metadata": meta}
    d = task.data
    if task.type == "Clustering":
        attrs["max_fraction_of_documents_to_embed"] = None  # embed every document (mteb's default is 4 %)
        attrs["max_document_to_embed"] = None
    cls = type(f"L3Prune{task.type}Task", (base,), attrs)
    t = cls(seed=seed32(seed))
    if task.type == "STS":
        ds = Dataset.from_dict({"sentence1": [_key(i) for i in d["a"]], "sentence2": [_key(i) for i in d["b"]], "score": d["gold"]})
        # mteb normalises gold scores by min_score/max_score; correlations do not change, any range is fine.
        t.min_score, t.max_score = min(d["gold"]), max(d["gold"]) if max(d["gold"]) > min(d["gold"]) else min(d["gold"]) + 1
        t.dataset = {"default": DatasetDict({SPLIT: ds})}
    elif task.type == "Retrieval":
        from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

        qids = [f"q{j}" for j in range(len(d["qi"]))]
        dids = [f"d{j}" for j in range(len(d["di"]))]
        split = RetrievalSplitData(
            corpus=Dataset.from_dict({"id": dids, "text": [_key(i) for i in d["di"]]}),
            queries=Dataset.from_dict({"id": qids, "text": [_key(i) for i in d["qi"]]}),
            relevant_docs={qids[j]: {dids[k]: 1 for k in sorted(rel)} for j, rel in enumerate(d["relevant"])},
            top_ranked=None,
        )
        t.dataset = {"default": {SPLIT: split}}
    elif task.type == "Classification":
        names = sorted(set(d["ytr"]) | set(d["yte"]))
        code = {n: i for i, n in enumerate(names)}
        t.dataset = {"default": DatasetDict({
            "train": Dataset.from_dict({"text": [_key(i) for i in d["tr"]], "label": [code[y] for y in d["ytr"]]}),
            SPLIT: Dataset.from_dict({"text": [_key(i) for i in d["te"]], "label": [code[y] for y in d["yte"]]}),
        })}
    elif task.type == "Clustering":
        t.dataset = {"default": DatasetDict({SPLIT: Dataset.from_dict({"sentences": [_key(i) for i in d["idx"]], "labels": list(d["labels"])})})}
    elif task.type == "PairClassification":
        t.dataset = {"default": DatasetDict({SPLIT: Dataset.from_dict({"sentence1": [_key(i) for i in d["a"]],
                                                                        "sentence2": [_key(i) for i in d["b"]], "labels": list(d["y"])})})}
    else:
        raise ValueError(f"no mteb task type {task.type!r}")
    t.data_loaded = True
    return t


@contextlib.contextmanager
def _quiet():
    """stderr is the worker's one-sentence error channel: no progress bars or warnings from mteb/datasets."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        if was:
            datasets.enable_progress_bars()


def score_builtin(task, emb: np.ndarray, seed: int) -> dict:
    """mteb's own scores of a built-in task (evaltasks.LoadedTask) on its raw embeddings (rows of task.texts):
    mteb's task-type evaluator on an mteb task built from the local data. The fields are mteb's, with one
    label level's per-bootstrap lists (clustering) flattened to lists as the fallback writes them."""
    from .evaltasks import SPLIT

    t = builtin_task(task, seed)
    with _quiet():
        res = t.evaluate(_Precomputed(emb), SPLIT, encode_kwargs={"batch_size": 64, "show_progress_bar": False})
    scores = dict(res["default"])
    scores.pop("main_score", None)
    scores.pop("hf_subset", None)
    scores.pop("languages", None)
    for k in ("v_measures", "ami_scores"):
        v = scores.get(k)
        if isinstance(v, dict) and len(v) == 1:
            scores[k] = list(next(iter(v.values())))
    return json.loads(json.dumps(scores, default=_json_value))


def main_score(result: dict) -> float | None:
    """Mean main_score over the subsets of the test split (else the first split), as MTEB's get_score."""
    scores = result.get("scores") or {}
    split = "test" if "test" in scores else next(iter(scores), None)
    vals = [e.get("main_score") for e in scores.get(split, []) if isinstance(e.get("main_score"), (int, float))]
    return float(np.mean(vals)) if vals else None


def run_task(task, model: MtebEncoder, batch_size: int) -> tuple[dict, float]:
    """Evaluate one loaded task; returns (TaskResult as a dict, seconds)."""
    mteb = _import()
    t0 = time.monotonic()
    if hasattr(mteb, "evaluate"):
        import inspect

        wanted = {"cache": None, "co2_tracker": False, "encode_kwargs": {"batch_size": batch_size}, "show_progress_bar": False}
        accepted = inspect.signature(mteb.evaluate).parameters
        # stderr is reserved for the one-sentence error, so no progress bars where the version allows.
        res = mteb.evaluate(model, [task], **{k: v for k, v in wanted.items() if k in accepted})
        results = list(res.task_results)
    else:
        with tempfile.TemporaryDirectory(prefix="l3prune-mteb-") as tmp:
            results = mteb.MTEB(tasks=[task]).run(model, output_folder=tmp, encode_kwargs={"batch_size": batch_size}, overwrite_results=True)
    if not results:
        raise RuntimeError(f"MTEB returned no result for {task.metadata.name}")
    r = results[0]
    try:
        d = r.model_dump(mode="json")  # pydantic: dates, numpy numbers and the like as JSON values
    except (AttributeError, TypeError):
        d = r.to_dict()
    return json.loads(json.dumps(d, default=_json_value)), time.monotonic() - t0


def _json_value(o):
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if hasattr(o, "item"):
        return o.item()
    return str(o)
