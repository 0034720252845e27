"""One run per device: a second run on a busy device is refused with the name of the run that holds it.

Two trainings sharing one GPU would both run out of memory or crawl, and the user would not know why. The
lock is an advisory `flock` on a per-user file named after the device, so the kernel releases it when the
holder dies (kill -9 included): a crashed run never leaves a stale lock behind. The file's content (run
folder and pid of the holder) is only for the error message.

On a shared GPU server the lock folder is an attack surface: a folder another user created first (in /tmp, say)
could hold a symlink that makes our truncate-and-write clobber any file we own, or a lock held forever. So the
folder is per-user (XDG_RUNTIME_DIR, else the user's cache folder), must be a real directory owned by this user
with no access for others, and the lock file is opened relative to it without following links.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import stat
from pathlib import Path


class DeviceBusyError(ValueError):
    """The device is in use by another run of this user; a ValueError so callers report it as bad input."""


class LockFolderError(ValueError):
    """The lock folder or file is not safely ours; a ValueError so callers report it as one sentence."""


def lock_dir() -> Path:
    """A folder only this user can write: $L3PRUNE_LOCK_DIR (tests), $XDG_RUNTIME_DIR, else the user's cache."""
    base = os.environ.get("L3PRUNE_LOCK_DIR") or os.environ.get("XDG_RUNTIME_DIR")
    if not base:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = Path(base) / f"l3prune-locks-{os.getuid()}"
    try:
        os.makedirs(d.parent, mode=0o700, exist_ok=True)
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise LockFolderError(f"cannot create the device-lock folder {d} ({e.strerror}); set XDG_RUNTIME_DIR to a folder of yours") from None
    _check_private_dir(d)
    return d


def _check_private_dir(d: Path) -> None:
    st = os.lstat(d)
    fix = f"remove it (it was not made by L³Prune for you) or set XDG_RUNTIME_DIR to a folder of yours"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise LockFolderError(f"the device-lock folder {d} is a link or not a folder; {fix}")
    if st.st_uid != os.getuid():
        raise LockFolderError(f"the device-lock folder {d} belongs to another user (uid {st.st_uid}); {fix}")
    if st.st_mode & 0o077:
        raise LockFolderError(f"the device-lock folder {d} is open to other users (mode {stat.S_IMODE(st.st_mode):o}); {fix}")


class DeviceLock:
    def __init__(self, device: str, run_dir: Path):
        self.device = device
        self.run_dir = run_dir
        self.path = lock_dir() / f"device-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fd = os.open(self.path.name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
        except OSError as e:
            raise LockFolderError(f"the device-lock file {self.path} cannot be opened safely ({e.strerror}); remove it") from None
        finally:
            os.close(folder)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            os.close(fd)
            raise LockFolderError(f"the device-lock file {self.path} is not a plain file of yours; remove it")
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
