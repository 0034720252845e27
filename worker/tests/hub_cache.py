"""A Hugging Face hub cache built on disk, laid out as huggingface_hub writes one: models--{org}--{name}/ with
blobs/<hash> (the files' bytes), snapshots/<commit>/<file> (relative symlinks into blobs/) and refs/<ref> (the
commit). Blobs are hard links to the source files when the file system allows, so the demo model costs no disk."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def blob_name(name: str, size: int) -> str:
    # A hash, as the cache names blobs; of the name and size rather than the bytes, which would mean reading 0.5 GB.
    return hashlib.sha256(f"{name}:{size}".encode()).hexdigest()


def add_snapshot(cache: Path, repo_id: str, source: Path, *, commit: str = COMMIT, refs: tuple[str, ...] = ("main",),
                 skip: tuple[str, ...] = (".complete", "SOURCE.txt")) -> Path:
    """Puts every file of the model folder `source` into the cache as `repo_id` at `commit`; returns the snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in sorted(source.rglob("*")):
        if not f.is_file() or f.name in skip:
            continue
        rel = f.relative_to(source)
        blob = repo / "blobs" / blob_name(rel.as_posix(), f.stat().st_size)
        if not blob.exists():
            try:
                os.link(f, blob)
            except OSError:
                shutil.copyfile(f, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot
