"""Models named by a Hugging Face repo id (`org/name`, `org/name@revision`) instead of a folder.

A repo id resolves to a snapshot folder of the user's hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
`~/.cache/huggingface/hub`: huggingface_hub's own rules, read here at call time), through huggingface_hub's
`snapshot_download(..., local_files_only=True)`, so that what counts as cached is exactly what the library says.
The snapshot folder then loads like any model folder. Before the library reads anything the cache is checked the
way any input is: the repo's folders are real folders, a refs file is a few bytes holding a commit hash, and every
file of the snapshot is a link into the repo's own blobs/ (or a plain file, the cache's layout without symlinks).

A model that is not cached is downloaded only with `--allow-download` on the command line (specs.CONSENT_FIELDS),
only while the user's environment does not say offline, and only its safetensors, JSON and tokenizer files
(ALLOW_PATTERNS: never pickles, never code). The download runs after the run folder opens, one `download` event
per file (protocol/events.schema.json); run.json's spec then names the snapshot folder.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .events import now_iso

# What a model needs and nothing that runs code when loaded: weights as safetensors (and their index), every JSON
# file (config, tokenizer, generation config, sentence-transformers modules), the tokenizer files that are not JSON,
# and chat templates. No *.bin/*.pt/*.ckpt (pickles), no *.py (remote code), no *.onnx/*.gguf (other formats).
ALLOW_PATTERNS = ("*.safetensors", "*.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
                  "*.tiktoken", "vocab.txt", "merges.txt", "*.jinja")

_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_REF = re.compile(rf"(?P<repo>{_PART}/{_PART})(?:@(?P<revision>.*))?", re.DOTALL)
_COMMIT = re.compile(r"[0-9a-f]{40}")
# A branch or tag as a path under refs/ (huggingface_hub writes refs/<revision>): "main", "v1.0", "refs/pr/1".
_REF_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*")
MAX_REF_BYTES = 256
MAX_SNAPSHOT_ENTRIES = 10_000
MAX_SNAPSHOT_DEPTH = 8


class CacheError(ValueError):
    """A repo id cannot be resolved or downloaded; the message is one sentence saying what to do."""


@dataclass(frozen=True)
class RepoRef:
    repo_id: str
    revision: str
    explicit: bool  # the user wrote @revision

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.explicit else self.repo_id


def parse(text: Any) -> RepoRef | None:
    """The repo id `text` names, or None when it is a path: an existing one, or anything that does not look like
    `org/name[@revision]`. A repo id with a revision that is neither a branch, a tag nor a commit is refused."""
    if not isinstance(text, str) or "\0" in text or os.path.lexists(os.path.expanduser(text)):
        return None
    m = _REPO_REF.fullmatch(text)
    if m is None or "--" in m["repo"] or ".." in m["repo"]:
        return None
    revision = m["revision"]
    if revision is not None and not (_COMMIT.fullmatch(revision) or valid_ref_name(revision)):
        raise CacheError(f"{text!r} names the revision {revision!r}, which is neither a branch, a tag nor a 40-digit "
                         f"commit hash; write {m['repo']}@main, {m['repo']}@<tag> or {m['repo']}@<commit>")
    return RepoRef(m["repo"], revision or "main", revision is not None)


def valid_ref_name(name: str) -> bool:
    return len(name) <= 128 and _REF_NAME.fullmatch(name) is not None and ".." not in name and not name.endswith(".lock")


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_cache() -> Path:
    """The hub cache folder, by huggingface_hub's rules (constants.py), from the environment as it is now."""
    home = os.path.expandvars(os.path.expanduser(os.getenv(
        "HF_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface"))))
    legacy = os.getenv("HUGGINGFACE_HUB_CACHE", os.path.join(home, "hub"))
    return Path(os.path.expandvars(os.path.expanduser(os.getenv("HF_HUB_CACHE", legacy)))).absolute()


def offline_by_user() -> bool:
    """Whether the user's environment says offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, huggingface_hub's rule), as
    given before the worker set its own offline default (l3prune/__init__.py)."""
    from . import HUB_OFFLINE_GIVEN

    return _is_true(HUB_OFFLINE_GIVEN.get("HF_HUB_OFFLINE") or HUB_OFFLINE_GIVEN.get("TRANSFORMERS_OFFLINE"))


def repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def _how_to_get(ref: RepoRef) -> str:
    rev = f" --revision {ref.revision}" if ref.explicit else ""
    return f"`hf download {ref.repo_id}{rev}` (older huggingface_hub: `huggingface-cli download {ref.repo_id}{rev}`)"


