"""CLI: python -m l3prune analyze --model DIR --data FILE.jsonl --run-dir DIR [options]
     python -m l3prune train --run-dir DIR [--spec FILE] [--resume] [--model DIR --keep N --data FILE ...] (train.py)
     python -m l3prune evaluate --run-dir DIR --model DIR [--keep N] [--adapter DIR] [--from-run DIR] ... (evaluate.py)
     python -m l3prune export-onnx --run-dir DIR --model DIR [--keep N] [--adapter DIR] [--from-run DIR] ... (export_onnx.py)

Contract with the extension (protocol/*.schema.json):
* stdout carries exactly the events, one JSON object per line, also appended to <run-dir>/events.jsonl;
  the last one of a successful run is {"event": "layer_losses", ...}.
* exit 0 on success; on failure one sentence on stderr, an "error" event, run.json status "failed", exit 2
  (exit 1 for an internal error); on SIGTERM/SIGINT a "cancelled" event, status "cancelled", exit 128+signal.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from pathlib import Path

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 1


class Cancelled(BaseException):
    """Raised from a signal handler; a BaseException so no `except Exception` in a library swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, _frame):
    # A second SIGTERM (impatient parent, process-group kill) must not interrupt writing the "cancelled" state.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Cancelled(signum)


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
    if args.verb == "export-onnx":
        from .export_onnx import run_cli as run_export_onnx

        return run_export_onnx(args)
    from .events import RunFolder, RunFolderError

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    _quiet_libraries()
    from .analyze import AnalyzeSpec

    run: RunFolder | None = None
    try:
        # An invalid spec is refused before the run folder exists: run.json must always hold a valid spec.
        try:
            spec_dict = load_spec(args)
            try:
                spec = AnalyzeSpec(**spec_dict)
            except TypeError as e:
                raise ValueError(f"invalid spec: {e}") from None
            spec.validate()
        except ValueError as e:
            print(f"l3prune: {e}", file=sys.stderr)
            return EXIT_USER_ERROR
        run = RunFolder(args.run_dir, args.verb, spec_dict)
        try:
            run.open()
        except RunFolderError as e:
            run = None
            print(f"l3prune: {e}", file=sys.stderr)
            return EXIT_USER_ERROR
        run.emit("started", verb=args.verb, pid=run._state["pid"], spec=spec_dict)
        run.start_heartbeat(args.heartbeat_seconds)
        return _run_verb(spec, run)
    except Cancelled as c:
        if run is not None:
            run.stop_heartbeat()
            name = signal.Signals(c.signum).name
            run.emit("cancelled", signal=name)
            run.finish("cancelled", error={"message": f"cancelled by {name}"})
            run.close()
        print(f"l3prune: cancelled by {signal.Signals(c.signum).name}", file=sys.stderr)
        return 128 + c.signum


def _quiet_libraries() -> None:
    """stderr is reserved for the one-sentence error; library progress bars and warnings would bury it."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _run_verb(spec, run) -> int:
    from .analyze import run_analyze
    from .data import DataError
    from .encoder import ModelError

    try:
        result = run_analyze(spec, run.emit)
    except (DataError, ModelError, ValueError) as e:
        return _fail(run, str(e), "user", EXIT_USER_ERROR)
    except MemoryError:
        return _fail(run, "ran out of memory; lower --batch-size or --max-length", "resource", EXIT_USER_ERROR)
    except Exception as e:  # noqa: BLE001 - last line of defence: the run folder must still say "failed"
        detail = traceback.format_exc()
        return _fail(run, f"internal error ({type(e).__name__}: {e}); see events.jsonl for the traceback", "internal", EXIT_INTERNAL, detail)
    run.stop_heartbeat()
    run.emit(
        "layer_losses",
        losses=result["losses"],
        small=result["small"],
        large=result["large"],
        blockInfluence=result["blockInfluence"],
        angularDistance=result["angularDistance"],
        numLayers=result["numLayers"],
        samples=result["samples"],
        pooling=result["pooling"],
        scale=result["scale"],
    )
    run.finish("succeeded", result={"small": result["small"], "large": result["large"], "numLayers": result["numLayers"], "seconds": result["seconds"]})
    run.close()
    return 0


def _fail(run, message: str, kind: str, code: int, detail: str | None = None) -> int:
    message = " ".join(message.split())
    run.stop_heartbeat()
    fields = {"message": message, "kind": kind}
    if detail:
        fields["detail"] = detail
    run.emit("error", **fields)
    run.finish("failed", error={"message": message, "kind": kind})
    run.close()
    print(f"l3prune: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
