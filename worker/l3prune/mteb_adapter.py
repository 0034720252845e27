"""Optional: run real MTEB tasks (--mteb-task NAME) with the worker's encoder, when the `mteb` package is installed.

mteb is not a dependency of the worker. Data must already be local (the Hugging Face datasets cache): the worker
runs offline, so a task whose data is missing fails with one clear sentence instead of trying to download.
Both mteb APIs are handled: 2.x (`mteb.evaluate`, encode receives a DataLoader of {"text": [...]} batches) and
1.x (`mteb.MTEB(tasks).run`, encode receives a list of strings).
"""
from __future__ import annotations

import json
import tempfile
import time
from typing import Callable, Sequence

import numpy as np


class MtebUnavailable(ValueError):
    """mteb is not installed, or a task is unknown or has no local data; the message says which and what to do."""


def _import():
    # Offline already (l3prune/__init__.py): a download attempt fails fast instead of hanging without the hub.
    try:
        import mteb
    except ImportError:
        raise MtebUnavailable("--mteb-task needs the mteb package, which is not installed; install it (pip install mteb) or leave out --mteb-task") from None
    return mteb


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


def load_local_data(task) -> None:
    name = task.metadata.name
    try:
        task.load_data()
    except Exception as e:  # noqa: BLE001 - datasets raises many types when offline
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise MtebUnavailable(
            f"MTEB task {name}: its data is not available locally ({type(e).__name__}: {first}); this worker does not "
            "download, so put the dataset into the Hugging Face datasets cache on a machine with access first"
        ) from None


class MtebEncoder:
    """The worker's encoder as an MTEB model: unit-length embeddings, cosine similarity."""

    # mteb 2.x treats an object without this attribute as a model name to load from its registry.
    mteb_model_meta = None

    def __init__(self, embed: Callable[[list[str]], np.ndarray], name: str = "l3prune-encoder"):
        self._embed = embed
        self.name = name

    def encode(self, inputs, *args, **kwargs) -> np.ndarray:
        if isinstance(inputs, str):
            inputs = [inputs]
        if isinstance(inputs, (list, tuple)) and all(isinstance(t, str) for t in inputs):
            texts = list(inputs)
        else:  # mteb 2.x: a DataLoader of batches {"text": [...], ...}
            texts = []
            for batch in inputs:
                texts.extend(str(t) for t in batch["text"])
        return self._embed(texts)

    def similarity(self, a, b):
        return np.asarray(a) @ np.asarray(b).T

    def similarity_pairwise(self, a, b):
        return np.sum(np.asarray(a) * np.asarray(b), axis=-1)


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
