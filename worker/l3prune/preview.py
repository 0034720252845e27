"""`python -m l3prune preview-data --data PATH --model MODEL [--data-columns ...] [--max-length N]`: a data set as
analyze and train will read it, before an hour of GPU time is spent on it.

One JSON line on stdout (protocol/data-preview.schema.json): the format and the column of each role, rows, tasks
with their sizes, three triples as the model sees them (through textpipe's pipeline: the query with its
instruction, the chat user turn), and the token lengths of the texts with the model's own tokenizer, with how
many exceed maxLength and are therefore cut. The tokens are counted as the pipeline tokenises: the whole string
with special tokens, before truncation. Only the tokenizer is loaded, never the weights.
"""
from __future__ import annotations

import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

from . import specs
from .data import Triple
from .datasource import DataError, load
from .encoder import ModelError
from .events import now_iso
from .textpipe import pipeline_for
from .verbs import Advice, Outcome, Verb, main_for

PreviewSpec = specs.spec_class("preview-data", "PreviewSpec", __name__)
SAMPLES = 3
MAX_BINS = 40
TOKENIZE_BATCH = 512
KINDS = ("query", "positive", "negative")


def load_tokenizer(model: str, trust_remote_code: bool):
    """The model folder's tokenizer alone (fast where the folder has tokenizer.json)."""
    p = Path(model)
    if not p.is_dir():
        raise ModelError(f"model folder {p} does not exist; pass a local Hugging Face model folder or a cached repo id with --model")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(p, trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many types; the user needs one sentence
        first = str(e).splitlines()[0] if str(e) else ""
        hint = "; rerun with --trust-remote-code only if you trust its code" if "trust_remote_code" in str(e) else \
            "; it needs the tokenizer files saved with the model"
        raise ModelError(f"model folder {p}: cannot load its tokenizer ({type(e).__name__}: {first[:200]}){hint}") from None


def bin_width(upper: int) -> int:
    """The smallest 1-2-5 step that covers 0..upper in at most MAX_BINS bins."""
    need = max(1, math.ceil(upper / MAX_BINS))
    k = 0
    while True:
        for m in (1, 2, 5):
            if m * 10**k >= need:
                return m * 10**k
        k += 1


def histogram(lengths: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """Equal bins from 0 past the longest text, and past max_length too unless it is over twice the longest (then
    bins up to it would squeeze every text into the first few)."""
    longest = max(lengths)
    upper = max(longest, max_length if max_length <= 2 * longest else 0) + 1
    w = bin_width(upper)
    n = math.ceil(upper / w)
    counts = [0] * n
    for x in lengths:
        counts[x // w] += 1
    return [i * w for i in range(n + 1)], counts


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    out: list[int] = []
    for i in range(0, len(texts), TOKENIZE_BATCH):
        ids = tokenizer(texts[i : i + TOKENIZE_BATCH], add_special_tokens=True, truncation=False)["input_ids"]
        out.extend(len(x) for x in ids)
    return out


def preview(spec: PreviewSpec) -> dict:
    t0 = time.monotonic()
    source = load(spec.data, spec.dataColumns)
    triples: list[Triple] = source.triples
    tokenizer = load_tokenizer(spec.model, spec.trustRemoteCode)
    pipe = pipeline_for(tokenizer, spec.chatTemplate)

    n = len(triples)
    sampled = n > spec.maxRows
    counted = sorted(random.Random(f"l3prune-preview:{spec.seed}").sample(range(n), spec.maxRows)) if sampled else range(n)
    by_kind: dict[str, list[str]] = {k: [] for k in KINDS}
    for i in counted:
        for kind, text in zip(KINDS, triples[i].texts()):
            by_kind[kind].append(pipe.full_text(text))
    lengths = {k: token_lengths(tokenizer, v) for k, v in by_kind.items()}
    every = [x for k in KINDS for x in lengths[k]]
    ordered = sorted(every)
    edges, counts = histogram(every, spec.maxLength)

    samples = []
    for i in sorted(random.Random(spec.seed).sample(range(n), min(SAMPLES, n))):
        t = triples[i]
        shown = [pipe.full_text(x) for x in t.texts()]
        toks = token_lengths(tokenizer, shown)
        samples.append({
            "row": i + 1, "task": t.task, "instruction": t.instruction or None, "symmetric": t.symmetric,
            "query": shown[0], "positive": shown[1], "negative": shown[2],
            "queryTokens": toks[0], "positiveTokens": toks[1], "negativeTokens": toks[2],
        })

    tasks = Counter(t.task for t in triples)
    return {
        "time": now_iso(),
        "data": str(source.path.absolute()),
        "format": source.format,
        "columns": source.columns,
        "notes": source.notes[:20],
        "rows": n,
        "tasks": [{"name": name, "rows": rows} for name, rows in sorted(tasks.items(), key=lambda kv: (-kv[1], kv[0] or ""))],
        "model": spec.model,
        "maxLength": spec.maxLength,
        "chatWrapped": pipe.chat_prefix is not None,
        "instructionFormat": pipe.instruction_format,
        "samples": samples,
        "lengths": {
            "texts": len(every),
            "rowsCounted": len(counted),
            "sampled": sampled,
            "edges": edges,
            "counts": counts,
            "truncated": sum(1 for x in every if x > spec.maxLength),
            "truncatedByKind": {k: sum(1 for x in lengths[k] if x > spec.maxLength) for k in KINDS},
            "max": ordered[-1],
            "mean": round(sum(every) / len(every), 3),
            "p50": ordered[(len(ordered) - 1) // 2],
            "p95": ordered[math.ceil(0.95 * len(ordered)) - 1],
        },
        "seconds": round(time.monotonic() - t0, 3),
    }


def _resolve(args) -> PreviewSpec:
    return PreviewSpec(**specs.resolve("preview-data", specs.gather("preview-data", args), paths=("model", "data")))


VERB = Verb(
    name="preview-data",
    help="what a data set holds as analyze and train read it: format, columns, rows, tasks, three triples as the model sees them, token lengths",
    resolve=lambda args, _world: _resolve(args),
    work=lambda spec, job: Outcome("data_preview", preview(spec)),
    advice=lambda job: Advice(out_of_memory="ran out of memory while reading the data; lower --max-rows",
                              disk_full="the disk is full"),
    user_errors=(DataError, ModelError, ValueError),
    run_folder=False,
)


def main(argv: list[str] | None = None) -> int:
    return main_for(VERB, argv)


if __name__ == "__main__":
    sys.exit(main())