def not_cached(ref: RepoRef, cache: Path, *, offline: bool) -> CacheError:
    """The one sentence for a repo id the cache lacks, saying why nothing was downloaded and what to run."""
    why = ("the environment says offline (HF_HUB_OFFLINE), so L³Prune downloads nothing" if offline
           else "L³Prune downloads a model only with --allow-download")
    return CacheError(f"{ref} is neither a model folder nor a model in the Hugging Face cache {cache} ({why}); "
                      f"get it with {_how_to_get(ref)}, or pass a local model folder")


# ---------------------------------------------------------------------------------------------------------------
# what is cached
def _real_dir(p: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except OSError:
        return False


def _read_ref(repo: Path, ref: RepoRef) -> str | None:
    """The commit refs/<revision> holds: a regular file of a few bytes holding 40 hex digits, else refused."""
    f = repo / "refs" / ref.revision
    if not os.path.lexists(f):
        return None
    refused = CacheError(f"{f} is not a small regular file holding a commit hash, so the cache entry of {ref.repo_id} is "
                         f"not used; remove {repo} and download the model again")
    try:
        # Not through a link, and never blocking on a FIFO planted under the name.
        fd = os.open(f, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        raise refused from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_REF_BYTES:
            raise refused
        text = fh.read(MAX_REF_BYTES + 1).decode("ascii", "replace").strip()
    if not _COMMIT.fullmatch(text):
        raise CacheError(f"{f} does not hold a commit hash, so the cache entry of {ref.repo_id} is not used; "
                         f"remove {repo} and download the model again")
    return text


def check_snapshot(folder: Path, repo: Path) -> None:
    """Every file of a snapshot is a link into the repo's blobs/ (or a plain file): a link out of the repo would
    make a model load read whatever file the link names."""
    blobs = os.path.realpath(repo / "blobs")
    seen = 0

    def walk(d: Path, depth: int) -> None:
        nonlocal seen
        with os.scandir(d) as entries:
            for e in entries:
                seen += 1
                if seen > MAX_SNAPSHOT_ENTRIES:
                    raise CacheError(f"the snapshot {folder} holds more than {MAX_SNAPSHOT_ENTRIES} files, which is no model; "
                                     "pass a model folder instead")
                p = Path(e.path)
                if e.is_symlink():
                    target = os.path.realpath(p)
                    inside = os.path.commonpath([blobs, target]) == blobs and target != blobs
                    if not inside or not os.path.isfile(target):
                        raise CacheError(f"{p} links to {target}, outside the cache's blobs of {repo.name}, so L³Prune does "
                                         f"not read it; remove {repo} and download the model again")
                elif e.is_dir(follow_symlinks=False):
                    if depth >= MAX_SNAPSHOT_DEPTH:
                        raise CacheError(f"the snapshot {folder} nests folders deeper than {MAX_SNAPSHOT_DEPTH}, which is no model")
                    walk(p, depth + 1)
                elif not e.is_file(follow_symlinks=False):
                    raise CacheError(f"{p} is not a regular file, so L³Prune does not read it; remove {repo} and download the model again")

    walk(folder, 0)


def cached_snapshot(ref: RepoRef, cache: Path | None = None) -> Path | None:
    """The snapshot folder of `ref` in the cache, checked, or None when the cache does not hold it."""
    cache = cache or hub_cache()
    repo = repo_folder(cache, ref.repo_id)
    if not os.path.lexists(repo):
        return None
    # blobs/ may be missing (a cache written without symlinks keeps plain files in snapshots/), never a link.
    if not _real_dir(repo) or not _real_dir(repo / "snapshots") or (os.path.lexists(repo / "blobs") and not _real_dir(repo / "blobs")):
        raise CacheError(f"{repo} is not a real folder with real snapshots/ and blobs/ folders in it (a symbolic link or a file), "
                         "so L³Prune does not read through it; download the model again or pass a model folder")
    commit = ref.revision if _COMMIT.fullmatch(ref.revision) else _read_ref(repo, ref)
    if commit is None or not _real_dir(repo / "snapshots" / commit):
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache, local_files_only=True,
                                        allow_patterns=list(ALLOW_PATTERNS)))
    except IncompleteSnapshotError:
        raise CacheError(f"the cached snapshot of {ref} in {cache} is incomplete (an interrupted download); finish it with "
                         f"{_how_to_get(ref)}") from None
    except LocalEntryNotFoundError:
        return None
    if folder != repo / "snapshots" / commit:
        raise CacheError(f"the cache gave {folder} for {ref}, not the snapshot its refs name; download the model again")
    check_snapshot(folder, repo)
    return folder


