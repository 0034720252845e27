"""The `evaluate` verb: MTEB-style embedding evaluation of a (pruned, LoRA-trained) encoder on local data.

    python -m l3prune evaluate --run-dir DIR --model MODEL_DIR [--keep N] [--adapter ADAPTER_DIR]
    python -m l3prune evaluate --run-dir DIR --from-run TRAIN_RUN_DIR [...]
    python -m l3prune evaluate --run-dir DIR --onnx EXPORT_DIR [...]

The encoder is the trainer's: encoder.load_encoder, encoder.prune (model.layers = model.layers[:n]), the same
pooling. A LoRA adapter is merged after pruning to its depth, so base + adapter and the train run's merged model/
are the same network. Tasks score the raw pooled embeddings (as MTEB scores a model's output; the similarity is
cosine), each task's queries embedded with its instruction (spec instructions, LLM2Vec's table by default).
With --onnx an export-onnx folder is scored instead, in onnxruntime (onnx_encoder.py): the same text pipeline and
tasks, the graph's pooled output, so an fp32 export scores as its torch model and an int8 one shows its quantization.

Built-in tasks (evaltasks.py) score the demo data by MTEB's procedures (mteb's own evaluators where mteb is
installed, the worker's fallback otherwise; task_result's scoredBy says which) and write MTEB result files to
<run-dir>/results/<TaskName>.json. Events (protocol/events.schema.json): started, model_loaded, progress per
batch embedded, task_result per task, evaluation_finished (with encode latency and throughput); error/cancelled
as every verb. Exit 0, 2 on bad input (one sentence on stderr), 1 internal, 128+signal when cancelled.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import evaltasks as T
from . import specs, verbs
from .data import DataError
from .datadir import default_eval_data_dir
from .encoder import Encoder, ModelError, model_loaded_fields, resolve_device
from .fileio import write_json_atomic
from .onnx_encoder import OnnxEncoder
from .textpipe import as_text
from .variant import load_variant, resolve_source
from .verbs import Advice, Job, Outcome, Verb, add_pause_after_load, disk_full_in, main_for

LATENCY_WARMUP = 1
LATENCY_REPEATS = 5


# ---------------------------------------------------------------------------------------------------------------
# spec
EvalSpec = specs.spec_class("evaluate", "EvalSpec", __name__)


def _task_list(text: str) -> list[str]:
    """--tasks a,b,c: "all" stands for the five built-in tasks, "none" for no built-in task (only --mteb-task)."""
    out: list[str] = []
    for t in (x.strip() for x in text.split(",")):
        if t == "all":
            out.extend(k for k in T.TASK_KEYS if k not in out)
        elif t and t != "none" and t not in out:
            out.append(t)
    return out


def _instructions_arg(text: str) -> dict:
    """--instructions: a JSON object (MTEB task name -> instruction) or the path of a file holding one."""
    import json

    src = text
    if not text.lstrip().startswith("{"):
        try:
            src = Path(text).read_text(encoding="utf-8")
        except OSError as e:
            raise argparse.ArgumentTypeError(f"cannot read {text} ({e.strerror or e})") from None
    try:
        obj = json.loads(src)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not a JSON object ({e.msg} at line {e.lineno})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise argparse.ArgumentTypeError("must be a JSON object of task name -> instruction string")
    return obj


SPEC_FLAGS = {
    "instructions": {"type": _instructions_arg, "metavar": "JSON|FILE",
                     "help": "task name -> query instruction, a JSON object or a file with one; replaces the default table "
                             "(LLM2Vec's plus the built-in tasks'); '{}' for none"},
    "tasks": {"type": _task_list, "metavar": "A,B", "help": f"comma-separated built-in tasks: {','.join(T.TASK_KEYS)}, all or none "
                                                              "(default all; none when only --mteb-task is given)"},
    "mtebTasks": {"flag": "--mteb-task", "action": "append", "type": str, "metavar": "NAME",
                  "help": "an MTEB task to run through the mteb package (optional; its data must be local); repeatable"},
}


def _derive_onnx(given: dict) -> dict:
    """evaluate --onnx: the variant, its pooling and text pipeline are the export's (its manifest), and
    onnxruntime's CPU provider runs it; a flag that says otherwise is refused rather than ignored."""
    from .onnx_encoder import read_export

    clash = [f"--{specs.kebab(k)}" for k in ("model", "keep", "adapter", "fromRun") if given.get(k) is not None]
    if clash:
        raise ValueError(f"--onnx evaluates the exported graph, whose variant its l3prune-encoder.json names; leave out {', '.join(clash)}")
    try:
        m = read_export(given["onnx"])
    except ModelError as e:
        raise ValueError(str(e)) from None
    chat = "auto" if m["textPipeline"]["chatPrefix"] is not None else "off"
    for k, v in (("pooling", m["pooling"]), ("chatTemplate", chat)):
        if given.get(k) not in (None, v):
            raise ValueError(f"the graph in {given['onnx']} was exported with {specs.kebab(k)} {v}; leave out --{specs.kebab(k)} or export again with {given[k]}")
    if given.get("device") not in (None, "auto", "cpu"):
        raise ValueError(f"--onnx runs on onnxruntime's CPU provider; leave out --device {given['device']}")
    return {"model": m.get("loadedFrom") or m["sourceModel"], "keep": m["numLayers"], "adapter": m.get("adapter"),
            "fromRun": m.get("fromRun"), "pooling": m["pooling"], "chatTemplate": chat, "device": "cpu"}


