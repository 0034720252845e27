"""The device lock on a shared machine: another user's planted folder or link must never make our lock clobber a
file of ours, and a normal lock still works (one run per device, released when its holder closes it)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from l3prune.devicelock import DeviceBusyError, DeviceLock, LockFolderError, lock_dir


@pytest.fixture
def lock_base(tmp_path, monkeypatch) -> Path:
    base = tmp_path / "runtime"
    base.mkdir(mode=0o700)
    monkeypatch.setenv("L3PRUNE_LOCK_DIR", str(base))
    return base


def test_one_run_per_device_and_released_on_close(lock_base, tmp_path):
    first = DeviceLock("cpu", tmp_path / "run-a")
    first.acquire()
    with pytest.raises(DeviceBusyError, match="run-a"):
        DeviceLock("cpu", tmp_path / "run-b").acquire()
    first.release()
    with DeviceLock("cpu", tmp_path / "run-b"):
        pass
    mode = os.stat(lock_dir()).st_mode & 0o777
    assert mode == 0o700


def test_a_lock_file_planted_as_a_link_is_refused_and_its_target_unchanged(lock_base, tmp_path):
    victim = tmp_path / "bashrc"
    victim.write_text("export PATH=/usr/bin\n")
    folder = lock_base / f"l3prune-locks-{os.getuid()}"
    folder.mkdir(mode=0o700)
    (folder / "device-cpu.lock").symlink_to(victim)
    with pytest.raises(LockFolderError, match="cannot be opened safely"):
        DeviceLock("cpu", tmp_path / "run").acquire()
    assert victim.read_text() == "export PATH=/usr/bin\n"


def test_a_lock_folder_planted_as_a_link_is_refused(lock_base, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (lock_base / f"l3prune-locks-{os.getuid()}").symlink_to(elsewhere)
    with pytest.raises(LockFolderError, match="link"):
        DeviceLock("cpu", tmp_path / "run").acquire()
    assert list(elsewhere.iterdir()) == []


def test_a_lock_folder_open_to_others_is_refused(lock_base, tmp_path):
    folder = lock_base / f"l3prune-locks-{os.getuid()}"
    folder.mkdir()
    os.chmod(folder, 0o777)
    with pytest.raises(LockFolderError, match="open to other users"):
        DeviceLock("cpu", tmp_path / "run").acquire()


def test_without_a_runtime_folder_the_lock_lives_in_the_users_cache_not_tmp(monkeypatch, tmp_path):
    monkeypatch.delenv("L3PRUNE_LOCK_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert lock_dir() == tmp_path / "cache" / f"l3prune-locks-{os.getuid()}"
