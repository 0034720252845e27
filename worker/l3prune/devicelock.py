"""One run per device: a second run on a busy device is refused with the name of the run that holds it.

Two trainings sharing one GPU would both run out of memory or crawl, and the user would not know why. The
lock is an advisory `flock` on a per-user file named after the device, so the kernel releases it when the
holder dies (kill -9 included): a crashed run never leaves a stale lock behind. The file's content (run
folder and pid of the holder) is only for the error message.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from pathlib import Path


class DeviceBusyError(ValueError):
    """The device is in use by another run of this user; a ValueError so callers report it as bad input."""


def lock_dir() -> Path:
    base = os.environ.get("L3PRUNE_LOCK_DIR") or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    d = Path(base) / f"l3prune-locks-{os.getuid()}"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


class DeviceLock:
    def __init__(self, device: str, run_dir: Path):
        self.device = device
        self.run_dir = run_dir
        self.path = lock_dir() / f"device-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = f"run {holder.get('runDir')} (pid {holder.get('pid')})" if holder else "another L³Prune run"
            raise DeviceBusyError(
                f"device {self.device} is busy with {who}; wait for it to finish or cancel it, then start this run again "
                f"(or choose another device)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"runDir": str(self.run_dir), "pid": os.getpid()}).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "DeviceLock":
        self.acquire()
        return self

    def __exit__(self, *_exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        holder = json.loads(data.decode()) if data else None
        return holder if isinstance(holder, dict) else None
    except (OSError, ValueError):
        return None
