"""The `train` verb: prune a decoder to its first n layers and train it as a text encoder (LoRA + InfoNCE).

    python -m l3prune train --run-dir DIR [--spec FILE] [flags of protocol/specs/train.schema.json]
    python -m l3prune train --run-dir DIR --resume          # after a cancel, a crash or a kill -9
    torchrun --nproc_per_node=K -m l3prune train ...        # DDP: gloo on CPU, nccl on GPU (--devices cuda:0,1 / cpu:2)

The package: spec.py (where a spec comes from: file and flags, or run.json for --resume), loop.py (the training
loop, which reads top to bottom), batches.py (the data order), checkpoints.py (checkpoint IO and RNG state).
The lifecycle is verbs.py's, as for every verb; train adds three hooks: the folder reopens for --resume, the
device is held for the whole run, and a signal stops the run only after the step in flight and a checkpoint.

Run folder (protocol/run.schema.json, protocol/events.schema.json):
  run.json, events.jsonl         as every verb; the spec in run.json is the full, resolved spec (defaults filled
                                 in, paths absolute), so --resume needs nothing else
  checkpoints/step-00000100/     adapter (safetensors), optimizer (safetensors + json), scheduler, RNG states of
                                 every rank, data position; written to a temp folder, fsynced, then renamed, so a
                                 kill -9 at any moment leaves the previous complete checkpoint; the last 2 are kept
  ranks/<rank>.json, .stderr     under torchrun: each rank's pid and host, and its failure sentence (rank 0's
                                 error names the first rank that failed or died)
  adapter/                       the final LoRA adapter (peft save_pretrained, safetensors)
  model/                         mergeAtEnd: the merged, pruned model (AutoModel.from_pretrained loads it) and
                                 l3prune_encoder.json (protocol/encoder-info.schema.json)
"""
from __future__ import annotations

import argparse
import signal
from pathlib import Path

from .. import distributed as D
from ..data import DataError
from ..encoder import ModelError
from ..verbs import Advice, Cancelled, Job, Outcome, StopFlag, Verb, main_for
from .batches import BatchPlan
from .loop import Trainer, linear_warmup_decay, present_targets, train_device
from .spec import FLAG_FIELDS, SPEC_FIELDS, SPEC_FLAGS, TrainSpec, make_spec, resume_spec, spec_from_args

__all__ = ["VERB", "BatchPlan", "FLAG_FIELDS", "SPEC_FIELDS", "StopFlag", "TrainSpec", "Trainer", "linear_warmup_decay",
           "main", "make_spec", "present_targets", "resume_spec", "spec_from_args"]


def _resolve(args: argparse.Namespace, world) -> TrainSpec:
    return resume_spec(args, check_status=world.is_main) if args.resume else spec_from_args(args)


def _open_folder(job: Job) -> bool:
    if job.args.resume:
        job.run.reopen()
        return True
    job.run.open()
    return False


def _work(spec: TrainSpec, job: Job) -> Outcome:
    trainer = Trainer(spec, job.run_dir, job.world, job.emit, job.stop,
                      kill_after=job.args.debug_kill_after_step, kill_rank=job.args.debug_kill_rank, step_sleep=job.args.debug_step_sleep)
    job.state["trainer"] = trainer
    out = trainer.run(resume=job.args.resume)
    if out["cancelled"]:
        raise Cancelled(job.stop.signum or signal.SIGTERM)
    return Outcome("train_finished", {k: out[k] for k in ("step", "finalLoss", "adapterPath", "mergedPath")},
                   {k: out[k] for k in ("step", "finalLoss", "adapterPath", "mergedPath", "seconds")})


def _advice(job: Job) -> Advice:
    trainer = job.state.get("trainer")
    where = f"at step {trainer.step}" if trainer is not None and trainer.step else "before the first step"
    return Advice(
        out_of_memory="ran out of memory; turn gradientCheckpointing on, set miniBatchSize (the gradient cache) or lower maxLength; `npx l3prune plan MODEL --keep N` says which fits",
        disk_full=(f"the disk holding {Path(job.args.run_dir).resolve()} is full (no space left on device) {where}; "
                   "free some space, then resume the run: it continues from its newest complete checkpoint"),
    )


def _cancelled(job: Job) -> tuple[str, dict]:
    trainer = job.state.get("trainer")
    step = trainer.step if trainer is not None else 0
    ck = trainer.last_checkpoint if trainer is not None else None
    return f" at step {step}" + ("; continue with --resume" if ck else ""), {"step": step, "checkpoint": str(ck) if ck else None}


def _add_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its newest checkpoint")
    # Test hooks: a real kill -9 of this process right after step N's event, and a pause per step.
    t.add_argument("--debug-kill-after-step", type=int, default=None, help=argparse.SUPPRESS)
    t.add_argument("--debug-kill-rank", type=int, default=0, help=argparse.SUPPRESS)
    t.add_argument("--debug-step-sleep", type=float, default=0.0, help=argparse.SUPPRESS)


VERB = Verb(
    name="train",
    help="prune to the first n layers and train as a text encoder (LoRA + contrastive loss); --resume continues a run",
    resolve=_resolve,
    work=_work,
    advice=_advice,
    add_arguments=_add_arguments,
    spec_flags=SPEC_FLAGS,
    user_errors=(DataError, ModelError, ValueError),
    distributed=True,
    # One training per device: two on one GPU would both run out of memory or crawl.
    device=lambda job: D.lock_names(train_device(job.spec, job.world), job.world),
    open_folder=_open_folder,
    cancelled=_cancelled,
)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m l3prune.train ...`); `python -m l3prune train` is the public one."""
    return main_for(VERB, argv)
