"""The `train` verb: prune a decoder to its first n layers and train it as a text encoder (LoRA + InfoNCE).

The recipe is the paper's (L³Prune, after LLM2Vec's supervised contrastive script, which runs on the Hugging Face
Trainer): LoRA r 16 / alpha 32 / dropout 0.05 on every attention and MLP projection, weighted-mean pooling,
hard-negative InfoNCE with scale 50, AdamW (lr 2e-4, betas 0.9/0.999, eps 1e-8, no weight decay), gradient
clipping at norm 1.0 (the Trainer's default max_grad_norm), and the Trainer's default schedule,
`get_linear_schedule_with_warmup`: the learning rate of optimizer step s (0-based) is
    lr * s / warmupSteps                                   for s < warmupSteps
    lr * max(0, (steps - s) / (steps - warmupSteps))       afterwards
so, exactly as there, the very first step runs at lr 0 when warm-up is on.

Run folder (protocol/run.schema.json, protocol/events.schema.json):
  run.json, events.jsonl         as every verb; the spec in run.json is the full, resolved spec (defaults filled
                                 in, paths absolute), so --resume needs nothing else
  checkpoints/step-00000100/     adapter (safetensors), optimizer (safetensors + json), scheduler, RNG states of
                                 every rank, data position; written to a temp folder, fsynced, then renamed, so a
                                 kill -9 at any moment leaves the previous complete checkpoint; the last 2 are kept
  adapter/                       the final LoRA adapter (peft save_pretrained, safetensors)
  model/                         mergeAtEnd: the merged, pruned model (AutoModel.from_pretrained loads it)

Determinism: batch k of the run is a pure function of (data, seed, global batch size, k), so a resumed run sees
the batches an uninterrupted one would; with the RNG states restored too, the loss curves are equal (bit-equal
on CPU fp32 in the tests).

Scale-out: under `torchrun --nproc_per_node=K` every process takes batchSize triples of each global batch of
K*batchSize; query, positive and negative embeddings are all-gathered (own slice with gradients), every rank
computes the same full-batch loss, and DDP averages the gradients (the loss is scaled by K before backward so
the averaged gradient is the full-batch gradient). Rank 0 alone writes events, run.json and checkpoints.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import distributed as D
from .data import DataError, Triple, read_triples
from .encoder import POOLINGS, Encoder, ModelError, find_final_norm, load_encoder, pool, prune
from .events import RunFolder, RunFolderError, now_iso
from .losses import HardNegativeInfoNCE
from .devicelock import DeviceBusyError, DeviceLock
from .verbs import (EXIT_INTERNAL, EXIT_USER_ERROR, Cancelled, disk_full, fail, out_of_memory, quiet_libraries,
                    record_cancelled, say_on_stderr)
MAX_GRAD_NORM = 1.0
KEEP_CHECKPOINTS = 2
STEP_DIR = re.compile(r"^step-(\d{8})$")
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
STALE_HEARTBEAT_S = 30.0


# ---------------------------------------------------------------------------------------------------------------
# spec
@dataclass
class TrainSpec:
    model: str
    keep: int
    data: str
    steps: int = 1000
    batchSize: int = 64
    learningRate: float = 2e-4
    warmupSteps: int = 300
    maxLength: int = 512
    loraR: int = 16
    loraAlpha: float = 32
    loraDropout: float = 0.05
    targetModules: list = field(default_factory=lambda: list(DEFAULT_TARGETS))
    scale: float = 50.0
    pooling: str = "weighted_mean"
    checkpointEvery: int = 100
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    gradientCheckpointing: Any = "auto"
    taskHomogeneous: bool = True
    mergeAtEnd: bool = True
    trustRemoteCode: bool = False

    def validate(self) -> None:
        num = (int, float)
        types = {
            "model": str, "keep": int, "data": str, "steps": int, "batchSize": int, "learningRate": num,
            "warmupSteps": int, "maxLength": int, "loraR": int, "loraAlpha": num, "loraDropout": num,
            "targetModules": list, "scale": num, "pooling": str, "checkpointEvery": int, "seed": int,
            "device": str, "precision": str, "taskHomogeneous": bool, "mergeAtEnd": bool, "trustRemoteCode": bool,
        }
        for name, t in types.items():
            v = getattr(self, name)
            # bool is an int in Python; "steps": true is a mistake, not 1.
            if not isinstance(v, t) or (isinstance(v, bool) and t is not bool):
                want = {int: "a whole number", num: "a number", str: "a string", list: "a list", bool: "true or false"}[t]
                raise ValueError(f"spec field '{name}' must be {want}, got {_show(v)}")
        for name in ("model", "data"):
            if not getattr(self, name).strip():
                raise ValueError(f"spec field '{name}' must not be empty")
            if "\0" in getattr(self, name):
                raise ValueError(f"spec field '{name}' must be a path, but it holds a NUL character")
        for name, lo in (("keep", 1), ("steps", 1), ("batchSize", 1), ("warmupSteps", 0), ("maxLength", 2), ("loraR", 1), ("checkpointEvery", 1)):
            if getattr(self, name) < lo:
                raise ValueError(f"spec field '{name}' must be at least {lo}, got {_show(getattr(self, name))}")
        for name in ("learningRate", "loraAlpha", "scale"):
            v = getattr(self, name)
            # Compared, not converted: math.isfinite(10**400) raises OverflowError; such an int is no float either.
            finite = abs(v) <= sys.float_info.max if isinstance(v, int) else math.isfinite(v)
            if not (finite and v > 0):
                raise ValueError(f"spec field '{name}' must be a positive number, got {_show(v)}")
        if not (-(2**63) <= self.seed < 2**64):
            raise ValueError(f"spec field 'seed' must be between -2^63 and 2^64-1 (what torch.manual_seed takes), got {_show(self.seed)}")
        if not (0 <= self.loraDropout < 1):
            raise ValueError(f"spec field 'loraDropout' must be in [0, 1), got {_show(self.loraDropout)}")
        if not self.targetModules or not all(isinstance(m, str) and m for m in self.targetModules):
            raise ValueError("spec field 'targetModules' must be a non-empty list of module names such as q_proj")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {_show(self.pooling)}")
        # [0-9], not \d: \d also matches other scripts' digits ("cuda:\u0663"), which torch.device refuses.
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", self.device):
            raise ValueError(f"device must be auto, cpu or cuda, got {_show(self.device)}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {_show(self.precision)}")
        # Not `in ("auto", True, False)`: 1.0 == True, and the schema allows only "auto", true and false.
        if not (isinstance(self.gradientCheckpointing, bool) or self.gradientCheckpointing == "auto"):
            raise ValueError(f"gradientCheckpointing must be auto, true or false, got {_show(self.gradientCheckpointing)}")

    def to_json(self) -> dict:
        return asdict(self)


def _show(v: Any) -> str:
    """A value quoted in a one-line error: repr (which escapes line breaks), cut to a readable length."""
    try:
        text = repr(v)
    except (RecursionError, ValueError):  # nesting past the recursion limit, an int past the digit limit
        return f"a {type(v).__name__} too large to show"
    return text if len(text) <= 80 else f"{text[:80]}…"


def _json_problem(e: BaseException) -> str:
    """Why json.loads (or the UTF-8 decoding before it) failed, in a few words on one line."""
    if isinstance(e, json.JSONDecodeError):
        return f"line {e.lineno}: {e.msg}"
    if isinstance(e, UnicodeDecodeError):
        return f"byte {e.start} is not UTF-8"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return " ".join(str(e).split())[:200] or type(e).__name__


SPEC_FIELDS = tuple(f.name for f in fields(TrainSpec))
# snake_case spellings are accepted in spec files (as analyze does); they are stored camelCase.
SPEC_ALIASES = {re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), f): f for f in SPEC_FIELDS}


def make_spec(raw: dict, *, source: str) -> TrainSpec:
    spec: dict = {}
    for k, v in raw.items():
        k = SPEC_ALIASES.get(k, k)
        if k not in SPEC_FIELDS:
            raise ValueError(f"{source} has unknown field {_show(k)}; allowed: {', '.join(SPEC_FIELDS)}")
        spec[k] = v
    for k in ("model", "keep", "data"):
        if spec.get(k) in (None, ""):
            flag = {"keep": "--keep N", "model": "--model DIR", "data": "--data FILE"}[k]
            raise ValueError(f"no '{k}' given (neither as {flag} nor in the spec file); it is required")
    s = TrainSpec(**spec)
    s.validate()
    # Absolute paths, so that --resume from another working directory finds the same files. os.path's
    # expanduser leaves "~nosuchuser/x" as it is, where Path.expanduser raises RuntimeError.
    s.model = str(Path(os.path.expanduser(s.model)).resolve())
    s.data = str(Path(os.path.expanduser(s.data)).resolve())
    if isinstance(s.learningRate, int):
        s.learningRate = float(s.learningRate)
    s.targetModules = list(s.targetModules)
    return s


# ---------------------------------------------------------------------------------------------------------------
# CLI
def add_arguments(t: argparse.ArgumentParser) -> None:
    """The train sub-command's flags; each one overrides the spec file's field (dest = the spec's name)."""
    t.add_argument("--run-dir", required=True, help="run folder (run.json, events.jsonl, checkpoints/, adapter/, model/)")
    t.add_argument("--spec", help="JSON file of train fields (camelCase); flags override it")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its newest checkpoint")
    t.add_argument("--model", help="local Hugging Face model folder (safetensors)")
    t.add_argument("--keep", type=int, help="number of layers to keep (the first N)", metavar="N")
    t.add_argument("--data", help="JSONL file of {query, positive, negative[, task, instruction]} triples")
    t.add_argument("--steps", type=int, metavar="N")
    t.add_argument("--batch-size", type=int, dest="batchSize", help="triples per step (per process under torchrun)", metavar="N")
    t.add_argument("--learning-rate", type=float, dest="learningRate", metavar="X")
    t.add_argument("--warmup-steps", type=int, dest="warmupSteps", metavar="N")
    t.add_argument("--max-length", type=int, dest="maxLength", metavar="N")
    t.add_argument("--lora-r", type=int, dest="loraR", metavar="N")
    t.add_argument("--lora-alpha", type=float, dest="loraAlpha", metavar="X")
    t.add_argument("--lora-dropout", type=float, dest="loraDropout", metavar="X")
    t.add_argument("--scale", type=float, metavar="X")
    t.add_argument("--pooling", choices=list(POOLINGS))
    t.add_argument("--checkpoint-every", type=int, dest="checkpointEvery", metavar="N")
    t.add_argument("--seed", type=int, metavar="N")
    t.add_argument("--device", help="auto, cpu or cuda")
    t.add_argument("--precision", choices=["auto", "bf16", "fp32"])
    t.add_argument("--merge", action=argparse.BooleanOptionalAction, default=None, dest="mergeAtEnd",
                   help="save the merged pruned model to <run-dir>/model at the end (default: yes)")
    t.add_argument("--trust-remote-code", action="store_true", default=None, dest="trustRemoteCode")
    t.add_argument("--heartbeat-seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    # Test hooks: a real kill -9 of this process right after step N's event, and a pause per step.
    t.add_argument("--debug-kill-after-step", type=int, default=None, help=argparse.SUPPRESS)
    t.add_argument("--debug-step-sleep", type=float, default=0.0, help=argparse.SUPPRESS)


FLAG_FIELDS = [f for f in SPEC_FIELDS if f not in ("targetModules", "taskHomogeneous", "gradientCheckpointing")]


def spec_from_args(args: argparse.Namespace) -> TrainSpec:
    raw: dict = {}
    source = "the command line"
    if args.spec:
        sp = Path(args.spec)
        source = f"spec file {sp}"
        try:
            loaded = json.loads(sp.read_text(encoding="utf-8"))
        except OSError as e:
            raise ValueError(f"spec file {sp} cannot be read ({e.strerror}); pass an existing JSON file with --spec") from None
        except (ValueError, RecursionError) as e:
            # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits, nesting past the recursion limit.
            raise ValueError(f"spec file {sp} is not valid JSON ({_json_problem(e)}); fix the file") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"spec file {sp} must hold a JSON object of train fields")
        raw.update(loaded)
    for k in FLAG_FIELDS:
        v = getattr(args, k, None)
        if v is not None:
            raw[k] = v
    return make_spec(raw, source=source)


def resume_spec(args: argparse.Namespace, *, check_status: bool = True) -> TrainSpec:
    given = [k for k in FLAG_FIELDS if getattr(args, k, None) is not None] + (["spec"] if args.spec else [])
    if given:
        raise ValueError(f"--resume takes the spec from run.json; leave out --{given[0]}")
    rj = Path(args.run_dir) / "run.json"
    try:
        state = json.loads(rj.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"nothing to resume: {rj} does not exist; start a run without --resume") from None
    except OSError as e:
        raise ValueError(f"cannot resume: {rj} is not readable ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:
        raise ValueError(f"cannot resume: {rj} is not readable JSON ({_json_problem(e)})") from None
    if not isinstance(state, dict):
        raise ValueError(f"cannot resume: {rj} does not hold a JSON object; it is not a run.json the worker wrote")
    if state.get("verb") != "train" or not isinstance(state.get("spec"), dict):
        raise ValueError(f"cannot resume: {rj} is not a train run (verb {_show(state.get('verb'))})")
    status = state.get("status")
    if not check_status:
        # torchrun ranks > 0: rank 0 decides (and may already have set the status back to running).
        return make_spec(state["spec"], source=f"run.json in {args.run_dir}")
    if status == "succeeded":
        raise ValueError(f"cannot resume: the run in {args.run_dir} already finished; start a new run")
    if status == "running" and _alive(state.get("pid")) and not _stale(state.get("heartbeatAt")):
        raise ValueError(f"cannot resume: the run in {args.run_dir} is still running (pid {_show(state.get('pid'))}); cancel it first")
    return make_spec(state["spec"], source=f"run.json in {args.run_dir}")


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: a pid past the C range is no process
        return False
    except PermissionError:
        return True
    return True


def _stale(iso) -> bool:
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return True
    if t.tzinfo is None:
        # A time without a zone (not what the worker writes) is read as UTC rather than failing to compare.
        t = t.replace(tzinfo=dt.timezone.utc)
    return (dt.datetime.now(dt.timezone.utc) - t).total_seconds() > STALE_HEARTBEAT_S


class TrainRunFolder(RunFolder):
    """RunFolder plus `reopen` for --resume: same run.json (startedAt kept), status running again, new pid."""

    def reopen(self) -> None:
        try:
            state = json.loads(self.run_json_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise RunFolderError(f"cannot resume: {self.run_json_path} is not readable ({e})") from None
        # A kill -9 mid-write can leave a torn last line; cut it so the next event starts on a line of its own.
        if self.events_path.exists():
            with open(self.events_path, "rb+") as fh:
                data = fh.read()
                if data and not data.endswith(b"\n"):
                    fh.truncate(data.rfind(b"\n") + 1)
        t = now_iso()
        state.update(status="running", pid=os.getpid(), heartbeatAt=t, endedAt=None, error=None, result=None, spec=self.spec)
        self._state = state
        self._events_fh = open(self.events_path, "a", encoding="utf-8")
        self._write_run_json()


class StopFlag:
    """SIGTERM/SIGINT: before the loop they cancel at once; inside it they only ask for a stop after the step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False

    def __call__(self, signum, _frame) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if not self.deferred and first:
            raise Cancelled(signum)


def run_cli(args: argparse.Namespace) -> int:
    """`python -m l3prune train ...`; returns the exit code (0, 2 bad input, 1 internal, 128+signal cancelled)."""
    world = D.env_world()
    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    quiet_libraries()
    run: TrainRunFolder | None = None
    say = say_on_stderr if world.is_main else (lambda msg: None)
    try:
        try:
            spec = resume_spec(args, check_status=world.is_main) if args.resume else spec_from_args(args)
        except (ValueError, TypeError) as e:
            say(str(e) if isinstance(e, ValueError) else f"invalid spec: {e}")
            return EXIT_USER_ERROR
        if world.is_main:
            run = TrainRunFolder(args.run_dir, "train", spec.to_json())
            try:
                run.reopen() if args.resume else run.open()
            except RunFolderError as e:
                run = None
                say(str(e))
                return EXIT_USER_ERROR
            if not args.resume:
                run.emit("started", verb="train", pid=os.getpid(), spec=spec.to_json())
            run.start_heartbeat(args.heartbeat_seconds)
        emit = run.emit if run is not None else (lambda *a, **k: None)
        if world.is_main:
            try:
                held_lock = DeviceLock(resolve_device(spec.device, world), Path(args.run_dir).resolve())
                held_lock.acquire()  # the kernel also drops it if this process dies, however it dies
            except (DeviceBusyError, ModelError) as e:
                return fail(run, str(e), "user", EXIT_USER_ERROR, say)
        trainer = Trainer(spec, Path(args.run_dir), world, emit, stop,
                          kill_after=args.debug_kill_after_step, step_sleep=args.debug_step_sleep)
        try:
            out = trainer.run(resume=args.resume)
            if out["cancelled"]:
                raise Cancelled(stop.signum or signal.SIGTERM)
            if run is not None:
                # Inside the try: a disk that fills now must still end in "failed", not a traceback.
                run.stop_heartbeat()
                run.emit("train_finished", step=out["step"], finalLoss=out["finalLoss"], adapterPath=out["adapterPath"], mergedPath=out["mergedPath"])
                run.finish("succeeded", result={k: out[k] for k in ("step", "finalLoss", "adapterPath", "mergedPath", "seconds")})
        except (DataError, ModelError, ValueError) as e:
            return fail(run, str(e), "user", EXIT_USER_ERROR, say)
        except Exception as e:  # noqa: BLE001 - the run folder must still say "failed"
            if out_of_memory(e):
                return fail(run, "ran out of memory; lower batchSize or maxLength, or turn gradientCheckpointing on", "resource", EXIT_USER_ERROR, say)
            if disk_full(e):
                where = f"at step {trainer.step}" if trainer.step else "before the first step"
                return fail(run, f"the disk holding {Path(args.run_dir).resolve()} is full (no space left on device) {where}; "
                                  "free some space, then resume the run: it continues from its newest complete checkpoint", "resource", EXIT_USER_ERROR, say)
            return fail(run, f"internal error ({type(e).__name__}: {e}); see events.jsonl for the traceback", "internal", EXIT_INTERNAL, say, detail=traceback.format_exc())
        if run is not None:
            run.close()
        return 0
    except Cancelled as c:
        step = trainer.step if "trainer" in locals() else 0
        ck = trainer.last_checkpoint if "trainer" in locals() else None
        message = f"cancelled by {c.signal_name} at step {step}" + ("; continue with --resume" if ck else "")
        return record_cancelled(run, c, message, say, step=step, checkpoint=str(ck) if ck else None)
    finally:
        # Released here too, not only at exit: tests and tools call run_cli inside a longer-lived process.
        if "held_lock" in locals():
            held_lock.release()
        D.shutdown()


# ---------------------------------------------------------------------------------------------------------------
# data order
class BatchPlan:
    """Global batch k as a pure function of (triples, seed, global batch size, k).

    Epoch e shuffles each task's triples with random.Random(seed, e), cuts them into full batches (a task's last
    partial batch is left out of that epoch: every process needs an equal share, and in-batch negatives from
    another task would be trivially easy), then shuffles the batch order. With taskHomogeneous false all triples
    form one group.
    """

    def __init__(self, triples: list[Triple], global_batch: int, seed: int, task_homogeneous: bool, source: str = "the data"):
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(triples):
            groups.setdefault((t.task or "") if task_homogeneous else "", []).append(i)
        self.groups = [groups[k] for k in sorted(groups)]
        self.global_batch = global_batch
        self.seed = seed
        self.per_epoch = sum(len(g) // global_batch for g in self.groups)
        if self.per_epoch == 0:
            if task_homogeneous and len(self.groups) > 1:
                raise DataError(
                    f"{source}: no task has {global_batch} triples, one full batch; lower batchSize or set taskHomogeneous to false"
                )
            raise DataError(f"{source} has {len(triples)} triples, fewer than one batch of {global_batch}; lower batchSize")
        self._cache: tuple[int, list[list[int]]] | None = None

    def epoch(self, e: int) -> list[list[int]]:
        if self._cache is None or self._cache[0] != e:
            rng = random.Random(f"l3prune-train:{self.seed}:{e}")
            batches: list[list[int]] = []
            b = self.global_batch
            for g in self.groups:
                idx = list(g)
                rng.shuffle(idx)
                batches.extend(idx[j : j + b] for j in range(0, len(idx) - b + 1, b))
            rng.shuffle(batches)
            self._cache = (e, batches)
        return self._cache[1]

    def batch(self, k: int) -> list[int]:
        e, i = divmod(k, self.per_epoch)
        return self.epoch(e)[i]

    def position(self, k: int) -> dict:
        e, i = divmod(k, self.per_epoch)
        return {"epoch": e, "batchInEpoch": i, "batchesPerEpoch": self.per_epoch, "globalBatchSize": self.global_batch}


def linear_warmup_decay(warmup: int, total: int) -> Callable[[int], float]:
    """transformers.get_linear_schedule_with_warmup's multiplier (the schedule of the paper's Trainer run)."""

    def f(s: int) -> float:
        if s < warmup:
            return s / max(1, warmup)
        return max(0.0, (total - s) / max(1, total - warmup))

    return f


# ---------------------------------------------------------------------------------------------------------------
# checkpoints
def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, allow_nan=False)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_tree(d: Path) -> None:
    for p in d.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(d)


def _fsync_dir(d: Path) -> None:
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


def _remove_dir(d: Path) -> None:
    """Rename first (atomic), delete after: a kill mid-delete never leaves a half step-N folder."""
    trash = d.with_name(f".trash-{d.name}-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(d, trash)
    shutil.rmtree(trash, ignore_errors=True)


def rng_state() -> dict:
    py = random.getstate()
    npst = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }


def set_rng_state(s: dict) -> None:
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))
    n = s["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(s["torch"], dtype=torch.uint8))
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(x, dtype=torch.uint8) for x in s["cuda"]])


def list_checkpoints(ckdir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (renamed into place and holding state.json), newest first."""
    out = []
    if ckdir.is_dir():
        for p in ckdir.iterdir():
            m = STEP_DIR.match(p.name)
            if m and p.is_dir() and (p / "state.json").is_file():
                out.append((int(m.group(1)), p))
    return sorted(out, reverse=True)


def _debug_kill_in_checkpoint(phase: str, step: int) -> None:
    """Fault-injection hook (tests only): L3PRUNE_DEBUG_KILL_IN_CHECKPOINT=PHASE@STEP kills this process with
    SIGKILL at that phase of writing step STEP's checkpoint, to prove a torn checkpoint is never used."""
    want = os.environ.get("L3PRUNE_DEBUG_KILL_IN_CHECKPOINT")
    if want and want == f"{phase}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def save_checkpoint(ckdir: Path, step: int, peft_model, opt, sched, state: dict, rngs: list[dict]) -> Path:
    ckdir.mkdir(parents=True, exist_ok=True)
    final = ckdir / f"step-{step:08d}"
    tmp = ckdir / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write_checkpoint_files(tmp, step, peft_model, opt, sched, state, rngs)
    except BaseException:
        # Free what the torn checkpoint took (on a full disk, the error report needs that room).
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        _remove_dir(final)
    os.rename(tmp, final)
    _fsync_dir(ckdir)
    _debug_kill_in_checkpoint("after-rename", step)
    for _, old in list_checkpoints(ckdir)[KEEP_CHECKPOINTS:]:
        _remove_dir(old)
    return final


def _write_checkpoint_files(tmp: Path, step: int, peft_model, opt, sched, state: dict, rngs: list[dict]) -> None:
    from safetensors.torch import save_file

    peft_model.save_pretrained(str(tmp), safe_serialization=True)
    _debug_kill_in_checkpoint("adapter", step)
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().to("cpu").contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    _debug_kill_in_checkpoint("optimizer", step)
    _write_json(tmp / "optimizer.json", {"param_groups": sd["param_groups"], "scalars": scalars})
    _write_json(tmp / "scheduler.json", sched.state_dict())
    _write_json(tmp / "rng.json", {"ranks": rngs})
    _write_json(tmp / "state.json", state)
    _fsync_tree(tmp)
    _debug_kill_in_checkpoint("before-rename", step)


def read_checkpoint(ck: Path) -> dict:
    """Everything a checkpoint holds, read and parsed before anything is applied (a bad one is skipped whole)."""
    from safetensors.torch import load_file

    return {
        "adapter": load_file(str(ck / "adapter_model.safetensors")),
        "optTensors": load_file(str(ck / "optimizer.safetensors")),
        "opt": json.loads((ck / "optimizer.json").read_text(encoding="utf-8")),
        "sched": json.loads((ck / "scheduler.json").read_text(encoding="utf-8")),
        "rng": json.loads((ck / "rng.json").read_text(encoding="utf-8")),
        "state": json.loads((ck / "state.json").read_text(encoding="utf-8")),
    }


def apply_checkpoint(c: dict, peft_model, opt, sched, device) -> None:
    from peft import set_peft_model_state_dict

    res = set_peft_model_state_dict(peft_model, {k: v.to(device) for k, v in c["adapter"].items()})
    unexpected = getattr(res, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"checkpoint adapter does not match the model (unexpected weights such as {unexpected[0]})")
    state: dict[int, dict] = {}
    for key, v in c["optTensors"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for key, v in c["opt"]["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": c["opt"]["param_groups"]})
    sched.load_state_dict(c["sched"])


# ---------------------------------------------------------------------------------------------------------------
# training
def resolve_device(device: str, world: D.World) -> str:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError("device cuda was requested but no CUDA device is available; use device cpu")
        if world.distributed:
            return f"cuda:{world.local_rank}"
    return device


def resolve_precision(precision: str, device: str) -> str:
    if precision == "auto":
        return "bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def present_targets(model: torch.nn.Module, wanted: list[str]) -> list[str]:
    names = {n.rpartition(".")[2] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    found = [t for t in wanted if t in names]
    if not found:
        raise ValueError(
            f"none of targetModules ({', '.join(wanted)}) is a linear layer of this model; its linear layers are named "
            f"{', '.join(sorted(names)) or '(none)'}"
        )
    return found


class Trainer:
    def __init__(self, spec: TrainSpec, run_dir: Path, world: D.World, emit, stop: StopFlag, *, kill_after=None, step_sleep=0.0):
        self.spec = spec
        self.run_dir = run_dir.resolve()
        self.world = world
        self.emit = emit
        self.stop = stop
        self.kill_after = kill_after
        self.step_sleep = step_sleep
        self.step = 0
        self.last_checkpoint: Path | None = None

    # -- setup ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        spec, world = self.spec, self.world
        self.device = resolve_device(spec.device, world)
        D.init(world, self.device)
        self.precision = resolve_precision(spec.precision, self.device)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.triples = read_triples(spec.data)
        self.plan = BatchPlan(self.triples, spec.batchSize * world.size, spec.seed, spec.taskHomogeneous, source=f"data file {spec.data}")
        t0 = time.monotonic()
        random.seed(spec.seed)
        np.random.seed(spec.seed % 2**32)
        torch.manual_seed(spec.seed)
        enc = load_encoder(spec.model, device=self.device, max_length=spec.maxLength, trust_remote_code=spec.trustRemoteCode, dtype=dtype)
        original = enc.num_layers
        if spec.keep > original:
            raise ValueError(f"keep is {spec.keep} but the model has only {original} layers; choose 1..{original}")
        prune(enc.model, spec.keep)
        targets = present_targets(enc.model, spec.targetModules)
        gc = spec.gradientCheckpointing
        self.grad_ckpt = self.device.startswith("cuda") if gc == "auto" else bool(gc)
        if self.grad_ckpt:
            enc.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=spec.loraR, lora_alpha=spec.loraAlpha, lora_dropout=spec.loraDropout, target_modules=targets, bias="none")
        self.peft_model = get_peft_model(enc.model, cfg)
        self.peft_model.train()
        if world.rank > 0:
            # Same LoRA init everywhere (DDP also broadcasts rank 0's), own dropout stream per rank.
            torch.manual_seed(spec.seed + world.rank)
        enc.model = self.peft_model
        self.enc: Encoder = enc
        self.params = [p for p in self.peft_model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=spec.learningRate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, linear_warmup_decay(spec.warmupSteps, spec.steps))
        self.loss_fn = HardNegativeInfoNCE(spec.scale)
        norm = find_final_norm(self.peft_model.get_base_model())
        cfg_m = self.peft_model.get_base_model().config
        self.emit(
            "model_loaded",
            numLayers=spec.keep,
            originalNumLayers=original,
            modelType=str(getattr(cfg_m, "model_type", "unknown")),
            hiddenSize=int(getattr(cfg_m, "hidden_size", 0) or 0),
            finalNorm=type(norm).__name__ if norm is not None else None,
            loadSeconds=round(time.monotonic() - t0, 3),
            trainableParams=sum(p.numel() for p in self.params),
            totalParams=sum(p.numel() for p in self.peft_model.parameters()),
            device=self.device,
            precision=self.precision,
            gradientCheckpointing=self.grad_ckpt,
            targetModules=targets,
            worldSize=world.size,
        )

    def wrap(self) -> None:
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.world.local_rank] if self.device.startswith("cuda") else None
            self.fwd = DDP(self.peft_model, device_ids=ids)
        else:
            self.fwd = self.peft_model

    def restore(self) -> Path | None:
        """Load the newest complete checkpoint that reads back whole; returns it (None: start at step 0)."""
        errors = []
        for _, ck in list_checkpoints(self.run_dir / "checkpoints"):
            try:
                c = read_checkpoint(ck)
            except Exception as e:  # noqa: BLE001 - a damaged checkpoint: fall back to the one before
                errors.append(f"{ck.name}: {e}")
                continue
            st = c["state"]
            if st.get("worldSize", 1) != self.world.size:
                raise ValueError(
                    f"checkpoint {ck.name} was written by {st.get('worldSize')} process(es); resume with the same number (now {self.world.size})"
                )
            if st.get("numTriples") != len(self.triples):
                raise ValueError(f"the data file changed since the run started ({st.get('numTriples')} triples then, {len(self.triples)} now); resume needs the same data")
            apply_checkpoint(c, self.peft_model, self.opt, self.sched, self.device)
            self.step = int(st["step"])
            self.elapsed_before = float(st.get("elapsedSeconds", 0.0))
            self.last_loss = st.get("lastLoss")
            ranks = c["rng"]["ranks"]
            set_rng_state(ranks[self.world.rank] if self.world.rank < len(ranks) else ranks[0])
            return ck
        return None

    def checkpoint(self) -> Path | None:
        rngs = D.gather_objects(rng_state(), self.world)
        if not self.world.is_main:
            return None
        state = {
            "step": self.step,
            **self.plan.position(self.step),
            "worldSize": self.world.size,
            "numTriples": len(self.triples),
            "seed": self.spec.seed,
            "elapsedSeconds": round(self.elapsed(), 3),
            "lastLoss": self.last_loss,
            "writtenAt": now_iso(),
        }
        ck = save_checkpoint(self.run_dir / "checkpoints", self.step, self.peft_model, self.opt, self.sched, state, rngs)
        self.last_checkpoint = ck
        self.emit("checkpoint", step=self.step, path=str(ck))
        return ck

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.t_train)

    # -- the loop ---------------------------------------------------------------------------------------
    def train_step(self, batch: list[Triple]) -> tuple[float, int]:
        b = len(batch)
        texts = [t.query_text() for t in batch] + [t.positive for t in batch] + [t.negative for t in batch]
        tok = self.enc.tokenize(texts)
        inputs = self.enc.model_inputs(tok)
        amp = torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
        with amp:
            out = self.fwd(**inputs, use_cache=False)
        emb = pool(out.last_hidden_state.float(), tok["attention_mask"], self.spec.pooling)
        q, p, n = (D.gather_with_grad(x, self.world) for x in (emb[:b], emb[b : 2 * b], emb[2 * b :]))
        loss = self.loss_fn(q, p, n)
        # DDP averages gradients over ranks; each rank's gradient is its share of the full-batch loss's gradient.
        (loss * self.world.size).backward()
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach()), int(tok["attention_mask"].sum())

    def sweep(self) -> None:
        """Leftovers of a process killed while writing (temp and trash folders) are never complete; remove them."""
        for d in (self.run_dir / "checkpoints", self.run_dir):
            if d.is_dir():
                for p in d.iterdir():
                    if p.is_dir() and p.name.startswith((".tmp-", ".trash-", ".adapter.tmp-", ".model.tmp-")):
                        shutil.rmtree(p, ignore_errors=True)

    def run(self, *, resume: bool) -> dict:
        spec, world = self.spec, self.world
        if world.is_main:
            self.sweep()
        self.setup()
        self.elapsed_before = 0.0
        self.last_loss = None
        if resume:
            ck = self.restore()
            self.last_checkpoint = ck
            self.emit("resumed", step=self.step, checkpoint=str(ck) if ck else None, pid=os.getpid())
        self.wrap()
        D.barrier(world)
        self.stop.deferred = True
        if self.stop.signum is not None:
            return {"cancelled": True}
        self.t_train = time.monotonic()
        b = spec.batchSize
        while self.step < spec.steps:
            t_step = time.monotonic()
            idx = self.plan.batch(self.step)[world.rank * b : (world.rank + 1) * b]
            lr = float(self.sched.get_last_lr()[0])
            loss, tokens = self.train_step([self.triples[i] for i in idx])
            if not math.isfinite(loss):
                raise ValueError(f"the loss became {loss} at step {self.step + 1}; lower learningRate or use precision fp32")
            if self.step_sleep:
                time.sleep(self.step_sleep)
            self.step += 1
            self.last_loss = loss
            stop_votes, tokens_all = D.sum_across([1.0 if self.stop.signum is not None else 0.0, float(tokens)], world, self.device)
            dt = max(time.monotonic() - t_step, 1e-9)
            self.emit(
                "step",
                step=self.step,
                totalSteps=spec.steps,
                loss=loss,
                learningRate=lr,
                tokensPerSecond=round(tokens_all / dt, 3),
                gpuMemoryBytes=int(torch.cuda.max_memory_allocated(self.device)) if self.device.startswith("cuda") else None,
                elapsedSeconds=round(self.elapsed(), 3),
            )
            if self.kill_after is not None and self.step == self.kill_after and world.is_main:
                os.kill(os.getpid(), signal.SIGKILL)
            if self.step % spec.checkpointEvery == 0 or stop_votes > 0:
                self.checkpoint()
            if stop_votes > 0:
                return {"cancelled": True}
        return self.finish()

    def finish(self) -> dict:
        out = {"cancelled": False, "step": self.step, "finalLoss": self.last_loss, "adapterPath": None, "mergedPath": None,
               "seconds": round(self.elapsed(), 3)}
        if self.world.is_main:
            adapter = self.run_dir / "adapter"
            tmp = self.run_dir / f".adapter.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            self.peft_model.save_pretrained(str(tmp), safe_serialization=True)
            self._install(tmp, adapter)
            out["adapterPath"] = str(adapter)
            if self.spec.mergeAtEnd:
                model_dir = self.run_dir / "model"
                tmp = self.run_dir / f".model.tmp-{os.getpid()}"
                shutil.rmtree(tmp, ignore_errors=True)
                merged = self.peft_model.merge_and_unload()
                if self.grad_ckpt and hasattr(merged, "gradient_checkpointing_disable"):
                    merged.gradient_checkpointing_disable()
                merged.save_pretrained(str(tmp), safe_serialization=True)
                self.enc.tokenizer.save_pretrained(str(tmp))
                _write_json(tmp / "l3prune_encoder.json", {
                    "pooling": self.spec.pooling, "maxLength": self.spec.maxLength, "keep": self.spec.keep,
                    "sourceModel": self.spec.model, "scale": self.spec.scale,
                })
                self._install(tmp, model_dir)
                out["mergedPath"] = str(model_dir)
        D.barrier(self.world)
        if out["finalLoss"] is None:
            out["finalLoss"] = 0.0
        return out

    @staticmethod
    def _install(tmp: Path, final: Path) -> None:
        _fsync_tree(tmp)
        if final.exists():
            _remove_dir(final)
        os.rename(tmp, final)
        _fsync_dir(final.parent)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m l3prune.train ...`); `python -m l3prune train` is the public one."""
    p = argparse.ArgumentParser(prog="python -m l3prune train")
    add_arguments(p)
    return run_cli(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
