"""How a verb runs in its run folder, the same for analyze, evaluate and export-onnx (train adds resume and a
deferred stop on top, and reuses the pieces here).

The order is the contract with the extension (protocol/run.schema.json):
  1. the spec is resolved and checked before the folder exists: run.json must always hold a valid spec;
  2. the folder opens, "started" is written and the heartbeat begins;
  3. the work runs; every way out leaves one terminal state: "succeeded" with the verb's final event, "failed"
     with one sentence (stderr too), or "cancelled" on SIGTERM/SIGINT.
Exit codes: 0 success, 2 bad input or a resource the user can free, 1 internal error, 128+signal cancelled.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .events import RunFolder, RunFolderError

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 1


class Cancelled(BaseException):
    """Raised from the signal handler; a BaseException so no `except Exception` in a library swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def _raise_cancelled(signum, _frame):
    # A second signal (an impatient parent, a process-group kill) must not interrupt writing the cancelled state.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Cancelled(signum)


def cancel_on_signals() -> None:
    signal.signal(signal.SIGTERM, _raise_cancelled)
    signal.signal(signal.SIGINT, _raise_cancelled)


def quiet_libraries() -> None:
    """stderr is reserved for the one-sentence error; library progress bars and warnings would bury it."""
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def say_on_stderr(message: str) -> None:
    print(f"l3prune: {message}", file=sys.stderr)


def disk_full(e: BaseException) -> bool:
    # safetensors and onnx report ENOSPC as their own error types, with the OS error only in the text.
    return (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left on device" in str(e)


def out_of_memory(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"  # torch.OutOfMemoryError


def fail(run: RunFolder | None, message: str, kind: str, code: int, say: Callable[[str], None] = say_on_stderr,
         detail: str | None = None) -> int:
    """Records the failure (error event, run.json "failed"), says it in one sentence and returns the exit code."""
    message = " ".join(message.split())
    if run is not None:
        run.stop_heartbeat()
        extra = {"detail": detail} if detail else {}
        try:
            run.emit("error", message=message, kind=kind, **extra)
            run.finish("failed", error={"message": message, "kind": kind})
        except OSError as e:
            # Even the report does not fit (full disk): run.json still says running with a dead pid, which every
            # reader shows as failed; stderr carries the message.
            message += f" (the run folder could not record this: {e.strerror or e})"
        finally:
            run.close()
    say(message)
    return code


def record_cancelled(run: RunFolder | None, c: Cancelled, message: str, say: Callable[[str], None] = say_on_stderr,
                     **event_fields: Any) -> int:
    if run is not None:
        run.stop_heartbeat()
        run.emit("cancelled", signal=c.signal_name, **event_fields)
        run.finish("cancelled", error={"message": message})
        run.close()
    say(f"cancelled by {c.signal_name}")
    return 128 + c.signum


@dataclass
class Outcome:
    """What a verb's work hands back: its final event (name and fields) and run.json's result."""

    event: str
    event_fields: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class Advice:
    """The sentences a verb gives for failures the user can act on."""

    out_of_memory: str
    disk_full: Callable[[], str]
    cancelled: str = ""


def run_verb(verb: str, run_dir: str, resolve_spec: Callable[[], tuple[Any, dict]], work: Callable[[Any, RunFolder], Outcome],
             *, heartbeat_seconds: float, advice: Advice, user_errors: tuple[type[BaseException], ...] = (ValueError,)) -> int:
    """Runs `work` in a new run folder and returns the exit code.

    resolve_spec returns (spec, the spec's JSON for run.json) or raises ValueError/TypeError for bad input;
    work(spec, run) returns the Outcome; user_errors are the exceptions whose message is already a sentence
    for the user.
    """
    cancel_on_signals()
    quiet_libraries()
    run: RunFolder | None = None
    try:
        try:
            spec, spec_json = resolve_spec()
        except (ValueError, TypeError) as e:
            say_on_stderr(str(e) if isinstance(e, ValueError) else f"invalid spec: {e}")
            return EXIT_USER_ERROR
        run = RunFolder(run_dir, verb, spec_json)
        try:
            run.open()
        except RunFolderError as e:
            run = None
            say_on_stderr(str(e))
            return EXIT_USER_ERROR
        run.emit("started", verb=verb, pid=os.getpid(), spec=spec_json)
        run.start_heartbeat(heartbeat_seconds)
        try:
            outcome = work(spec, run)
            # Inside the try: a disk that fills now must still end in "failed", not a traceback.
            run.stop_heartbeat()
            run.emit(outcome.event, **outcome.event_fields)
            run.finish("succeeded", result=outcome.result)
        except user_errors as e:
            return fail(run, str(e), "user", EXIT_USER_ERROR)
        except Exception as e:  # noqa: BLE001 - the last line of defence: the run folder must still say "failed"
            if out_of_memory(e):
                return fail(run, advice.out_of_memory, "resource", EXIT_USER_ERROR)
            if disk_full(e):
                return fail(run, advice.disk_full(), "resource", EXIT_USER_ERROR)
            return fail(run, f"internal error ({type(e).__name__}: {e}); see events.jsonl for the traceback", "internal",
                        EXIT_INTERNAL, detail=traceback.format_exc())
        run.close()
        return 0
    except Cancelled as c:
        note = f"; {advice.cancelled}" if advice.cancelled else ""
        return record_cancelled(run, c, f"cancelled by {c.signal_name}{note}")


def disk_full_in(path: str | os.PathLike, then: str) -> Callable[[], str]:
    return lambda: f"the disk holding {Path(path).resolve()} is full (no space left on device); {then}"
