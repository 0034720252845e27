"""The `export-st` verb: a trained variant as a sentence-transformers folder, parity-checked, with a model card.

    python -m l3prune export-st --run-dir DIR --from-run TRAIN_RUN [--out OUT]
    python -m l3prune export-st --run-dir DIR --model DIR [--keep N] [--adapter DIR] [--out OUT]

The folder holds the pruned, merged model (safetensors) and its tokenizer at the root, modules.json with three
modules: l3prune_st.L3PruneTransformer (st_module.py: the worker's text pipeline, which stock Pooling cannot
express), stock Pooling and stock Normalize; config_sentence_transformers.json with the instruction prompts;
README.md, a model card with the hub's metadata (modelcard.py). Loading it runs l3prune_st.py, so it takes
``SentenceTransformer(path, trust_remote_code=True)``. Before the folder is renamed into place it is loaded that
way and its embeddings of the parity texts (documents and instructed queries) are compared with the worker's
(evaluate's and encode's vectors): a minimum cosine below minCosine fails the run and writes nothing.
Events: started, model_loaded, progress (stage reference | save | parity), st_exported.
"""
from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from . import modelcard, specs
from .data import DataError
from .encoder import ModelError, check_model_dir, model_loaded_fields
from .export_onnx import INSTRUCTED, parity_extras, parity_texts
from .fileio import fsync_tree, write_json_atomic
from .textpipe import INSTRUCTION_FORMAT, Text
from .variant import load_variant, resolve_source
from .verbs import Advice, Job, Outcome, Verb, add_pause_after_load, main_for

MODULE_FILE = "l3prune_st.py"
MODULE_CLASS = "l3prune_st.L3PruneTransformer"
POOLING_MODES = {"mean": "mean", "weighted_mean": "weightedmean", "last_token": "lasttoken"}
PARITY_BATCH = 8
# The retrieval instruction the built-in tasks and LLM2Vec's E5 data use for a generic query.
DEFAULT_QUERY_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

ExportStSpec = specs.spec_class("export-st", "ExportStSpec", __name__)


def _derive(run_dir: Path, given: dict) -> dict:
    source = resolve_source(given.get("model"), given.get("adapter"), given.get("keep"), given.get("fromRun"), purpose="export")
    out = {"model": source.model, "keep": source.keep, "adapter": source.adapter}
    out.update({k: v for k, v in source.trained_with.items() if k not in given and v is not None})
    if given.get("out") is None:
        out["out"] = str(run_dir / "sentence-transformers")
    return out


def spec_from_args(args, _world=None) -> ExportStSpec:
    run_dir = Path(specs.absolute(args.run_dir))
    values = specs.resolve("export-st", specs.gather("export-st", args), derive=lambda g: _derive(run_dir, g),
                           paths=("model", "out", "adapter", "fromRun"))
    out = Path(values["out"])
    if out == run_dir or out in run_dir.parents:
        raise ValueError(f"--out {out} would hold the run folder {run_dir}; choose a new folder for the export")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output folder {out} already exists and is not empty; choose a new --out")
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise ValueError("export-st needs the sentence-transformers package to check the folder it writes; "
                         "install it into the worker's environment (pip install 'sentence-transformers>=6.2')") from None
    return ExportStSpec(**values)


def parity_set(tok, max_length: int) -> list[Text]:
    """Every parity text as a document and as an instructed query, plus the export's long and instructed extras:
    30+ texts of mixed length."""
    base = [Text(t) for t in parity_texts(None)]
    queries = [Text(t.text, DEFAULT_QUERY_INSTRUCTION) for t in base]
    return base + queries + parity_extras(tok, max_length)


