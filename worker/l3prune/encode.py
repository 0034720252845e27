"""The `encode` verb: a file of texts into a float32 .npy of unit-length embeddings, one row per text in input order.

    python -m l3prune encode --run-dir DIR (--from-run TRAIN_RUN | --model DIR|REPO_ID [--keep N] [--adapter DIR])
        --input FILE.jsonl|FILE.txt --output FILE.npy [--instruction TEXT] [--batch-size B] [--max-length N]

The encoder is evaluate's (variant.load_variant, the text pipeline of textpipe.py, evaluate.embed), so a row is the
vector evaluate scores, L2-normalised. It streams: one cheap pass checks and counts the rows, the .npy header is
written for that count (numpy.lib.format.open_memmap), then the input is read again CHUNK_TEXTS texts at a time and
each chunk's rows are written in place, so memory holds one chunk, never the whole file. The file is
<output>.partial until the last row is flushed, then renamed: a crash or cancel never leaves a file named like a
complete one. Events: started, model_loaded, progress per batch (samplesDone/samples count texts), encoded.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import specs
from .data import DataError
from .encoder import ModelError, model_loaded_fields, resolve_device
from .evaluate import embed
from .textpipe import Text
from .variant import load_variant, resolve_source
from .verbs import Advice, Job, Outcome, Verb, add_pause_after_load, disk_full_in, main_for

# Texts read, sorted and embedded at a time: bounds memory (texts + rows of one chunk) whatever the file's size.
CHUNK_TEXTS = 4096
PARTIAL_SUFFIX = ".partial"
# A text line longer than this is a corrupt file, not a text (the tokenizer truncates at maxLength anyway).
MAX_LINE_BYTES = 16 * 1024 * 1024
FORMATS = (".jsonl", ".txt")

EncodeSpec = specs.spec_class("encode", "EncodeSpec", __name__)


def _derive(given: dict) -> dict:
    source = resolve_source(given.get("model"), given.get("adapter"), given.get("keep"), given.get("fromRun"), purpose="encode")
    out = {"model": source.model, "keep": source.keep, "adapter": source.adapter}
    out.update({k: v for k, v in source.trained_with.items() if k not in given and v is not None})
    return out


def spec_from_args(args, _world=None) -> EncodeSpec:
    """Flags, spec file, the train run and defaults into run.json's spec; a missing or unreadable input and an
    output that exists are refused here, before the run folder or the model."""
    values = specs.resolve("encode", specs.gather("encode", args), derive=_derive, paths=("model", "adapter", "fromRun", "input", "output"))
    src, dst = Path(values["input"]), Path(values["output"])
    if src.suffix.lower() not in FORMATS:
        raise ValueError(f"input {src} is neither .jsonl nor .txt; give a JSONL file of {{\"text\": ...}} objects or a text file with one text per line")
    if not src.is_file():
        raise ValueError(f"input file {src} does not exist; pass the texts with --input")
    if dst.suffix != ".npy":
        raise ValueError(f"--output {dst} must name a .npy file (numpy's format); end the name in .npy")
    if dst.exists() or dst.is_symlink():
        raise ValueError(f"output file {dst} already exists; choose a new --output")
    if not dst.parent.is_dir():
        raise ValueError(f"the folder of --output {dst} does not exist; create it or choose another path")
    return EncodeSpec(**values)


# ---------------------------------------------------------------------------------------------------------------
# input
def read_texts(path: Path, instruction: str | None) -> Iterator[Text]:
    """The input's texts in file order (blank lines skipped); a bad line raises DataError naming file and line."""
    jsonl = path.suffix.lower() == ".jsonl"
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror or e}); check the --input path") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(f"{path}:{lineno}: the line is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB; split it or fix the file")
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise DataError(f"{path}:{lineno}: not UTF-8 text; save the file as UTF-8") from None
            if not line.strip():
                continue
            if not jsonl:
                yield Text(line, instruction)
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not a JSON object ({e.msg}); each line must be {{\"text\": ...}}") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError(f"{path}:{lineno}: each line must be a JSON object with a string \"text\" field")
            inst = row.get("instruction", None)
            if inst is not None and not isinstance(inst, str):
                raise DataError(f"{path}:{lineno}: \"instruction\" must be a string or absent")
            yield Text(row["text"], inst or instruction)


def count_texts(path: Path) -> int:
    """The rows the output will have: one pass over the file that also checks every line, before the model loads."""
    n = 0
    for _ in read_texts(path, None):
        n += 1
    return n


def chunks(it: Iterator[Text], size: int) -> Iterator[list[Text]]:
    batch: list[Text] = []
    for t in it:
        batch.append(t)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------------------------
# the run
def run_encode(spec: EncodeSpec, emit: Callable[..., object], *, sleep_after_load: float = 0.0) -> dict:
    t_start = time.monotonic()
    src, dst = Path(spec.input), Path(spec.output)
    rows = count_texts(src)
    if rows == 0:
        raise DataError(f"{src} holds no texts (every line is blank); give one text per line")
    device = resolve_device(spec.device)
    t0 = time.monotonic()
    enc, info = load_variant(spec.model, spec.keep, spec.adapter, max_length=spec.maxLength, device=device,
                             trust_remote_code=spec.trustRemoteCode)
    enc.set_chat_template(spec.chatTemplate)
    hidden = int(enc.model.config.hidden_size)
    emit("model_loaded", **model_loaded_fields(enc.model, num_layers=enc.num_layers, load_seconds=time.monotonic() - t0,
                                               originalNumLayers=info["originalNumLayers"], device=device, precision="fp32"))
    partial = dst.with_name(dst.name + PARTIAL_SUFFIX)
    if partial.is_symlink():
        raise DataError(f"{partial} is a link; remove it and run again")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(rows, hidden))
    if sleep_after_load:
        time.sleep(sleep_after_load)  # after the .partial exists: a cancel test sees what a cancel leaves
    batches = sum(-(-min(CHUNK_TEXTS, rows - s) // spec.batchSize) for s in range(0, rows, CHUNK_TEXTS))
    done = {"batch": 0, "samples": 0}
    t_embed = time.monotonic()

    def on_batch(n: int) -> None:
        done["batch"] += 1
        done["samples"] += n
        emit("progress", batch=done["batch"], batches=batches, samplesDone=done["samples"], samples=rows,
             elapsedSeconds=round(time.monotonic() - t_embed, 3))

    start = 0
    for chunk in chunks(read_texts(src, spec.instruction), CHUNK_TEXTS):
        if start + len(chunk) > rows:
            raise DataError(f"{src} grew while it was being encoded; encode a file that nothing is writing to")
        out[start : start + len(chunk)] = embed(enc, chunk, spec.pooling, spec.batchSize, on_batch, normalize=True)
        start += len(chunk)
    if start != rows:
        raise DataError(f"{src} changed while it was being encoded ({start} texts instead of {rows}); encode a file that nothing is writing to")
    out.flush()
    del out
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, dst)
    seconds = time.monotonic() - t_embed
    return {
        "output": str(dst),
        "rows": rows,
        "dim": hidden,
        "numLayers": enc.num_layers,
        "pooling": spec.pooling,
        "device": device,
        "textsPerSecond": round(rows / seconds, 3) if seconds > 0 else None,
        "seconds": round(time.monotonic() - t_start, 3),
    }


def _work(spec: EncodeSpec, job: Job) -> Outcome:
    result = run_encode(spec, job.emit, sleep_after_load=job.args.debug_sleep_after_load)
    return Outcome("encoded", result, result)


VERB = Verb(
    name="encode",
    help="embed a .jsonl/.txt file of texts into a float32 .npy (one L2-normalised row per text, streamed)",
    resolve=spec_from_args,
    work=_work,
    advice=lambda job: Advice(out_of_memory="ran out of memory; lower --batch-size or --max-length",
                              disk_full=disk_full_in(Path(job.spec.output).parent, f"free some space and encode again ({Path(job.spec.output).name}{PARTIAL_SUFFIX} is incomplete)")),
    add_arguments=add_pause_after_load,
    user_errors=(DataError, ModelError, ValueError),
    cancelled=lambda job: (f"; {Path(job.spec.output).name}{PARTIAL_SUFFIX} holds the rows written so far and is incomplete" if job.spec else "", {}),
)


def main(argv: list[str] | None = None) -> int:
    return main_for(VERB, argv)


if __name__ == "__main__":
    sys.exit(main())
