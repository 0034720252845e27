"""Training and analysis triples in the formats people keep them: our JSONL, CSV, Parquet, a `datasets`
``save_to_disk`` folder, and LLM2Vec's E5 folder (one ``<dataset>.jsonl`` per E5 data set, as the paper trains on).

Every format goes through one row check (``_triple``), so a bad row gets the same sentence whatever the file
type: the file, the row (a line number where the file has lines) and what to fix. Columns are found by name with
the sentence-transformers conventions (``anchor``/``positive``/``negative``) and ours (``query``), or by an
explicit mapping (spec ``dataColumns``, flag ``--data-columns query=anchor,positive=pos``); a column that is
missing or could be two things is refused naming the columns found and the flag that settles it.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .fileio import iter_jsonl

ROLES = ("query", "positive", "negative", "instruction", "task", "symmetric")
REQUIRED = ("query", "positive", "negative")
TEXT_OPTIONAL = ("instruction", "task")
# Names a column goes by, in order of preference: ours, then sentence-transformers' (anchor/positive/negative),
# then the short and the retrieval spellings common on the Hub.
ALIASES: dict[str, tuple[str, ...]] = {
    "query": ("query", "anchor", "question"),
    "positive": ("positive", "pos"),
    "negative": ("negative", "neg", "hard_negative"),
    "instruction": ("instruction",),
    "task": ("task",),
    "symmetric": ("symmetric",),
}
FORMATS = ("jsonl", "csv", "parquet", "datasets", "e5")
CSV_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")

# LLM2Vec's E5 mix (llm2vec/dataset/E5Data.py): the file names it reads, each data set's instruction, and the data
# sets whose documents get the instruction too. The paper batches split1 and split2 of a data set together, so a
# triple's task is the name without the _split suffix.
E5_DATASETS = (
    "allnli_split1", "allnli_split2", "dureader", "eli5_question_answer", "fever", "hotpot_qa", "miracl", "mrtydi",
    "msmarco_passage", "msmarco_document", "nq", "quora_duplicates_split1", "quora_duplicates_split2", "squad",
    "t2ranking", "trivia_qa",
)
E5_INSTRUCTIONS = {
    "allnli_split1": "Given a premise, retrieve a hypothesis that is entailed by the premise",
    "allnli_split2": "Retrieve semantically similar text",
    "dureader": "Given a Chinese search query, retrieve web passages that answer the question",
    "eli5_question_answer": "Provided a user question, retrieve the highest voted answers on Reddit ELI5 forum",
    "fever": "Given a claim, retrieve documents that support or refute the claim",
    "hotpot_qa": "Given a multi-hop question, retrieve documents that can help answer the question",
    "miracl": "Given a question, retrieve Wikipedia passages that answer the question",
    "mrtydi": "Given a question, retrieve Wikipedia passages that answer the question",
    "msmarco_passage": "Given a web search query, retrieve relevant passages that answer the query",
    "msmarco_document": "Given a web search query, retrieve relevant documents that answer the query",
    "nq": "Given a question, retrieve Wikipedia passages that answer the question",
    "quora_duplicates_split1": "Given a question, retrieve questions that are semantically equivalent to the given question",
    "quora_duplicates_split2": "Find questions that have the same meaning as the input question",
    "squad": "Retrieve Wikipedia passages that answer the question",
    "t2ranking": "Given a Chinese search query, retrieve web passages that answer the question",
    "trivia_qa": "Retrieve Wikipedia passages that answer the question",
}
E5_SYMMETRIC = frozenset({"allnli_split2", "quora_duplicates_split1", "quora_duplicates_split2"})
FLAG = "--data-columns"


class DataError(Exception):
    """The data cannot be used; the message says where and why."""


def is_text(value: str) -> bool:
    """False for a string holding an unpaired surrogate (a JSON escape such as \\ud800): tokenizers refuse it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class Source:
    """What was read: the format, the column of each role (None: the data has none), the triples, and notes for
    the person previewing it (a split chosen, the files of an E5 folder)."""

    path: Path
    format: str
    columns: dict[str, str | None]
    triples: list
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# columns
def _found(columns: Iterable[str]) -> str:
    names = list(columns)
    return ", ".join(repr(c) for c in names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "") if names else "none"


