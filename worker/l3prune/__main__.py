"""CLI: python -m l3prune <verb> --run-dir DIR [--spec FILE] [flags], one verb per module:

    analyze              analyze.py     initial layer-wise loss of every depth and the L³Prune cut points
    train                train/         prune to n layers and train as a text encoder; --resume continues a run
    evaluate             evaluate.py    MTEB-style evaluation of a pruned/trained encoder
    export-onnx          export_onnx.py the encoder as one parity-checked ONNX graph
    export-st            export_st.py   the encoder as a parity-checked sentence-transformers folder with a model card
    encode               encode.py      a .jsonl/.txt file of texts into a float32 .npy of unit-length embeddings (streamed)
    convert-safetensors  convert.py     the user's opt-in for pickle-only models (no run folder)
    download-model       download.py    a Hugging Face repo id into the hub cache, with --allow-download (no run folder)
    devices              devices.py     the CUDA devices, CPU and attention implementations the planner plans for (no run folder)
    mteb-tasks           mteb_tasks.py  the MTEB tasks of the installed mteb, each with whether its data is cached (no run folder)
    preview-data         preview.py     a data set as analyze/train read it: format, columns, tasks, samples, token lengths (no run folder)

Every verb's spec is protocol/specs/<verb>.schema.json (flags: its fields in kebab-case) and every verb runs in the
one lifecycle of verbs.py. Contract with the extension (protocol/*.schema.json):
* stdout carries exactly the events, one JSON object per line, also appended to <run-dir>/events.jsonl;
* exit 0 on success; on failure one sentence on stderr, an "error" event, run.json status "failed", exit 2
  (exit 1 for an internal error); on SIGTERM/SIGINT a "cancelled" event, status "cancelled", exit 128+signal.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .verbs import Verb, add_arguments, run_verb

VERB_MODULES = ("analyze", "train", "evaluate", "export_onnx", "export_st", "encode", "convert", "download", "devices", "preview", "mteb_tasks")


def verbs() -> dict[str, Verb]:
    table = {}
    for name in VERB_MODULES:
        verb = importlib.import_module(f".{name}", __package__).VERB
        table[verb.name] = verb
    return table


def build_parser(table: dict[str, Verb] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m l3prune", description="L³Prune Studio compute worker")
    sub = p.add_subparsers(dest="verb", required=True)
    for verb in (table or verbs()).values():
        add_arguments(sub.add_parser(verb.name, help=verb.help, description=verb.help), verb)
    return p


def main(argv: list[str] | None = None) -> int:
    table = verbs()
    args = build_parser(table).parse_args(argv)
    return run_verb(table[args.verb], args)


if __name__ == "__main__":
    sys.exit(main())
