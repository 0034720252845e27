"""Reading and writing files the worker is handed or owns: JSON, JSONL and folders that must reach the disk whole.

Every file the worker reads can come from a cloned repository, so a reader never lets a library's exception
through: a missing file, bytes that are not UTF-8, JSON nested past the recursion limit, an integer past
Python's digit limit, NaN (not JSON, though Python's parser takes it) each become one sentence naming the file
(and the line, in JSONL). Every file the worker writes is written whole or not at all (a temp file created
exclusively in the same folder, fsynced, renamed over the target, the folder fsynced), so a reader, a kill -9 or
a full disk never leaves half a file behind. Run and model folders can be shipped by a repository too, so no write
follows a link the worker did not make: temp files and folders are created exclusively (O_EXCL, O_NOFOLLOW),
appends open only a regular file with one name, and a run folder with links in it is refused before it is used.
"""
from __future__ import annotations

import errno
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
# A run.json the worker wrote is a few kB; one from a cloned repository is read no further than this.
MAX_RUN_JSON_BYTES = 1024 * 1024
# Windows has no O_NOFOLLOW (nor unprivileged links); 0 leaves the flag out there.
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
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


def read_json(path: str | os.PathLike, *, limit: int = MAX_JSON_BYTES) -> Any:
    """The parsed content of a JSON file of at most `limit` bytes, or JsonFileError saying in a few words why
    there is none."""
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
    if info.st_size > limit:
        raise JsonFileError(p, f"is too large to be ours ({info.st_size} bytes)")
    try:
        with open(p, "rb") as fh:
            # The size stat saw is no promise: a file that grows meanwhile is still read no further.
            data = fh.read(limit + 1)
    except OSError as e:
        raise JsonFileError(p, f"cannot be read ({e.strerror or e})") from None
    if len(data) > limit:
        raise JsonFileError(p, f"is too large to be ours (more than {limit} bytes)")
    try:
        return parse_json(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise JsonFileError(p, f"is not valid JSON ({json_problem(e)})") from None


def read_json_object(path: str | os.PathLike, what: str, *, limit: int = MAX_JSON_BYTES) -> dict:
    """A JSON object from a file, or ValueError '<what>: <path> <problem>' (ValueError: bad input, exit 2)."""
    try:
        obj = read_json(path, limit=limit)
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


class UnsafePathError(ValueError):
    """A name the worker would write through is a link, a second name of another file, or not a regular file."""


def _what_is(info: os.stat_result) -> str:
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link"
    if stat.S_ISREG(info.st_mode):
        return "a file with more than one name (a hard link)"
    return "not a regular file"


def create_exclusive(folder: Path, stem: str, suffix: str = ".tmp", mode: int = 0o666) -> tuple[int, Path]:
    """A new file in folder under a random name (fd, path), created O_EXCL|O_NOFOLLOW: a file or link that someone
    put under the name, guessed or not, is never opened; another name is tried instead."""
    for _ in range(100):
        path = folder / f"{stem}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp name in {folder} after 100 tries")


def check_same_file(fd: int, path: Path) -> None:
    """What path names now is the file fd has open: nothing swapped a link or another file in under our name."""
    try:
        seen = os.lstat(path)
    except FileNotFoundError:
        raise UnsafePathError(f"{path} disappeared while it was being written") from None
    opened = os.fstat(fd)
    if not stat.S_ISREG(seen.st_mode) or (seen.st_ino, seen.st_dev) != (opened.st_ino, opened.st_dev):
        raise UnsafePathError(f"{path} was replaced while it was being written, so it was not used")


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> None:
    """Replace path with obj as JSON: readers see the old file or the new one, never a part. rename replaces the
    name itself, so a link under `path` is replaced, never written through."""
    path = Path(path)
    text = json.dumps(obj, ensure_ascii=False, indent=indent, allow_nan=False) + "\n"
    fd, tmp = create_exclusive(path.parent, f".{path.name}")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
            check_same_file(fh.fileno(), tmp)
        os.replace(tmp, path)
    except BaseException:
        # The old file stays whole; a half-written temp file would only take more of a full disk.
        _unlink_if_file(tmp)
        raise
    fsync_dir(path.parent)


def _unlink_if_file(p: Path) -> None:
    try:
        if not stat.S_ISDIR(os.lstat(p).st_mode):
            os.unlink(p)
    except OSError:
        pass