def resolve_columns(columns: list[str], explicit: dict[str, str] | None, where: str, *, strict: bool = True) -> dict[str, str | None]:
    """The column of each role: explicit ones as given, the rest by ALIASES (case-insensitive).

    strict (tables, whose columns are known up front): a required role without a column is refused. Not strict
    (JSONL, whose lines may differ): it falls back to the role's own name, so each line missing it is reported
    with its line number, as it always was.
    """
    explicit = dict(explicit or {})
    unknown = [r for r in explicit if r not in ROLES]
    if unknown:
        raise DataError(f"{FLAG} names {unknown[0]!r}, which is not a role; the roles are {', '.join(ROLES)}")
    by_lower: dict[str, list[str]] = {}
    for c in columns:
        by_lower.setdefault(c.lower(), []).append(c)
    mapping: dict[str, str | None] = {}
    for role in ROLES:
        if role in explicit:
            col = explicit[role]
            if strict and col not in columns:
                raise DataError(f"{where}: {FLAG} maps {role} to column {col!r}, which is not there; the columns found are {_found(columns)}")
            mapping[role] = col
            continue
        # A column named exactly as the role is what our own files mean by it (extra keys were always ignored);
        # only among the other spellings can two matches leave the choice open.
        hits = [role] if role in columns and role not in explicit.values() else \
            [c for alias in ALIASES[role] for c in by_lower.get(alias, []) if c not in explicit.values()]
        if len(hits) > 1:
            raise DataError(f"{where}: columns {' and '.join(repr(h) for h in hits)} could each be the {role}; "
                            f"choose one with {FLAG} {role}={hits[0]}")
        if hits:
            mapping[role] = hits[0]
        elif role in REQUIRED:
            if strict:
                raise DataError(f"{where}: no column for the {role} (looked for {', '.join(ALIASES[role])}); the columns found are "
                                f"{_found(columns)}; name it with {FLAG} {role}=COLUMN")
            mapping[role] = role
        else:
            mapping[role] = None if strict else role  # a later line may have it
    used: dict[str, str] = {}
    for role, col in mapping.items():
        if col is None:
            continue
        if col in used:
            raise DataError(f"{where}: column {col!r} is mapped to both the {used[col]} and the {role}; give each role its own column with {FLAG}")
        used[col] = role
    return mapping


def _label(role: str, col: str) -> str:
    return f"field '{role}'" if role == col else f"column '{col}' (the {role})"


def _triple(row: dict, mapping: dict[str, str | None], where: str, *, blank_is_none: bool = False, **fixed: Any):
    """One row → Triple, or a DataError naming the row. fixed: values a layout gives (an E5 file's instruction)."""
    from .data import Triple

    missing = [c for r in REQUIRED if (c := mapping[r]) is not None and c not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}; each line needs {', '.join(mapping[r] or r for r in REQUIRED)}")
    values: dict[str, Any] = {}
    for role in REQUIRED:
        col = mapping[role]
        v = row[col]
        if v is None:
            raise DataError(f"{where}: {_label(role, col)} is null; every row needs a {role}")
        if not isinstance(v, str):
            raise DataError(f"{where}: {_label(role, col)} must be a string, got {type(v).__name__}")
        if not v.strip():
            raise DataError(f"{where}: {_label(role, col)} is empty")
        values[role] = v
    for role in TEXT_OPTIONAL:
        col = mapping[role]
        v = row.get(col) if col is not None else None
        if blank_is_none and isinstance(v, str) and not v.strip():
            v = None  # a CSV cell cannot say null: an empty one means "none"
        if v is not None and not isinstance(v, str):
            raise DataError(f"{where}: optional {_label(role, col)} must be a string, got {type(v).__name__}")
        values[role] = v
    col = mapping["symmetric"]
    sym = row.get(col) if col is not None else None
    if blank_is_none and isinstance(sym, str):
        sym = {"true": True, "1": True, "false": False, "0": False, "": None}.get(sym.strip().lower(), sym)
    if sym is not None and not isinstance(sym, bool):
        raise DataError(f"{where}: optional {_label('symmetric', col)} must be true or false, got {type(sym).__name__}")
    for role in REQUIRED + TEXT_OPTIONAL:
        if isinstance(values.get(role), str) and not is_text(values[role]):
            raise DataError(f"{where}: {_label(role, mapping[role] or role)} holds an unpaired surrogate escape (such as \\ud800), which is not text; fix the line")
    values.update(fixed)
    values.setdefault("symmetric", bool(sym))
    return Triple(values["query"], values["positive"], values["negative"], values["instruction"], values["task"], values["symmetric"])


