"""Triplet data: {"query", "positive", "negative"} with optional "instruction", "task" and "symmetric", read from
JSONL, CSV, Parquet, a datasets folder or an E5 folder (datasource.py); the paper's batching.

Errors name the file, the line (or row) number and what is wrong, because the person fixing a 100k-line file needs
to jump straight to the line.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from .datasource import DataError, is_text, load  # noqa: F401 - DataError and is_text are imported from here
from .textpipe import Text

REQUIRED = ("query", "positive", "negative")
OPTIONAL = ("instruction", "task")
# A row may say its documents get the query's instruction too (the paper does so for its symmetric tasks,
# allnli_split2 and quora_duplicates_split1/2); without it documents are bare.
OPTIONAL_BOOL = ("symmetric",)


@dataclass(frozen=True)
class Triple:
    query: str
    positive: str
    negative: str
    instruction: str | None = None
    task: str | None = None
    symmetric: bool = False

    def query_text(self) -> Text:
        """The query with its instruction; textpipe.TextPipeline writes it as "{instruction}; {query}" (the paper's
        E5 format) and pools only the query's own tokens. (It used to be "Instruct: ...\nQuery: ..." with every
        token pooled, which is not what the paper trains or measures.)"""
        return Text(self.query, self.instruction or None)

    def doc_texts(self) -> tuple[Text, Text]:
        """Positive and negative: bare, unless the row is marked symmetric (then they get the instruction too)."""
        instr = (self.instruction or None) if self.symmetric else None
        return Text(self.positive, instr), Text(self.negative, instr)

    def texts(self) -> tuple[Text, Text, Text]:
        return (self.query_text(), *self.doc_texts())


def batch_texts(batch: list[Triple]) -> list[Text]:
    """Queries, then positives, then negatives: one forward pass's texts (analyze and train alike)."""
    return [t.query_text() for t in batch] + [t.doc_texts()[0] for t in batch] + [t.doc_texts()[1] for t in batch]


def text_chunks(texts: list, groups: int, size: int | None) -> list[list]:
    """texts cut into `groups` equal groups (batch_texts: queries, positives, negatives), each cut into chunks of
    at most `size` texts (None: the whole group): the forward passes of one batch, in order."""
    g = len(texts) // max(groups, 1)
    if g * groups != len(texts):
        raise ValueError(f"{len(texts)} texts do not split into {groups} equal groups")
    m = size or g or 1
    return [texts[k * g + i : k * g + min(i + m, g)] for k in range(groups) for i in range(0, g, m)]


def read_triples(path: str | Path, columns: dict[str, str] | None = None) -> list[Triple]:
    """Triples from a JSONL, CSV or Parquet file, a datasets save_to_disk folder or an E5 folder (datasource.py);
    columns: the spec's dataColumns (role -> column name), None to find them by name."""
    return load(path, columns).triples


def sample_batches(triples: list[Triple], samples: int, batch_size: int, seed: int, task_homogeneous: bool = False) -> list[list[Triple]]:
    """The paper's analysis sample: random.sample of `samples` triples (seeded), cut in sampled order into batches of
    exactly batch_size, so batches mix tasks; a short last batch is dropped (every batch has batch_size triples).

    task_homogeneous groups the sample by the task field first (tasks in sorted order, each cut the same way, each
    task's short last batch dropped): in-batch negatives then come from the query's own task.
    """
    if samples < 1 or batch_size < 1:
        raise DataError(f"samples and batch size must be at least 1 (got samples={samples}, batch size={batch_size})")
    rng = random.Random(seed)
    k = min(samples, len(triples))
    chosen = [triples[i] for i in rng.sample(range(len(triples)), k)]
    groups: list[list[Triple]] = [chosen]
    if task_homogeneous:
        by_task: dict[str, list[Triple]] = {}
        for t in chosen:
            by_task.setdefault(t.task or "", []).append(t)
        groups = [by_task[task] for task in sorted(by_task)]
    batches = [g[j : j + batch_size] for g in groups for j in range(0, len(g) - batch_size + 1, batch_size)]
    if not batches:
        where = "no task of the sample has" if task_homogeneous and len(groups) > 1 else "the sample has fewer than"
        raise DataError(
            f"{where} {batch_size} triples, one full batch (sample of {k} of {len(triples)} triples); lower batchSize"
            + (" or set taskHomogeneous to false" if task_homogeneous and len(groups) > 1 else "")
        )
    return batches
