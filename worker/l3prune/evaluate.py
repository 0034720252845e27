"""The `evaluate` verb: MTEB-style embedding evaluation of a (pruned, LoRA-trained) encoder on local data.

    python -m l3prune evaluate --run-dir DIR --model MODEL_DIR [--keep N] [--adapter ADAPTER_DIR]
    python -m l3prune evaluate --run-dir DIR --from-run TRAIN_RUN_DIR [...]

The encoder is the trainer's: encoder.load_encoder, encoder.prune (model.layers = model.layers[:n]), the same
pooling, then L2 normalisation (the InfoNCE loss compares normalised embeddings). A LoRA adapter is merged after
pruning to its depth, so base + adapter and the train run's merged model/ are the same network.

Built-in tasks (evaltasks.py) score the demo data with MTEB's metrics and write MTEB result files to
<run-dir>/results/<TaskName>.json. Events (protocol/events.schema.json): started, model_loaded, progress per
batch embedded, task_result per task, evaluation_finished (with encode latency and throughput); error/cancelled
as every verb. Exit 0, 2 on bad input (one sentence on stderr), 1 internal, 128+signal when cancelled.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .data import DataError
from .encoder import POOLINGS, Encoder, ModelError, find_final_norm
from .events import RunFolder
from .variant import load_variant, read_json_object, resolve_source
from .verbs import Advice, Outcome, disk_full_in, run_verb
from . import evaltasks as T

DEFAULT_MAX_LENGTH = 128
LATENCY_WARMUP = 1
LATENCY_REPEATS = 5


# ---------------------------------------------------------------------------------------------------------------
# spec
@dataclass
class EvalSpec:
    model: str
    keep: int | None = None
    adapter: str | None = None
    fromRun: str | None = None
    tasks: list = field(default_factory=lambda: list(T.TASK_KEYS))
    mtebTasks: list = field(default_factory=list)
    dataDir: str = ""
    pooling: str = "weighted_mean"
    maxLength: int = DEFAULT_MAX_LENGTH
    batchSize: int = 16
    maxExamples: int | None = None
    seed: int = 0
    device: str = "auto"
    trustRemoteCode: bool = False

    def to_json(self) -> dict:
        return asdict(self)


SPEC_FIELDS = tuple(f.name for f in fields(EvalSpec))
SPEC_ALIASES = {re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), f): f for f in SPEC_FIELDS}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The evaluate sub-command's flags; each overrides the spec file's field of the same (camelCase) name."""
    p.add_argument("--run-dir", required=True, help="run folder to create (run.json, events.jsonl, results/)")
    p.add_argument("--spec", help="JSON file with the same fields (camelCase); flags override it")
    p.add_argument("--model", help="local Hugging Face model folder (safetensors)")
    p.add_argument("--keep", type=int, metavar="N", help="evaluate the first N layers only (default: all, or the adapter's depth)")
    p.add_argument("--adapter", help="peft LoRA adapter folder of a train run (<run>/adapter), merged after pruning")
    p.add_argument("--from-run", dest="fromRun", metavar="DIR", help="a finished train run: its merged model/, or its base model + adapter/, with its pooling and max length")
    p.add_argument("--tasks", help=f"comma-separated built-in tasks: {','.join(T.TASK_KEYS)} or all (default: all; none when only --mteb-task is given)")
    p.add_argument("--mteb-task", action="append", dest="mtebTasks", metavar="NAME", help="an MTEB task to run through the mteb package (optional; its data must be local); repeatable")
    p.add_argument("--data-dir", dest="dataDir", help="folder with sts.jsonl and eval/ (default: $L3PRUNE_DEMO_DATA, else the checkout's .demo/data)")
    p.add_argument("--pooling", choices=list(POOLINGS), help="default: the train run's, else weighted_mean")
    p.add_argument("--max-length", type=int, dest="maxLength", metavar="N", help=f"tokens per text after truncation (default: the train run's, else {DEFAULT_MAX_LENGTH})")
    p.add_argument("--batch-size", type=int, dest="batchSize", metavar="N", help="texts per forward pass, also the latency batch (default 16)")
    p.add_argument("--max-examples", type=int, dest="maxExamples", metavar="N", help="cap each built-in task at N examples (at least 4) for a quick run (see worker/README.md)")
    p.add_argument("--seed", type=int, metavar="N", help="seed of the logistic regression and k-means (default 0)")
    p.add_argument("--device", help="auto, cpu or cuda (default auto)")
    p.add_argument("--trust-remote-code", action="store_true", default=None, dest="trustRemoteCode")
    p.add_argument("--heartbeat-seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    # Test hook: a pause after loading gives SIGTERM a deterministic target.
    p.add_argument("--debug-sleep-after-load", type=float, default=0.0, help=argparse.SUPPRESS)


def _parse_tasks(v) -> list[str]:
    if isinstance(v, str):
        items = [t.strip() for t in v.split(",") if t.strip()]
    elif isinstance(v, list) and all(isinstance(t, str) for t in v):
        items = [t.strip() for t in v]
    else:
        raise ValueError(f"tasks must be a comma-separated string or a list of task names, got {v!r}")
    out: list[str] = []
    for t in items:
        if t == "all":
            out.extend(k for k in T.TASK_KEYS if k not in out)
        elif t == "none":
            continue
        elif t not in T.TASK_KEYS:
            raise ValueError(f"unknown task {t!r} in --tasks; choose from {', '.join(T.TASK_KEYS)} (or all)")
        elif t not in out:
            out.append(t)
    return out


def spec_from_args(args: argparse.Namespace) -> EvalSpec:
    """Spec file, then flags, then --from-run and defaults, into the spec run.json stores (paths absolute)."""
    raw: dict = {}
    if args.spec:
        loaded = read_json_object(Path(args.spec), "spec file")
        for k, v in loaded.items():
            k = SPEC_ALIASES.get(k, k)
            if k not in SPEC_FIELDS:
                raise ValueError(f"spec file {args.spec} has unknown field '{k}'; allowed: {', '.join(SPEC_FIELDS)}")
            raw[k] = v
    for k in SPEC_FIELDS:
        v = getattr(args, k, None)
        if v is not None:
            raw[k] = v
    source = resolve_source(raw.get("model"), raw.get("adapter"), raw.get("keep"), raw.get("fromRun"), purpose="evaluate")
    defaults = source.trained_with
    mteb_tasks = raw.get("mtebTasks") or []
    if not isinstance(mteb_tasks, list) or not all(isinstance(t, str) and t.strip() for t in mteb_tasks):
        raise ValueError(f"mtebTasks must be a list of MTEB task names, got {mteb_tasks!r}")
    tasks = _parse_tasks(raw["tasks"]) if "tasks" in raw else ([] if mteb_tasks else list(T.TASK_KEYS))
    if not tasks and not mteb_tasks:
        raise ValueError(f"nothing to evaluate: --tasks names no task; choose from {', '.join(T.TASK_KEYS)}")
    from .demo_assets import default_data_dir

    spec = EvalSpec(
        model=source.model,
        keep=source.keep,
        adapter=source.adapter,
        fromRun=raw.get("fromRun"),
        tasks=tasks,
        mtebTasks=[t.strip() for t in mteb_tasks],
        dataDir=raw.get("dataDir") or str(default_data_dir()),
        pooling=raw.get("pooling") or defaults.get("pooling") or "weighted_mean",
        maxLength=raw["maxLength"] if raw.get("maxLength") is not None else (defaults.get("maxLength") or DEFAULT_MAX_LENGTH),
        batchSize=raw.get("batchSize", 16),
        maxExamples=raw.get("maxExamples"),
        seed=raw.get("seed", 0),
        device=raw.get("device") or "auto",
        trustRemoteCode=bool(raw["trustRemoteCode"]) if raw.get("trustRemoteCode") is not None else bool(defaults.get("trustRemoteCode")),
    )
    validate(spec)
    for k in ("model", "adapter", "fromRun", "dataDir"):
        v = getattr(spec, k)
        if v:
            # run.json is read later by processes with another working directory.
            setattr(spec, k, str(Path(v).expanduser().absolute()))
    return spec


def validate(s: EvalSpec) -> None:
    def whole(name, lo, optional=False):
        v = getattr(s, name)
        if optional and v is None:
            return
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be a whole number of at least {lo}, got {v!r}")

    whole("keep", 1, optional=True)
    whole("maxLength", 2)
    whole("batchSize", 1)
    whole("maxExamples", T.MIN_CAP, optional=True)
    if not isinstance(s.seed, int) or isinstance(s.seed, bool):
        raise ValueError(f"seed must be a whole number, got {s.seed!r}")
    if s.pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {s.pooling!r}")
    if not isinstance(s.device, str) or not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", s.device):
        raise ValueError(f"device must be auto, cpu or cuda, got {s.device!r}")
    for name in ("model", "dataDir"):
        if not isinstance(getattr(s, name), str):
            raise ValueError(f"{name} must be a path, got {getattr(s, name)!r}")


# ---------------------------------------------------------------------------------------------------------------
# encoding
def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def embed(enc: Encoder, texts: list[str], pooling: str, batch_size: int, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Unit-length embeddings, rows in the order of `texts`.

    Texts are batched longest first so that each batch pads to similar lengths (as sentence-transformers does);
    with the attention mask and real-token positions the padding does not change an embedding.
    """
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: np.ndarray | None = None
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        e = F.normalize(enc.encode([texts[i] for i in idx], pooling).float(), p=2, dim=-1).cpu().numpy()
        if out is None:
            out = np.zeros((len(texts), e.shape[1]), dtype=np.float32)
        out[idx] = e
        if on_batch:
            on_batch(len(idx))
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def measure_latency(enc: Encoder, texts: list[str], pooling: str, batch_size: int, device: str) -> tuple[float, float]:
    """(median ms per batch, texts per second) of encode + pooling + normalisation on one fixed batch."""
    batch = [texts[i % len(texts)] for i in range(batch_size)]

    def once() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        F.normalize(enc.encode(batch, pooling).float(), p=2, dim=-1).cpu()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(LATENCY_WARMUP):
        once()
    sec = statistics.median(once() for _ in range(LATENCY_REPEATS))
    return round(sec * 1000, 3), round(batch_size / sec, 3)


# ---------------------------------------------------------------------------------------------------------------
# the run
def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_evaluate(spec: EvalSpec, emit: Callable[..., object], run_dir: Path, *, sleep_after_load: float = 0.0) -> dict:
    t_start = time.monotonic()
    data_dir = Path(spec.dataDir)
    # Every data file is read before the model: a missing file should not cost a model load.
    tasks = [T.LOADERS[k](data_dir, spec.maxExamples) for k in spec.tasks]
    mteb_tasks = []
    if spec.mtebTasks:
        from . import mteb_adapter

        mteb_tasks = mteb_adapter.get_tasks(spec.mtebTasks)
        for t in mteb_tasks:
            mteb_adapter.load_local_data(t)
    device = resolve_device(spec.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device cuda was requested but no CUDA device is available; use --device cpu")
    torch.manual_seed(spec.seed)
    t0 = time.monotonic()
    enc, info = load_variant(spec.model, spec.keep, spec.adapter, max_length=spec.maxLength, device=device,
                             trust_remote_code=spec.trustRemoteCode)
    cfg = enc.model.config
    norm = find_final_norm(enc.model)
    params = sum(p.numel() for p in enc.model.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in enc.model.parameters())
    emit(
        "model_loaded",
        numLayers=enc.num_layers,
        originalNumLayers=info["originalNumLayers"],
        modelType=str(getattr(cfg, "model_type", "unknown")),
        hiddenSize=int(getattr(cfg, "hidden_size", 0) or 0),
        finalNorm=type(norm).__name__ if norm is not None else None,
        loadSeconds=round(time.monotonic() - t0, 3),
        totalParams=params,
        device=device,
        precision="fp32",
    )
    if sleep_after_load:
        time.sleep(sleep_after_load)

    results_dir = run_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    batches = sum(math.ceil(len(t.texts) / spec.batchSize) for t in tasks)
    samples = sum(len(t.texts) for t in tasks)
    done = {"batch": 0, "samples": 0}
    t_embed = time.monotonic()
    scores: dict[str, float | None] = {}

    def report(key: str, name: str, ttype: str, metric: str, main, fields_: dict, seconds: float, examples: int | None, path: Path) -> None:
        scores[name] = main
        extra = {"examples": examples} if examples is not None else {}
        emit("task_result", task=name, key=key, taskType=ttype, metric=metric, mainScore=main, scores=fields_,
             seconds=round(seconds, 3), resultPath=str(path), **extra)

    for task in tasks:
        t_task = time.monotonic()

        def on_batch(n: int, _task=task) -> None:
            done["batch"] += 1
            done["samples"] += n
            emit("progress", batch=done["batch"], batches=batches, samplesDone=done["samples"], samples=samples,
                 elapsedSeconds=round(time.monotonic() - t_embed, 3), task=_task.name)

        emb = embed(enc, task.texts, spec.pooling, spec.batchSize, on_batch)
        fields_ = task.score(emb, spec.seed)
        seconds = time.monotonic() - t_task
        doc = T.task_result_file(task, fields_, seconds)
        path = results_dir / f"{task.name}.json"
        _write_json(path, doc)
        report(task.key, task.name, task.type, task.metric, doc["scores"][T.SPLIT][0]["main_score"], T._round(fields_), seconds, task.examples, path)

    if mteb_tasks:
        from . import mteb_adapter

        model = mteb_adapter.MtebEncoder(lambda texts: embed(enc, texts, spec.pooling, spec.batchSize))
        for t in mteb_tasks:
            doc, seconds = mteb_adapter.run_task(t, model, spec.batchSize)
            doc = T._finite(doc)
            name = str(doc.get("task_name") or t.metadata.name)
            path = results_dir / f"{name}.json"
            _write_json(path, doc)
            main = mteb_adapter.main_score(doc)
            split = doc.get("scores", {}).get("test") or next(iter(doc.get("scores", {}).values()), [{}])
            flat = {k: v for k, v in (split[0] if split else {}).items() if k not in ("hf_subset", "languages")}
            report(name, name, str(t.metadata.type), str(t.metadata.main_score), main, flat, seconds, None, path)

    lat_texts = T.latency_texts(data_dir) or [x for t in tasks for x in t.texts] or ["A short sentence to time the encoder."]
    latency_ms, tps = measure_latency(enc, lat_texts, spec.pooling, spec.batchSize, device)
    valid = [v for v in scores.values() if isinstance(v, (int, float))]
    return {
        "numLayers": enc.num_layers,
        "params": params,
        "bytes": nbytes,
        "averageScore": round(float(np.mean(valid)), 6) if valid else None,
        "scores": scores,
        "latencyMsPerBatch": latency_ms,
        "textsPerSecond": tps,
        "batchSize": spec.batchSize,
        "maxLength": spec.maxLength,
        "device": device,
        "seconds": round(time.monotonic() - t_start, 3),
        "resultsDir": str(results_dir.resolve()),
    }


def run_cli(args: argparse.Namespace) -> int:
    """`python -m l3prune evaluate ...`; returns the exit code (0, 2 bad input, 1 internal, 128+signal)."""

    def resolve() -> tuple[EvalSpec, dict]:
        spec = spec_from_args(args)
        return spec, spec.to_json()

    def work(spec: EvalSpec, run: RunFolder) -> Outcome:
        result = run_evaluate(spec, run.emit, Path(args.run_dir), sleep_after_load=args.debug_sleep_after_load)
        return Outcome("evaluation_finished", result, result)

    advice = Advice(out_of_memory="ran out of memory; lower --batch-size or --max-length",
                    disk_full=disk_full_in(args.run_dir, "free some space and evaluate again"))
    # mteb_adapter.MtebUnavailable is a ValueError: a missing package or task data is bad input too.
    return run_verb("evaluate", args.run_dir, resolve, work, heartbeat_seconds=args.heartbeat_seconds, advice=advice,
                    user_errors=(DataError, ModelError, ValueError))


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m l3prune.evaluate ...`); `python -m l3prune evaluate` is the public one."""
    p = argparse.ArgumentParser(prog="python -m l3prune evaluate")
    add_arguments(p)
    return run_cli(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
