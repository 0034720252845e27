"""The one lifecycle every verb runs in: analyze, train, evaluate, export-onnx and convert-safetensors.

A verb is a module with a `VERB = Verb(...)`: its flags beyond the spec's (protocol/specs/<verb>.schema.json),
how it resolves its spec, and its work. Everything around the work is here, once:

  1. the spec is resolved and checked before the folder exists: run.json must always hold a valid spec;
  2. the run folder opens (or, for a resumed train run, reopens), "started" is written, the heartbeat begins,
     a model named by a repo id the cache lacks is downloaded if the user allowed it (hfcache.fetch), and the
     device is locked for verbs that hold one (one run per device);
  3. the work runs; every way out leaves one terminal state: "succeeded" with the verb's final event, "failed"
     with one sentence (stderr too), or "cancelled" on SIGTERM/SIGINT.
Under torchrun only global rank 0 writes (run folder, stdout, stderr). What train needs beyond the others are
hooks of this lifecycle: `open_folder` (reopen for --resume), `StopFlag.deferred` (a signal during a step waits
for the step and its checkpoint), `cancelled` (the step and checkpoint the stop left). A verb without a run
folder (convert-safetensors) prints its final event as one JSON line instead.

Exit codes: 0 success, 2 bad input or a resource the user can free, 1 internal error, 128+signal cancelled.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import hfcache, specs
from .events import RunFolder, RunFolderError, owner_pid

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


class StopFlag:
    """SIGTERM/SIGINT handler: cancels at once (raises Cancelled) unless the verb deferred stops to a point where
    stopping is clean (train: after the step in flight and its checkpoint), where it reads `signum`.

    Only the first signal counts: a second one (an impatient parent, a process-group kill) must not interrupt
    writing the cancelled state.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False

    def __call__(self, signum, _frame) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if not self.deferred and first:
            raise Cancelled(signum)

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)


def quiet_libraries() -> None:
    """stderr is reserved for the one-sentence error; library progress bars and warnings would bury it."""
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def say_on_stderr(message: str) -> None:
    print(f"l3prune: {message}", file=sys.stderr)


def _silent(_message: str) -> None:
    pass


def refused_input(e: BaseException) -> bool:
    """The data or the model the spec names cannot be used: a resume reads the same spec back and fails the same
    way. (A busy device, a missing GPU, a lock folder are the machine's state: a resume, later or elsewhere, can help.)"""
    # Only modules already loaded can have raised their errors (and encoder would load torch just to tell).
    kinds = tuple(getattr(sys.modules.get(f"{__package__}.{m}"), c, None) for m, c in (("datasource", "DataError"), ("encoder", "ModelError")))
    return isinstance(e, tuple(k for k in kinds if isinstance(k, type)))