def _derive(given: dict) -> dict:
    """What the given fields imply: the variant (a train run's model, adapter and cut, or an ONNX export's), its
    training's pooling and trustRemoteCode unless given, and the data folder."""
    if given.get("onnx") is not None:
        out = _derive_onnx(given)
    else:
        source = resolve_source(given.get("model"), given.get("adapter"), given.get("keep"), given.get("fromRun"), purpose="evaluate")
        out = {"model": source.model, "keep": source.keep, "adapter": source.adapter}
        # maxLength is the evaluation's condition (512, the paper's), not the training's: a variant trained at 128 is
        # still evaluated at 512 unless maxLength is given; run.json stores the length used.
        out.update({k: v for k, v in source.trained_with.items() if k not in given and v is not None and k != "maxLength"})
    mteb = given.get("mtebTasks") or []
    if mteb:
        out["mtebTasks"] = [t.strip() for t in mteb]
    if "tasks" not in given and mteb:
        out["tasks"] = []
    if not given.get("tasks", out.get("tasks", T.TASK_KEYS)) and not mteb:
        raise ValueError(f"nothing to evaluate: --tasks names no task; choose from {', '.join(T.TASK_KEYS)}")
    if given.get("dataDir") is None:
        out["dataDir"] = str(default_eval_data_dir())
    return out


def spec_from_args(args: argparse.Namespace, _world=None) -> EvalSpec:
    """Spec file, then flags, then --from-run and defaults, into the spec run.json stores (paths absolute)."""
    values = specs.resolve("evaluate", specs.gather("evaluate", args), derive=_derive, paths=("model", "adapter", "fromRun", "dataDir", "onnx"))
    return EvalSpec(**values)