def _rows(triples: list, path: Path) -> list:
    if not triples:
        raise DataError(f"data file {path} holds no triples; it needs at least one line with query/positive/negative")
    return triples


# ---------------------------------------------------------------------------------------------------------------
# formats
def _jsonl(p: Path, explicit: dict | None, **fixed: Any) -> tuple[list, dict]:
    out: list = []
    mapping: dict[str, str | None] | None = None
    optional: list[str] = []
    seen: set[str] = set()
    for lineno, obj in iter_jsonl(p, DataError):
        where = f"{p}:{lineno}"
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object with query/positive/negative, got {type(obj).__name__}")
        if mapping is None:
            # The first object's keys name the columns (an "anchor" file keeps "anchor" on every line).
            mapping = resolve_columns(list(obj), explicit, where, strict=False)
            optional = [c for r, c in mapping.items() if r not in REQUIRED and c is not None]
        out.append(_triple(obj, mapping, where, **fixed))
        seen.update(c for c in optional if c in obj)
    if mapping is None:
        return out, resolve_columns([], explicit, str(p), strict=False)
    # The report names only the optional columns some line has.
    return out, {r: (c if r in REQUIRED or c in seen else None) for r, c in mapping.items()}


def _csv(p: Path, explicit: dict | None) -> tuple[list, dict]:
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        f = p.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise DataError(f"data file {p} cannot be read ({e.strerror or e})") from None
    with f:
        try:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise DataError(f"data file {p} is empty; a CSV file needs a header row naming its columns (query,positive,negative)")
            header = [h.strip() for h in header]
            mapping = resolve_columns(header, explicit, f"{p} (header)")
            out = []
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                where = f"{p}:{reader.line_num}"
                if len(cells) != len(header):
                    raise DataError(f"{where}: {len(cells)} cells where the header has {len(header)}; quote cells that hold a {delimiter!r}")
                out.append(_triple(dict(zip(header, cells)), mapping, where, blank_is_none=True))
        except UnicodeDecodeError as e:
            raise DataError(f"data file {p}: byte {e.start} is not UTF-8; save the file as UTF-8") from None
        except csv.Error as e:
            raise DataError(f"{p}:{reader.line_num}: not valid CSV ({e})") from None
    return out, mapping


def _records(rows: Iterable[dict], mapping: dict, where: str) -> list:
    return [_triple(row, mapping, f"{where} row {i}") for i, row in enumerate(rows, start=1)]


def _parquet(p: Path, explicit: dict | None) -> tuple[list, dict]:
    import pyarrow.parquet as pq
    from pyarrow import ArrowException

    try:
        names = pq.read_schema(p).names  # the footer only; the columns are read once, below
        mapping = resolve_columns(list(names), explicit, str(p))
        table = pq.read_table(p, columns=sorted({c for c in mapping.values() if c is not None}, key=names.index))
    except (ArrowException, OSError) as e:
        raise DataError(f"data file {p} is not a readable Parquet file ({' '.join(str(e).split())[:200]})") from None
    return _records(table.to_pylist(), mapping, str(p)), mapping


def is_saved_dataset(p: Path) -> bool:
    return p.is_dir() and ((p / "dataset_dict.json").is_file() or ((p / "state.json").is_file() and (p / "dataset_info.json").is_file()))


