"""Triplet data: JSONL lines {"query", "positive", "negative"} with optional "instruction" and "task".

Errors name the file, the line number and what is wrong, because the person fixing a 100k-line file needs
to jump straight to the line.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from .fileio import iter_jsonl

REQUIRED = ("query", "positive", "negative")
OPTIONAL = ("instruction", "task")


class DataError(Exception):
    """The data file cannot be used; the message says where and why."""


def is_text(value: str) -> bool:
    """False for a string holding an unpaired surrogate (a JSON escape such as \\ud800): tokenizers refuse it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Triple:
    query: str
    positive: str
    negative: str
    instruction: str | None = None
    task: str | None = None

    def query_text(self) -> str:
        # E5-mistral / LLM2Vec style instruction prefix; only queries get it, documents stay plain.
        if self.instruction:
            return f"Instruct: {self.instruction}\nQuery: {self.query}"
        return self.query


def read_triples(path: str | Path) -> list[Triple]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {p} does not exist; pass a JSONL file of query/positive/negative triples with --data")
    out: list[Triple] = []
    for lineno, obj in iter_jsonl(p, DataError):
        if not isinstance(obj, dict):
            raise DataError(f"{p}:{lineno}: expected a JSON object with query/positive/negative, got {type(obj).__name__}")
        missing = [k for k in REQUIRED if k not in obj]
        if missing:
            raise DataError(f"{p}:{lineno}: missing field(s) {', '.join(missing)}; each line needs query, positive and negative")
        for k in REQUIRED:
            v = obj[k]
            if not isinstance(v, str):
                raise DataError(f"{p}:{lineno}: field '{k}' must be a string, got {type(v).__name__}")
            if not v.strip():
                raise DataError(f"{p}:{lineno}: field '{k}' is empty")
        for k in OPTIONAL:
            if k in obj and obj[k] is not None and not isinstance(obj[k], str):
                raise DataError(f"{p}:{lineno}: optional field '{k}' must be a string, got {type(obj[k]).__name__}")
        for k in REQUIRED + OPTIONAL:
            if isinstance(obj.get(k), str) and not is_text(obj[k]):
                raise DataError(f"{p}:{lineno}: field '{k}' holds an unpaired surrogate escape (such as \\ud800), which is not text; fix the line")
        out.append(Triple(obj["query"], obj["positive"], obj["negative"], obj.get("instruction"), obj.get("task")))
    if not out:
        raise DataError(f"data file {p} holds no triples; it needs at least one line with query/positive/negative")
    return out


def sample_batches(triples: list[Triple], samples: int, batch_size: int, seed: int) -> list[list[Triple]]:
    """Seeded random sample, cut into batches; batches are task-homogeneous when tasks are given.

    Task-homogeneous batches matter because in-batch negatives from another task are trivially easy and would
    make every depth look good. The last short batch of a task is kept: dropping it would make --samples lie.
    """
    if samples < 1 or batch_size < 1:
        raise DataError(f"samples and batch size must be at least 1 (got samples={samples}, batch size={batch_size})")
    rng = random.Random(seed)
    k = min(samples, len(triples))
    chosen = rng.sample(range(len(triples)), k)
    by_task: dict[str, list[Triple]] = {}
    for i in chosen:
        by_task.setdefault(triples[i].task or "", []).append(triples[i])
    batches: list[list[Triple]] = []
    for task in sorted(by_task):
        items = by_task[task]
        batches.extend(items[j : j + batch_size] for j in range(0, len(items), batch_size))
    return batches