def resolve_model(value: Any, *, allow_download: bool) -> Any:
    """A spec's model: a repo id becomes its cached snapshot folder; anything else comes back as it is. A repo id
    the cache lacks comes back as it is too when a download is allowed and possible (fetch() gets it once the run
    folder is open), and is otherwise refused in one sentence."""
    ref = parse(value)
    if ref is None:
        return value
    cache = hub_cache()
    folder = cached_snapshot(ref, cache)
    if folder is not None:
        return str(folder)
    offline = offline_by_user()
    if allow_download and not offline:
        return value
    raise not_cached(ref, cache, offline=offline)


def pending(value: Any) -> RepoRef | None:
    """The repo id a resolved spec still names (one that resolve_model left for a download), or None."""
    return parse(value) if isinstance(value, str) and not os.path.isabs(value) else None


# ---------------------------------------------------------------------------------------------------------------
# downloading, with the user's consent
@contextlib.contextmanager
def hub_online() -> Iterator[None]:
    """huggingface_hub reads offline mode from its constants module at every request: the worker's own offline
    default (l3prune/__init__.py) is lifted for the download the user allowed, and only for it."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def download(ref: RepoRef, *, on_file: Callable[[dict], None], allowed: bool) -> Path:
    """Downloads the safetensors, JSON and tokenizer files of `ref` into the hub cache, one file at a time in this
    thread (a cancel stops it between reads), calling on_file after each with the counts so far; returns the
    checked snapshot folder."""
    cache = hub_cache()
    if not allowed or offline_by_user():
        raise not_cached(ref, cache, offline=offline_by_user())
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.utils import filter_repo_objects

    try:
        with hub_online():
            info = HfApi().model_info(ref.repo_id, revision=ref.revision, files_metadata=True)
            sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
            names = sorted(filter_repo_objects(sizes, allow_patterns=list(ALLOW_PATTERNS)))
            if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
                raise CacheError(f"{ref} on the Hugging Face Hub has no config.json with safetensors weights, and L³Prune "
                                 "loads only safetensors (never pickle weights); pick a model that has them")
            total = sum(sizes[n] for n in names)
            done = 0
            on_file({"filesDone": 0, "files": len(names), "bytesDone": 0, "bytes": total})
            for i, name in enumerate(names, 1):
                hf_hub_download(ref.repo_id, name, revision=info.sha, cache_dir=cache)
                done += sizes[name]
                on_file({"filesDone": i, "files": len(names), "bytesDone": done, "bytes": total, "file": name})
            # Every file is cached now: this writes refs/<revision> and returns the folder, as the library sees it.
            folder = Path(snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache,
                                            allow_patterns=list(ALLOW_PATTERNS)))
    except CacheError:
        raise
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise CacheError(f"the Hugging Face Hub has no model {ref.repo_id} that this machine may read ({_first_line(e)}); "
                         "check the repo id, or log in with `hf auth login` for a gated or private model") from None
    except RevisionNotFoundError:
        raise CacheError(f"the Hugging Face Hub has no revision {ref.revision!r} of {ref.repo_id}; "
                         f"pass {ref.repo_id}@main or an existing branch, tag or commit") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # the lifecycle says the disk is full, in its own words
        raise CacheError(f"could not download {ref} into {cache} ({_first_line(e)}); check the network, then try again "
                         f"or get it with {_how_to_get(ref)}") from None
    except Exception as e:  # noqa: BLE001 - httpx and huggingface_hub raise many types; the user needs one sentence
        raise CacheError(f"could not download {ref} into {cache} ({_first_line(e)}); check the network, then try again "
                         f"or get it with {_how_to_get(ref)}") from None
    check_snapshot(folder, repo_folder(cache, ref.repo_id))
    return folder


def fetch(job) -> None:
    """The lifecycle's step between "started" and the work (verbs.run_verb): a model the spec names by a repo id the
    cache lacked is downloaded now, with `download` events, and the spec (run.json's too) names its snapshot."""
    spec = job.spec
    ref = pending(getattr(spec, "model", None))
    if ref is None:
        return
    if job.world.distributed:
        # Every rank would download the same files at once; one download before torchrun serves them all.
        raise CacheError(f"{ref} is not in the Hugging Face cache {hub_cache()}, and under torchrun L³Prune does not download; "
                         f"get it first with {_how_to_get(ref)}")
    allowed = getattr(spec, "allowDownload", False) is True

    def on_file(counts: dict) -> None:
        fields = {"repoId": ref.repo_id, "revision": ref.revision, **counts}
        if job.run is not None:
            job.run.emit("download", **fields)
        else:
            # A verb without a run folder (download-model): the same event, on stdout only.
            print(json.dumps({"event": "download", "time": now_iso(), **fields}), flush=True)

    folder = str(download(ref, on_file=on_file, allowed=allowed))
    job.state["downloaded"] = str(ref)
    spec.model = folder
    if job.run is not None:
        job.run.spec["model"] = folder