def _saved_dataset(p: Path, explicit: dict | None) -> tuple[list, dict, list[str]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(p))
    except Exception as e:  # noqa: BLE001 - datasets raises many types for a broken folder
        raise DataError(f"{p} is not a readable datasets folder (datasets.load_from_disk: {' '.join(str(e).split())[:200]})") from None
    notes: list[str] = []
    where = str(p)
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        split = "train" if "train" in ds else splits[0] if len(splits) == 1 else None
        if split is None:
            raise DataError(f"{p} holds the splits {', '.join(splits)} and none is called train; save the split to train on "
                            f"alone (dataset_dict['{splits[0]}'].save_to_disk(...)) or name it train")
        ds = ds[split]
        notes.append(f"split '{split}' of {', '.join(splits)}")
        where = f"{p} split '{split}'"
    mapping = resolve_columns(list(ds.column_names), explicit, where)
    keep = [c for c in ds.column_names if c in set(mapping.values())]
    return _records(ds.select_columns(keep).to_list(), mapping, where), mapping, notes


def e5_files(p: Path) -> list[Path]:
    """The E5 data sets' files in the folder, in LLM2Vec's order (empty: not an E5 folder)."""
    return [p / f"{name}.jsonl" for name in E5_DATASETS if (p / f"{name}.jsonl").is_file()] if p.is_dir() else []


def _e5(p: Path, explicit: dict | None) -> tuple[list, dict, list[str]]:
    others = sorted(f.name for f in p.glob("*.jsonl") if f.stem not in E5_INSTRUCTIONS)
    if others:
        raise DataError(f"{p} is an E5 folder (it holds {e5_files(p)[0].name}) but also {', '.join(others)}, which E5 does not name; "
                        f"move {'it' if len(others) == 1 else 'them'} out, so that the mix is the one meant")
    fixed_roles = [r for r in (explicit or {}) if r not in REQUIRED]
    if fixed_roles:
        raise DataError(f"{p} is an E5 folder, whose files give each triple its instruction and task; {FLAG} may map only "
                        f"query, positive and negative here, not {', '.join(fixed_roles)}")
    out: list = []
    mapping: dict = {}
    for f in e5_files(p):
        name = f.stem
        triples, mapping = _jsonl(f, explicit, instruction=E5_INSTRUCTIONS[name], task=name.replace("_split1", "").replace("_split2", ""),
                                  symmetric=name in E5_SYMMETRIC)
        out.extend(triples)
    mapping = {**mapping, "instruction": None, "task": None, "symmetric": None}
    return out, mapping, [f"{len(e5_files(p))} of E5's {len(E5_DATASETS)} files: {', '.join(f.stem for f in e5_files(p))}"]


def detect(p: Path) -> str:
    """The format of a data path, from what is there (a folder's files, a file's suffix)."""
    if p.is_dir():
        if is_saved_dataset(p):
            return "datasets"
        if e5_files(p):
            return "e5"
        raise DataError(f"{p} is a folder but neither a datasets save_to_disk folder (dataset_info.json, state.json) nor an E5 folder "
                        f"(files such as {E5_DATASETS[0]}.jsonl); pass a JSONL, CSV or Parquet file, or such a folder, with --data")
    suffix = p.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    return "jsonl"


def load(path: str | os.PathLike, columns: dict[str, str] | None = None) -> Source:
    """Reads the data at path, whatever its format; every triple checked, the first bad row reported."""
    try:
        p = Path(path)
        exists = p.exists()
    except (ValueError, OSError):  # a NUL in the path
        raise DataError(f"data path {str(path)!r} is not a usable path; pass the data file or folder with --data") from None
    if not exists:
        raise DataError(f"data file {p} does not exist; pass a JSONL, CSV or Parquet file of query/positive/negative triples, "
                        f"a datasets save_to_disk folder or an E5 folder with --data")
    fmt = detect(p)
    notes: list[str] = []
    if fmt == "jsonl":
        if not p.is_file():
            raise DataError(f"data file {p} is not a regular file; pass a JSONL file of query/positive/negative triples with --data")
        triples, mapping = _jsonl(p, columns)
    elif fmt == "csv":
        triples, mapping = _csv(p, columns)
    elif fmt == "parquet":
        triples, mapping = _parquet(p, columns)
    elif fmt == "datasets":
        triples, mapping, notes = _saved_dataset(p, columns)
    else:
        triples, mapping, notes = _e5(p, columns)
    return Source(p, fmt, mapping, _rows(triples, p), notes)