def disk_full(e: BaseException) -> bool:
    # safetensors and onnx report ENOSPC as their own error types, with the OS error only in the text.
    return (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left on device" in str(e)


def out_of_memory(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"  # torch.OutOfMemoryError


def fail(run: RunFolder | None, message: str, kind: str, code: int, say: Callable[[str], None] = say_on_stderr,
         detail: str | None = None, resumable: bool = True) -> int:
    """Records the failure (error event, run.json "failed"), says it in one sentence and returns the exit code.
    resumable=False: the run's own input was refused, so run.json says a resume cannot help."""
    message = " ".join(message.split())
    if run is not None:
        run.stop_heartbeat()
        extra = {"detail": detail} if detail else {}
        try:
            run.emit("error", message=message, kind=kind, **extra)
            run.finish("failed", error={"message": message, "kind": kind, **({} if resumable else {"resumable": False})})
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
    disk_full: str


@dataclass
class Job:
    """One verb run as the work sees it: its flags, spec, run folder (None on ranks > 0 and for convert), the
    process world and the stop flag; `state` holds what the verb's hooks need later (train: its Trainer)."""

    args: argparse.Namespace
    world: Any
    stop: StopFlag
    spec: Any = None
    run: RunFolder | None = None
    state: dict[str, Any] = field(default_factory=dict)

    def emit(self, kind: str, /, **fields: Any) -> None:
        if self.run is not None:
            self.run.emit(kind, **fields)

    @property
    def run_dir(self) -> Path:
        return Path(self.args.run_dir)


def _open(job: Job) -> bool:
    job.run.open()
    return False


def _no_cancel_detail(_job: Job) -> tuple[str, dict]:
    return "", {}


def _no_device(_job: Job) -> str | None:
    return None


@dataclass(frozen=True)
class Verb:
    """A verb of `python -m l3prune`: its spec (specs/<name>.schema.json), flags, resolution and work, plus the
    hooks the lifecycle calls. user_errors are the exceptions whose message is already a sentence for the user."""

    name: str
    help: str
    resolve: Callable[[argparse.Namespace, Any], Any]
    work: Callable[[Any, Job], Outcome]
    advice: Callable[[Job], Advice]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None
    spec_flags: dict[str, dict] = field(default_factory=dict)
    user_errors: tuple[type[BaseException], ...] = (ValueError,)
    run_folder: bool = True
    distributed: bool = False
    # Hooks: the device to hold for the whole run (None: none), how the folder opens (True: it was reopened, so
    # no "started"), and what a cancel adds to its message and event.
    device: Callable[[Job], str | list[str] | None] = _no_device
    open_folder: Callable[[Job], bool] = _open
    cancelled: Callable[[Job], tuple[str, dict]] = _no_cancel_detail


def add_pause_after_load(p: argparse.ArgumentParser) -> None:
    """Test hook of the verbs that load a model and then work (evaluate, export-onnx): a pause after loading gives
    SIGTERM and kill -9 a deterministic target."""
    p.add_argument("--debug-sleep-after-load", type=float, default=0.0, help=argparse.SUPPRESS)


def add_arguments(p: argparse.ArgumentParser, verb: Verb) -> None:
    """The verb's flags: --run-dir and --spec, one per spec field, then its own."""
    if verb.run_folder:
        p.add_argument("--run-dir", required=True, metavar="DIR", help="run folder to create (run.json, events.jsonl and the verb's outputs)")
    p.add_argument("--spec", metavar="FILE", help=f"JSON file of {verb.name} fields (protocol/specs/{verb.name}.schema.json); flags override it")
    specs.add_flags(p, verb.name, verb.spec_flags)
    verb.add_arguments(p)
    if verb.run_folder:
        p.add_argument("--heartbeat-seconds", type=float, default=5.0, help=argparse.SUPPRESS)


def run_verb(verb: Verb, args: argparse.Namespace) -> int:
    """Runs the verb in its run folder and returns the exit code."""
    from . import distributed as D

    job = Job(args=args, world=D.env_world() if verb.distributed else D.World(), stop=StopFlag())
    job.stop.install()
    quiet_libraries()
    say = say_on_stderr if job.world.is_main else D.rank_say(getattr(args, "run_dir", "."), job.world) if job.world.distributed else _silent
    locks: list = []
    try:
        try:
            job.spec = verb.resolve(args, job.world)
        except (ValueError, TypeError) as e:
            say(str(e) if isinstance(e, ValueError) else f"invalid spec: {e}")
            return EXIT_USER_ERROR
        # The one place consent is decided, for every verb and every way its spec was built (flags, spec file,
        # a resumed run.json, a --from-run train run): this command line's --trust-remote-code.
        specs.apply_consent(job.spec, args)
        if verb.run_folder and job.world.is_main:
            spec_json = job.spec.to_json()
            job.run = RunFolder(args.run_dir, verb.name, spec_json)
            try:
                reopened = verb.open_folder(job)
            except RunFolderError as e:
                job.run = None
                say(str(e))
                return EXIT_USER_ERROR
            if not reopened:
                job.run.emit("started", verb=verb.name, pid=owner_pid(), spec=spec_json)
            job.run.start_heartbeat(args.heartbeat_seconds)
        try:
            # A model named by a repo id the cache lacked, with --allow-download: fetched now, with events.
            hfcache.fetch(job)
            # Local rank 0 of each node holds the node's devices (train under torchrun: every chosen GPU).
            device = verb.device(job) if job.world.local_rank == 0 else None
            if device:
                from .devicelock import DeviceLock

                for name in [device] if isinstance(device, str) else device:
                    one = DeviceLock(name, Path(args.run_dir).resolve())
                    one.acquire()  # the kernel also drops it if this process dies, however it dies
                    locks.append(one)
            outcome = verb.work(job.spec, job)
            # Inside the try: a disk that fills now must still end in "failed", not a traceback.
            if job.run is not None:
                job.run.stop_heartbeat()
                job.run.emit(outcome.event, **outcome.event_fields)
                job.run.finish("succeeded", result=outcome.result)
            elif not verb.run_folder:
                print(json.dumps({"event": outcome.event, **outcome.event_fields}), flush=True)
        except verb.user_errors as e:
            return fail(job.run, str(e), "user", EXIT_USER_ERROR, say, resumable=not refused_input(e))
        except Exception as e:  # noqa: BLE001 - the last line of defence: the run folder must still say "failed"
            if out_of_memory(e):
                return fail(job.run, verb.advice(job).out_of_memory, "resource", EXIT_USER_ERROR, say)
            if disk_full(e):
                return fail(job.run, verb.advice(job).disk_full, "resource", EXIT_USER_ERROR, say)
            # Under torchrun most errors of rank 0 that no check foresaw are a collective another rank left.
            peer = D.peer_failure(args.run_dir, job.world) if verb.run_folder else None
            if peer:
                return fail(job.run, peer, "internal", EXIT_INTERNAL, say, detail=traceback.format_exc())
            return fail(job.run, f"internal error ({type(e).__name__}: {e}); see events.jsonl for the traceback", "internal",
                        EXIT_INTERNAL, say, detail=traceback.format_exc())
        if job.run is not None:
            job.run.close()
        return 0
    except Cancelled as c:
        note, fields_ = verb.cancelled(job)
        return record_cancelled(job.run, c, f"cancelled by {c.signal_name}{note}", say, **fields_)
    finally:
        # Released here too, not only at exit: tests and tools run verbs inside a longer-lived process.
        for one in locks:
            one.release()
        D.shutdown()


def main_for(verb: Verb, argv: list[str] | None = None) -> int:
    """A verb's stand-alone entry (`python -m l3prune.train ...`); `python -m l3prune <verb>` is the public one."""
    p = argparse.ArgumentParser(prog=f"python -m l3prune {verb.name}", description=verb.help)
    add_arguments(p, verb)
    return run_verb(verb, p.parse_args(argv))


def disk_full_in(path: str | os.PathLike, then: str) -> str:
    return f"the disk holding {Path(path).resolve()} is full (no space left on device); {then}"
