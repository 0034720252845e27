"""The run folder: the single contract between this worker and the extension.

Layout (see protocol/run.schema.json and protocol/events.schema.json):
  run.json      spec + status + pid + heartbeat; rewritten atomically (fileio.write_json_atomic) so a reader
                never sees half a file
  events.jsonl  append-only, one JSON object per line, flushed and fsynced per line so a crash loses
                at most the line being written and a tailing reader never needs to re-parse old lines

Every event also goes to stdout as one JSON line, so a caller that only reads the pipe sees the same stream.
A run folder may come from a cloned repository (resume): one with links in it is refused before anything in it is
touched, and events.jsonl is only ever opened without following a link (fileio.open_append).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from .fileio import (MAX_RUN_JSON_BYTES, JsonFileError, UnsafePathError, cut_torn_tail, open_append, read_json,
                     run_folder_link_problem, write_json_atomic)

SCHEMA_VERSION = 1
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")


def now_iso() -> str:
    # Millisecond UTC timestamps with a Z suffix parse the same in Python and JavaScript (Date.parse).
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")



def owner_pid() -> int:
    """The pid a reader signals and checks for this run: under torchrun the launcher's (its agent, our parent),
    which leads the process group every rank runs in, so a SIGTERM there reaches them all and outlives no rank."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and os.environ.get("TORCHELASTIC_RUN_ID"):
        return os.getppid()
    return os.getpid()

class RunFolderError(Exception):
    """The run folder cannot be used (already holds a run, or is not writable)."""


class RunFolder:
    def __init__(self, run_dir: str | os.PathLike, verb: str, spec: dict[str, Any], *, stdout=None):
        self.dir = Path(run_dir)
        self.verb = verb
        self.spec = spec
        self._stdout = stdout if stdout is not None else sys.stdout
        # One lock for both files: the heartbeat thread and the main thread both write.
        self._lock = threading.RLock()
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        self.run_json_path = self.dir / "run.json"
        self.events_path = self.dir / "events.jsonl"
        self._state: dict[str, Any] = {}
        self._events_fh = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def open(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create run folder {self.dir}: {e.strerror}; choose a writable --run-dir") from e
        # A folder may be pre-created by the extension (with a spec file in it), but a second run must never
        # append to the history of a first one: that would make the event stream lie.
        # A new run's folder named through a link is the user's choice; links inside it are nobody's we know.
        problem = run_folder_link_problem(self.dir, itself=False)
        if problem:
            raise RunFolderError(problem)
        held = RunFolderError(f"run folder {self.dir} already holds a run (run.json or events.jsonl exists); use a new --run-dir")
        if os.path.lexists(self.run_json_path):
            raise held
        try:
            fd = open_append(self.events_path, empty=True)
        except FileExistsError:
            raise held from None
        except UnsafePathError as e:
            raise RunFolderError(f"cannot use run folder {self.dir}: {e}") from None
        start = now_iso()
        self._state = {
            "schemaVersion": SCHEMA_VERSION,
            "runId": self.dir.resolve().name,
            "verb": self.verb,
            "spec": self.spec,
            "status": "running",
            "pid": owner_pid(),
            "startedAt": start,
            "heartbeatAt": start,
            "endedAt": None,
            "error": None,
            "result": None,
        }
        self._events_fh = os.fdopen(fd, "a", encoding="utf-8")
        self._write_run_json()

    def reopen(self) -> None:
        """Continue the run this folder holds (train --resume): same run.json (startedAt kept), status running
        again, this process's pid, the current spec; events are appended after the old ones."""
        problem = run_folder_link_problem(self.dir)
        if problem:
            raise RunFolderError(f"cannot resume: {problem}")
        try:
            state = read_json(self.run_json_path, limit=MAX_RUN_JSON_BYTES)
        except JsonFileError as e:
            raise RunFolderError(f"cannot resume: {e}") from None
        if not isinstance(state, dict):
            raise RunFolderError(f"cannot resume: {self.run_json_path} does not hold a JSON object")
        try:
            fd = open_append(self.events_path)
        except UnsafePathError as e:
            raise RunFolderError(f"cannot resume: {e}") from None
        except OSError as e:
            raise RunFolderError(f"cannot resume: {self.events_path} cannot be opened ({e.strerror or e})") from None
        try:
            # A kill -9 mid-write can leave a torn last line; cut it so the next event starts on a line of its own.
            cut_torn_tail(fd)
        except OSError:
            os.close(fd)
            raise
        t = now_iso()
        state.update(status="running", pid=owner_pid(), heartbeatAt=t, endedAt=None, error=None, result=None, spec=self.spec)
        self._state = state
        self._events_fh = os.fdopen(fd, "a", encoding="utf-8")
        self._write_run_json()

    def start_heartbeat(self, interval_s: float = 5.0) -> None:
        """Refresh run.json's heartbeatAt so a reader can tell a live run from one whose process died."""

        def loop() -> None:
            while not self._hb_stop.wait(interval_s):
                with self._lock:
                    if self._state.get("status") != "running":
                        return
                    self._state["heartbeatAt"] = now_iso()
                    try:
                        self._write_run_json()
                        self.emit("heartbeat")
                    except OSError:
                        # A full disk: skip this beat; the main thread meets the same error and reports it.
                        continue

        self._hb_thread = threading.Thread(target=loop, name="l3prune-heartbeat", daemon=True)
        self._hb_thread.start()

    def stop_heartbeat(self) -> None:
        self._hb_stop.set()
        t = self._hb_thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)

    # -- writing -----------------------------------------------------------------------------------------
    def emit(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        event = {"event": kind, "time": now_iso(), **fields}
        line = json.dumps(event, ensure_ascii=False, allow_nan=False)
        with self._lock:
            if self._events_fh is not None:
                self._append_line(line)
            try:
                self._stdout.write(line + "\n")
                self._stdout.flush()
            except (BrokenPipeError, ValueError):
                # The reader went away; the file stays the source of truth.
                pass
        return event

    def _append_line(self, line: str) -> None:
        """One whole line or nothing: a full disk must not leave half an event for every reader to trip on."""
        fd = self._events_fh.fileno()
        data = (line + "\n").encode("utf-8")
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(28, "No space left on device (short write)")
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise

    def finish(self, status: str, *, error: dict[str, Any] | None = None, result: dict[str, Any] | None = None) -> None:
        assert status in TERMINAL_STATUSES
        self.stop_heartbeat()
        with self._lock:
            t = now_iso()
            self._state.update(status=status, endedAt=t, heartbeatAt=t, error=error, result=result)
            self._write_run_json()

    def close(self) -> None:
        with self._lock:
            if self._events_fh is not None:
                self._events_fh.close()
                self._events_fh = None

    def _write_run_json(self) -> None:
        write_json_atomic(self.run_json_path, self._state)