# ---------------------------------------------------------------------------------------------------------------
# encoding
def embed(enc: Encoder | OnnxEncoder, texts: list[str], pooling: str, batch_size: int, on_batch: Callable[[int], None] | None = None,
          *, normalize: bool = True) -> np.ndarray:
    """Unit-length embeddings (normalize=False: the raw pooled vectors, what MTEB scores), rows in the order of `texts`.

    Texts are batched longest first so that each batch pads to similar lengths (as sentence-transformers does);
    with the attention mask and real-token positions the padding does not change an embedding. Texts are strings
    (documents) or textpipe.Text with an instruction; enc's text pipeline builds the string and pools only the
    text's own tokens.
    """
    order = sorted(range(len(texts)), key=lambda i: -len(as_text(texts[i]).text))
    out: np.ndarray | None = None
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        e = enc.encode([texts[i] for i in idx], pooling).float()
        e = (F.normalize(e, p=2, dim=-1) if normalize else e).cpu().numpy()
        if out is None:
            out = np.zeros((len(texts), e.shape[1]), dtype=np.float32)
        out[idx] = e
        if on_batch:
            on_batch(len(idx))
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def measure_latency(enc: Encoder | OnnxEncoder, texts: list[str], pooling: str, batch_size: int, device: str) -> tuple[float, float]:
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
            mteb_adapter.load_local_data(t, allow_download=spec.allowDownload is True)
    device = resolve_device(spec.device)
    torch.manual_seed(spec.seed)
    t0 = time.monotonic()
    onnx_info = None
    if spec.onnx:
        import onnxruntime

        from .onnx_encoder import PROVIDER, load_onnx_encoder

        enc = load_onnx_encoder(spec.onnx, max_length=spec.maxLength)
        params, nbytes = enc.parameter_count()
        m = enc.manifest
        emit("model_loaded", numLayers=enc.num_layers, modelType=str(m.get("modelType", "unknown")), hiddenSize=int(m["hiddenSize"]),
             finalNorm=None, loadSeconds=round(time.monotonic() - t0, 3), originalNumLayers=int(m["originalNumLayers"]),
             totalParams=params, device=device, precision=enc.precision)
        onnx_info = {"folder": str(enc.folder), "precision": enc.precision, "provider": PROVIDER, "onnxruntime": onnxruntime.__version__}
    else:
        enc, info = load_variant(spec.model, spec.keep, spec.adapter, max_length=spec.maxLength, device=device,
                                 trust_remote_code=spec.trustRemoteCode)
        enc.set_chat_template(spec.chatTemplate)  # the text pipeline (textpipe.py) as the spec says
        params = sum(p.numel() for p in enc.model.parameters())
        nbytes = sum(p.numel() * p.element_size() for p in enc.model.parameters())
        emit("model_loaded", **model_loaded_fields(enc.model, num_layers=enc.num_layers, load_seconds=time.monotonic() - t0,
                                                   originalNumLayers=info["originalNumLayers"], totalParams=params, device=device,
                                                   precision="fp32"))
    if sleep_after_load:
        time.sleep(sleep_after_load)

    results_dir = run_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    batches = sum(math.ceil(len(t.texts) / spec.batchSize) for t in tasks)
    samples = sum(len(t.texts) for t in tasks)
    done = {"batch": 0, "samples": 0}
    t_embed = time.monotonic()
    scores: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    instructions = dict(spec.instructions)

    def report(key: str, name: str, ttype: str, metric: str, main, fields_: dict, seconds: float, examples: int | None, path: Path,
               engine: str, instruction: str | None) -> None:
        scores[name] = main
        if examples is not None:
            counts[name] = examples
        extra = {"examples": examples} if examples is not None else {}
        emit("task_result", task=name, key=key, taskType=ttype, metric=metric, mainScore=main, scores=fields_,
             seconds=round(seconds, 3), resultPath=str(path), scoredBy=engine, instruction=instruction or None, **extra)

    for task in tasks:
        t_task = time.monotonic()

        def on_batch(n: int, _task=task) -> None:
            done["batch"] += 1
            done["samples"] += n
            emit("progress", batch=done["batch"], batches=batches, samplesDone=done["samples"], samples=samples,
                 elapsedSeconds=round(time.monotonic() - t_embed, 3), task=_task.name)

        # Raw embeddings, as MTEB scores a model's output; the task's instruction on its queries (LLM2Vec).
        inst = instructions.get(task.name)
        emb = embed(enc, task.inputs(inst), spec.pooling, spec.batchSize, on_batch, normalize=False)
        fields_, engine = task.score(emb, spec.seed)
        seconds = time.monotonic() - t_task
        doc = T.task_result_file(task, fields_, seconds, _mteb_version() if engine == T.ENGINE_MTEB else None)
        path = results_dir / f"{task.name}.json"
        write_json_atomic(path, doc)
        report(task.key, task.name, task.type, task.metric, doc["scores"][T.SPLIT][0]["main_score"], T._round(fields_), seconds, task.examples, path,
               engine, T.mteb_instruction(inst or ""))

    if mteb_tasks:
        from . import mteb_adapter

        model = mteb_adapter.MtebEncoder(lambda texts: embed(enc, texts, spec.pooling, spec.batchSize, normalize=False),
                                         instructions=instructions)
        for t in mteb_tasks:
            doc, seconds = mteb_adapter.run_task(t, model, spec.batchSize)
            doc = T._finite(doc)
            name = str(doc.get("task_name") or t.metadata.name)
            path = results_dir / f"{name}.json"
            write_json_atomic(path, doc)
            main = mteb_adapter.main_score(doc)
            split = doc.get("scores", {}).get("test") or next(iter(doc.get("scores", {}).values()), [{}])
            flat = {k: v for k, v in (split[0] if split else {}).items() if k not in ("hf_subset", "languages")}
            report(name, name, str(t.metadata.type), str(t.metadata.main_score), main, flat, seconds, None, path,
                   T.ENGINE_MTEB, T.mteb_instruction(instructions.get(name) or ""))

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
        # The conditions beside the scores, so Compare can tell which evaluations were measured alike.
        "maxExamples": spec.maxExamples,
        "examples": counts,
        "seconds": round(time.monotonic() - t_start, 3),
        "resultsDir": str(results_dir.resolve()),
        **({"onnx": onnx_info} if onnx_info else {}),
    }


def _mteb_version() -> str:
    from . import mteb_adapter

    return mteb_adapter.version()


# ---------------------------------------------------------------------------------------------------------------
# the verb
def _work(spec: EvalSpec, job: Job) -> Outcome:
    result = run_evaluate(spec, job.emit, job.run_dir, sleep_after_load=job.args.debug_sleep_after_load)
    return Outcome("evaluation_finished", result, result)


VERB = Verb(
    name="evaluate",
    help="MTEB-style evaluation (STS, retrieval, classification, clustering, pair classification) of a pruned/trained encoder",
    resolve=spec_from_args,
    work=_work,
    advice=lambda job: Advice(out_of_memory="ran out of memory; lower --batch-size or --max-length",
                              disk_full=disk_full_in(job.args.run_dir, "free some space and evaluate again")),
    add_arguments=add_pause_after_load,
    spec_flags=SPEC_FLAGS,
    # mteb_adapter.MtebUnavailable is a ValueError: a missing package or task data is bad input too.
    user_errors=(DataError, ModelError, ValueError),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    verbs.add_arguments(p, VERB)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m l3prune.evaluate ...`); `python -m l3prune evaluate` is the public one."""
    return main_for(VERB, argv)


if __name__ == "__main__":
    sys.exit(main())
