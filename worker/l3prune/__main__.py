"""CLI: python -m l3prune analyze --model DIR --data FILE.jsonl --run-dir DIR [options]
     python -m l3prune train --run-dir DIR [--spec FILE] [--resume] [--model DIR --keep N --data FILE ...] (train.py)
     python -m l3prune evaluate --run-dir DIR --model DIR [--keep N] [--adapter DIR] [--from-run DIR] ... (evaluate.py)
     python -m l3prune export-onnx --run-dir DIR --model DIR [--keep N] [--adapter DIR] [--from-run DIR] ... (export_onnx.py)
     python -m l3prune convert-safetensors --model DIR   (convert.py; the user's opt-in for pickle-only models)

Contract with the extension (protocol/*.schema.json):
* stdout carries exactly the events, one JSON object per line, also appended to <run-dir>/events.jsonl;
  the last one of a successful run is {"event": "layer_losses", ...}.
* exit 0 on success; on failure one sentence on stderr, an "error" event, run.json status "failed", exit 2
  (exit 1 for an internal error); on SIGTERM/SIGINT a "cancelled" event, status "cancelled", exit 128+signal.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .verbs import Advice, Outcome, disk_full_in, run_verb


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m l3prune", description="L³Prune Studio compute worker")
    sub = p.add_subparsers(dest="verb", required=True)
    a = sub.add_parser("analyze", help="initial layer-wise contrastive loss of every depth and the L³Prune cut points")
    # Defaults are None so that a spec file's value survives unless a flag is given explicitly.
    a.add_argument("--model", help="local Hugging Face model folder (safetensors)")
    a.add_argument("--data", help="JSONL file of {query, positive, negative} triples")
    a.add_argument("--run-dir", required=True, help="run folder to create (run.json, events.jsonl)")
    a.add_argument("--spec", help="JSON file with the same fields (camelCase); flags override it")
    a.add_argument("--samples", type=int)
    a.add_argument("--batch-size", type=int, dest="batchSize")
    a.add_argument("--pooling", choices=["mean", "weighted_mean", "last_token"])
    a.add_argument("--scale", type=float)
    a.add_argument("--max-length", type=int, dest="maxLength")
    a.add_argument("--seed", type=int)
    a.add_argument("--device")
    a.add_argument("--trust-remote-code", action="store_true", default=None, dest="trustRemoteCode")
    a.add_argument("--heartbeat-seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    from .train import add_arguments as add_train_arguments

    t = sub.add_parser("train", help="prune to the first n layers and train as a text encoder (LoRA + contrastive loss); --resume continues a run")
    add_train_arguments(t)
    from .evaluate import add_arguments as add_evaluate_arguments

    e = sub.add_parser("evaluate", help="MTEB-style evaluation (STS, retrieval, classification, clustering, pair classification) of a pruned/trained encoder")
    add_evaluate_arguments(e)
    from .export_onnx import add_arguments as add_export_onnx_arguments

    x = sub.add_parser("export-onnx", help="export the (pruned, LoRA-merged) encoder with pooling and L2 norm as one ONNX graph, parity-checked")
    add_export_onnx_arguments(x)
    from .convert import add_arguments as add_convert_arguments

    c = sub.add_parser("convert-safetensors", help="opt-in: read a model's pickle weights with the weights-only unpickler and write safetensors next to them")
    add_convert_arguments(c)
    return p


SPEC_ALIASES = {"batch_size": "batchSize", "max_length": "maxLength", "trust_remote_code": "trustRemoteCode"}


def load_spec(args: argparse.Namespace) -> dict:
    from .analyze import AnalyzeSpec

    fields = set(AnalyzeSpec.__dataclass_fields__)
    spec: dict = {}
    if args.spec:
        sp = Path(args.spec)
        try:
            raw = json.loads(sp.read_text(encoding="utf-8"))
        except OSError as e:
            raise ValueError(f"spec file {sp} cannot be read ({e.strerror}); pass an existing JSON file with --spec") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"spec file {sp} is not valid JSON (line {e.lineno}: {e.msg}); fix the file") from None
        if not isinstance(raw, dict):
            raise ValueError(f"spec file {sp} must hold a JSON object of analyze fields")
        for k, v in raw.items():
            k = SPEC_ALIASES.get(k, k)
            if k not in fields:
                raise ValueError(f"spec file {sp} has unknown field '{k}'; allowed: {', '.join(sorted(fields))}")
            spec[k] = v
    for k in fields:
        v = getattr(args, k, None)
        if v is not None:
            spec[k] = v
    for k in ("model", "data"):
        if not spec.get(k):
            raise ValueError(f"no --{k} given (neither as a flag nor in the spec file); it is required")
        if isinstance(spec[k], str):
            # run.json is read later by processes with another working directory.
            spec[k] = str(Path(spec[k]).expanduser().absolute())
    return spec


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "train":
        # train has its own signal handling (finish the step, checkpoint, then stop) and --resume.
        from .train import run_cli

        return run_cli(args)
    if args.verb == "evaluate":
        from .evaluate import run_cli as run_evaluate

        return run_evaluate(args)
    if args.verb == "convert-safetensors":
        from .convert import run_cli as run_convert

        return run_convert(args)
    if args.verb == "export-onnx":
        from .export_onnx import run_cli as run_export_onnx

        return run_export_onnx(args)
    from .analyze import AnalyzeSpec
    from .data import DataError
    from .encoder import ModelError

    def resolve() -> tuple[AnalyzeSpec, dict]:
        spec_dict = load_spec(args)
        try:
            spec = AnalyzeSpec(**spec_dict)
        except TypeError as e:
            raise ValueError(f"invalid spec: {e}") from None
        spec.validate()
        return spec, spec_dict

    advice = Advice(out_of_memory="ran out of memory; lower --batch-size or --max-length",
                    disk_full=disk_full_in(args.run_dir, "free some space and analyze again"))
    return run_verb(args.verb, args.run_dir, resolve, _analyze, heartbeat_seconds=args.heartbeat_seconds, advice=advice,
                    user_errors=(DataError, ModelError, ValueError))


def _analyze(spec, run) -> Outcome:
    from .analyze import run_analyze

    result = run_analyze(spec, run.emit)
    losses = {k: result[k] for k in ("losses", "small", "large", "blockInfluence", "angularDistance", "numLayers", "samples", "pooling", "scale")}
    return Outcome("layer_losses", losses, {k: result[k] for k in ("small", "large", "numLayers", "seconds")})


if __name__ == "__main__":
    sys.exit(main())