def open_append(path: str | os.PathLike, *, empty: bool = False) -> int:
    """A descriptor (O_RDWR|O_APPEND) on path, created when absent: never through a link, never on a second name
    of another file, never on what is not a regular file; `empty`: an existing file must hold nothing."""
    path = Path(path)
    flags = os.O_RDWR | os.O_APPEND | O_NOFOLLOW | O_CLOEXEC
    try:
        seen = os.lstat(path)
    except FileNotFoundError:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
    if not stat.S_ISREG(seen.st_mode) or seen.st_nlink > 1:
        raise UnsafePathError(f"{path} is {_what_is(seen)}, so the worker does not write to it")
    if empty and seen.st_size > 0:
        raise FileExistsError(f"{path} is not empty")
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:  # a link swapped in after lstat
            raise UnsafePathError(f"{path} is a symbolic link, so the worker does not write to it") from None
        raise
    opened = os.fstat(fd)
    if (opened.st_ino, opened.st_dev) != (seen.st_ino, seen.st_dev):
        os.close(fd)
        raise UnsafePathError(f"{path} was replaced while it was being opened, so the worker does not write to it")
    return fd


def cut_torn_tail(fd: int, chunk: int = 64 * 1024) -> None:
    """Truncate an append-only JSONL file after its last complete line (a kill -9 mid-write can leave a torn one),
    reading backwards from the end: a file of millions of lines is not read whole for one byte."""
    end = os.fstat(fd).st_size
    pos = end
    while pos > 0:
        start = max(0, pos - chunk)
        data = os.pread(fd, pos - start, start)
        if pos == end and data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n")
        if cut >= 0:
            os.ftruncate(fd, start + cut + 1)
            return
        pos = start
    if end:
        os.ftruncate(fd, 0)


def make_fresh_dir(d: Path) -> None:
    """Make d, ours alone: a folder a killed run of ours left under the name is removed first; a link or a file
    there is an error, never followed (mkdir does not follow a link, it fails)."""
    try:
        info = os.lstat(d)
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISDIR(info.st_mode):
        shutil.rmtree(d)
    os.mkdir(d)


# ---------------------------------------------------------------------------------------------------------------
# run folders a repository may have shipped
RUN_SUBFOLDERS = ("checkpoints", "model", "adapter")


def links_in_run_folder(run_dir: str | os.PathLike, *, itself: bool = True) -> list[str]:
    """The symbolic links (names relative to run_dir) where the worker reads and writes: the folder itself (".",
    unless not `itself`), its entries, those of checkpoints/, model/ and adapter/, and those of each checkpoint."""
    run_dir = Path(run_dir)
    if itself and stat.S_ISLNK(os.lstat(run_dir).st_mode):
        return ["."]
    found: list[str] = []

    def look(d: str | os.PathLike, rel: str) -> list[os.DirEntry]:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return []
        folders = []
        for e in entries:
            if e.is_symlink():
                found.append(rel + e.name)
            elif e.is_dir(follow_symlinks=False):
                folders.append(e)
        return folders

    for top in look(run_dir, ""):
        if top.name in RUN_SUBFOLDERS:
            for sub in look(top.path, f"{top.name}/"):
                if top.name == "checkpoints":
                    look(sub.path, f"checkpoints/{sub.name}/")
    return found


def run_folder_link_problem(run_dir: str | os.PathLike, *, itself: bool = True) -> str | None:
    """One sentence refusing a run folder with links in it (None when it has none or does not exist yet)."""
    try:
        links = links_in_run_folder(run_dir, itself=itself)
    except (FileNotFoundError, ValueError):  # ValueError: a NUL in the path; no such folder can exist
        return None
    except OSError as e:
        return f"the run folder {run_dir} cannot be read ({e.strerror or e})"
    if not links:
        return None
    named = ", ".join(links[:3]) + (f" and {len(links) - 3} more" if len(links) > 3 else "")
    return (f"the run folder {run_dir} contains symbolic links ({named}); L³Prune does not use a run folder with "
            "links it did not make, so it was left untouched")


def discard_dir(d: Path) -> None:
    """Rename first (atomic), delete after: a kill mid-delete never leaves a half folder under the real name."""
    trash = d.with_name(f".trash-{d.name}-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(d, trash)
    shutil.rmtree(trash, ignore_errors=True)
