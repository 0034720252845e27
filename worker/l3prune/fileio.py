"""Reading and writing files the worker is handed or owns: JSON, JSONL and folders that must reach the disk whole.

Every file the worker reads can come from a cloned repository, so a reader never lets a library's exception
through: a missing file, bytes that are not UTF-8, JSON nested past the recursion limit, an integer past
Python's digit limit, NaN (not JSON, though Python's parser takes it) each become one sentence naming the file
(and the line, in JSONL). Every file the worker writes is written whole or not at all (a temp file created
exclusively in the same folder, fsynced, renamed over the target, the folder fsynced), so a reader, a kill -9 or
a full disk never leaves half a file behind.
"""
from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import Any, Callable, Iterator

# run.json holds a spec and a small result, a spec file a few fields; anything this large is not one of ours.
MAX_JSON_BYTES = 64 * 1024 * 1024
# Bytes that are not UTF-8 come through errors="surrogateescape" as U+DC80..U+DCFF, and only that way.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def show(value: Any, limit: int = 80) -> str:
    """A value quoted in a one-line message: repr (which escapes line breaks), JSON's spelling of true/false/null,
    cut to a readable length."""
    if value is True or value is False or value is None:
        return json.dumps(value)
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # nesting past the recursion limit, an int past the digit limit
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else f"{text[:limit]}…"


# ---------------------------------------------------------------------------------------------------------------
# reading
class JsonFileError(ValueError):
    """A JSON file cannot be used; str() is '<path> <what is wrong>', for the caller to put in its sentence."""

    def __init__(self, path: Path, problem: str, *, missing: bool = False):
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem
        self.missing = missing


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"the number {text[:40]} is out of range")
    return x


def parse_json(text: str) -> Any:
    """json.loads as RFC 8259 reads it: no NaN or Infinity, no number that only overflows to one."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


def json_problem(e: BaseException) -> str:
    """Why parse_json (or the UTF-8 decoding before it) failed, in a few words on one line."""
    if isinstance(e, json.JSONDecodeError):
        return f"line {e.lineno}: {e.msg}"
    if isinstance(e, UnicodeDecodeError):
        return f"byte {e.start} is not UTF-8"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    text = " ".join(str(e).split())
    if text.startswith("Exceeds the limit"):
        return "an integer of more digits than Python reads (4300)"
    return text[:200] or type(e).__name__


def read_json(path: str | os.PathLike) -> Any:
    """The parsed content of a JSON file, or JsonFileError saying in a few words why there is none."""
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError:
        raise JsonFileError(p, "does not exist", missing=True) from None
    except (OSError, ValueError) as e:  # ValueError: a path holding a NUL
        raise JsonFileError(p, f"cannot be read ({getattr(e, 'strerror', None) or e})") from None
    # A FIFO would block the read forever; a folder or device is no JSON file either.
    if not stat.S_ISREG(info.st_mode):
        raise JsonFileError(p, "is not a regular file")
    if info.st_size > MAX_JSON_BYTES:
        raise JsonFileError(p, f"is too large to be ours ({info.st_size} bytes)")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise JsonFileError(p, f"cannot be read ({e.strerror or e})") from None
    try:
        return parse_json(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise JsonFileError(p, f"is not valid JSON ({json_problem(e)})") from None


def read_json_object(path: str | os.PathLike, what: str) -> dict:
    """A JSON object from a file, or ValueError '<what>: <path> <problem>' (ValueError: bad input, exit 2)."""
    try:
        obj = read_json(path)
    except JsonFileError as e:
        raise ValueError(f"{what}: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: {path} must hold a JSON object")
    return obj


def iter_jsonl(path: str | os.PathLike, error: Callable[[str], Exception]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of every non-blank line; a line that is not JSON raises error('<path>:<n>: ...').

    The caller checks that the file exists (its sentence says what the file is for) and what each value holds.
    """
    p = Path(path)
    try:
        # surrogateescape: a byte that is not UTF-8 is reported with its line number below, not by the codec
        # while it reads ahead (which names no line).
        fh = open(p, "r", encoding="utf-8", errors="surrogateescape")
    except (OSError, ValueError) as e:
        raise error(f"{p} cannot be read ({getattr(e, 'strerror', None) or e})") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if _UNDECODABLE.search(raw):
                raise error(f"{p}:{lineno}: not valid UTF-8 text; save the file as UTF-8")
            line = raw.strip()
            if not line:
                continue
            try:
                value = parse_json(line)
            except json.JSONDecodeError as e:
                raise error(f"{p}:{lineno}: not valid JSON ({e.msg} at column {e.colno}); each line must be one JSON object") from None
            except RecursionError:
                raise error(f"{p}:{lineno}: JSON nested too deeply; each line must be one flat JSON object") from None
            except ValueError as e:
                # NaN, a number past float range, an integer past Python's digit limit: met before any field is read.
                raise error(f"{p}:{lineno}: not usable JSON ({json_problem(e)}); each line must be one JSON object") from None
            yield lineno, value


# ---------------------------------------------------------------------------------------------------------------
# writing
def fsync_dir(d: str | os.PathLike) -> None:
    """Make a rename or a new file in folder d durable; a filesystem that cannot fsync folders is left as it is."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(d: str | os.PathLike) -> None:
    """Every file and folder under d on the disk, before d is renamed into place."""
    for root, _dirs, files in os.walk(d, topdown=False):
        for name in files:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(root)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
    """Replace path with obj as JSON: readers see the old file or the new one, never a part."""
    path = Path(path)
    text = json.dumps(obj, ensure_ascii=False, indent=indent, allow_nan=False) + "\n"
    # O_EXCL: never write through a file (or a link) someone else put under the temp name.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        # The old file stays whole; a half-written temp file would only take more of a full disk.
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def discard_dir(d: Path) -> None:
    """Rename first (atomic), delete after: a kill mid-delete never leaves a half folder under the real name."""
    trash = d.with_name(f".trash-{d.name}-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(d, trash)
    shutil.rmtree(trash, ignore_errors=True)