def module_files(stage: Path, pooling: str, hidden: int, pipeline: dict, max_length: int) -> None:
    """modules.json and each module's config, as SentenceTransformer.save writes them (ST 6)."""
    shutil.copyfile(Path(__file__).with_name("st_module.py"), stage / MODULE_FILE)
    write_json_atomic(stage / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": MODULE_CLASS},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.base.modules.normalize.Normalize"},
    ])
    write_json_atomic(stage / "sentence_bert_config.json", {
        "transformer_task": "feature-extraction",
        "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        "module_output_name": "token_embeddings",
        "text_pipeline": {k: pipeline[k] for k in ("instructionFormat", "chatPrefix", "chatSuffix", "embedMask")},
    })
    (stage / "1_Pooling").mkdir()
    # include_prompt True: the embed mask the module hands Pooling already leaves the prompt out.
    write_json_atomic(stage / "1_Pooling" / "config.json", {"embedding_dimension": hidden, "pooling_mode": POOLING_MODES[pooling],
                                                            "include_prompt": True})
    (stage / "2_Normalize").mkdir()
    write_json_atomic(stage / "2_Normalize" / "config.json", {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"})
    import sentence_transformers
    import transformers

    write_json_atomic(stage / "config_sentence_transformers.json", {
        "__version__": {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
                        "pytorch": torch.__version__},
        "model_type": "SentenceTransformer",
        # A prompt is the instruction in the pipeline's format; encode(texts, prompt_name="query") embeds as the
        # worker embeds Text(text, DEFAULT_QUERY_INSTRUCTION).
        "prompts": {"query": INSTRUCTION_FORMAT.format(instruction=DEFAULT_QUERY_INSTRUCTION), "document": ""},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })


def st_embeddings(folder: Path, texts: list[Text]) -> torch.Tensor:
    """The folder loaded by sentence-transformers, each text encoded with its instruction as the prompt."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu", local_files_only=True)
    rows: list[torch.Tensor | None] = [None] * len(texts)
    groups: dict[str | None, list[int]] = {}
    for i, t in enumerate(texts):
        groups.setdefault(t.instruction, []).append(i)
    for inst, idx in groups.items():
        prompt = INSTRUCTION_FORMAT.format(instruction=inst) if inst else None
        emb = model.encode([texts[i].text for i in idx], prompt=prompt, batch_size=PARITY_BATCH, convert_to_tensor=True)
        for i, e in zip(idx, emb):
            rows[i] = e.float().cpu()
    out = torch.stack([r for r in rows if r is not None])
    del model
    return out


def run_export_st(spec: ExportStSpec, emit: Callable[..., object], *, sleep_after_load: float = 0.0) -> dict:
    t0 = time.monotonic()
    out = Path(spec.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)
    try:
        check_model_dir(spec.model)
        enc, info = load_variant(spec.model, spec.keep, spec.adapter, max_length=spec.maxLength, trust_remote_code=spec.trustRemoteCode)
        enc.set_chat_template(spec.chatTemplate)
        n = enc.num_layers
        emit("model_loaded", **model_loaded_fields(enc.model, num_layers=n, load_seconds=time.monotonic() - t0,
                                                   originalNumLayers=info["originalNumLayers"], device="cpu"))
        if sleep_after_load:
            time.sleep(sleep_after_load)
        texts = parity_set(enc.tokenizer, spec.maxLength)
        steps, step = 3, 0

        def progress(stage_name: str, **extra) -> None:
            nonlocal step
            step += 1
            emit("progress", batch=step, batches=steps, stage=stage_name, elapsedSeconds=round(time.monotonic() - t0, 3), **extra)

        refs = torch.cat([F.normalize(enc.encode(texts[i : i + PARITY_BATCH], spec.pooling).float(), dim=-1)
                          for i in range(0, len(texts), PARITY_BATCH)])
        progress("reference", samplesDone=len(texts), samples=len(texts))
        hidden = int(refs.shape[-1])
        pipeline = enc.pipeline.manifest()
        enc.model.save_pretrained(stage, safe_serialization=True)
        tok = enc.tokenizer
        # The ST module truncates at the tokenizer's model_max_length (Transformer.max_seq_length).
        tok.model_max_length = spec.maxLength
        tok.save_pretrained(stage)
        # Weights on disk now; a 7-8B model should not be in memory twice while sentence-transformers loads it.
        enc.model = None
        gc.collect()
        module_files(stage, spec.pooling, hidden, pipeline, spec.maxLength)
        progress("save")

        got = st_embeddings(stage, texts)
        cos = (got * refs).sum(-1)
        min_cos, mean_cos = float(cos.min()), float(cos.mean())
        progress("parity", samplesDone=len(texts), samples=len(texts))
        if not (min_cos >= spec.minCosine):
            worst = int(cos.argmin())
            raise ValueError(
                f"sentence-transformers parity check failed: min cosine {min_cos:.6f} < {spec.minCosine} over {len(texts)} texts "
                f"(worst: {texts[worst].text[:40]!r}); the folder does not reproduce this encoder, nothing was written"
            )
        parity = {"minCosine": min_cos, "meanCosine": mean_cos, "texts": len(texts), "threshold": spec.minCosine}
        card = modelcard.write_card(stage, spec=spec.to_json(), info=info, num_layers=n, hidden=hidden, parity=parity,
                                    query_prompt=INSTRUCTION_FORMAT.format(instruction=DEFAULT_QUERY_INSTRUCTION),
                                    instructed_example=INSTRUCTED[0])
        fsync_tree(stage)
        if out.exists():
            out.rmdir()
        os.rename(stage, out)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return {
            "outDir": str(out),
            "bytes": size,
            "numLayers": n,
            "originalNumLayers": info["originalNumLayers"],
            "pooling": spec.pooling,
            "parityMinCosine": min_cos,
            "parityMeanCosine": mean_cos,
            "parityTexts": len(texts),
            "modelIndexResults": card["results"],
            "lossCurve": card["lossCurve"],
            "seconds": round(time.monotonic() - t0, 3),
        }
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _work(spec: ExportStSpec, job: Job) -> Outcome:
    result = run_export_st(spec, job.emit, sleep_after_load=job.args.debug_sleep_after_load)
    return Outcome("st_exported", result, result)


VERB = Verb(
    name="export-st",
    help="save the (pruned, LoRA-merged) encoder as a sentence-transformers folder with a model card, parity-checked",
    resolve=spec_from_args,
    work=_work,
    advice=lambda job: Advice(
        out_of_memory="ran out of memory while exporting; free memory or export a model with fewer layers (--keep)",
        disk_full=(f"the disk holding {Path(job.spec.out).parent} is full (no space left on device); nothing was exported, "
                   "free some space or choose another --out"),
    ),
    add_arguments=add_pause_after_load,
    user_errors=(DataError, ModelError, ValueError),
    cancelled=lambda job: ("; nothing was written to the output folder", {}),
)


def main(argv: list[str] | None = None) -> int:
    return main_for(VERB, argv)


if __name__ == "__main__":
    sys.exit(main())
