"""The training loop: prune a decoder to its first n layers and train it as a text encoder (LoRA + InfoNCE).

The recipe is the paper's (L³Prune, after LLM2Vec's supervised contrastive script, which runs on the Hugging Face
Trainer): LoRA r 16 / alpha 2·r / dropout 0.05 on every attention and MLP projection, weighted-mean pooling,
hard-negative InfoNCE with scale 50, AdamW (lr 2e-4, betas 0.9/0.999, eps 1e-8, no weight decay), gradient
clipping at norm 1.0 (the Trainer's default max_grad_norm), and the Trainer's default schedule,
`get_linear_schedule_with_warmup(opt, warmupSteps, H)`: the learning rate of optimizer step s (0-based) is
    lr * s / warmupSteps                                   for s < warmupSteps
    lr * max(0, (H - s) / (H - warmupSteps))               afterwards
where the horizon H is not the stop step: as in the paper's configs (num_train_epochs 3, a callback stopping at
step 1000), H = scheduleSteps, or ceil(scheduleEpochs x batches per epoch at the global batch size) as the Trainer
derives max_steps from num_train_epochs, and training stops at `steps`. On a large data set H is far past 1000,
so after warm-up the rate stays near its peak. As in the Trainer, the very first step runs at lr 0 when warm-up
is on (docs/fidelity.md lists every choice against the paper's).

Determinism: batch k of the run is a pure function of (data, seed, global batch size, k) (batches.py), so a
resumed run sees the batches an uninterrupted one would; with the RNG states restored too (checkpoints.py), the
loss curves are equal (bit-equal on CPU fp32 in the tests).

Scale-out: under `torchrun --nproc_per_node=K` every process takes batchSize triples of each global batch of
K*batchSize; query, positive and negative embeddings are all-gathered (own slice with gradients), every rank
computes the same full-batch loss, and DDP averages the gradients (the loss is scaled by K before backward so
the averaged gradient is the full-batch gradient). Rank 0 alone writes events and checkpoints.
"""
from __future__ import annotations

import math
import os
import random
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import distributed as D
from .. import specs
from ..data import Triple, batch_texts, read_triples, text_chunks
from ..encoder import Encoder, attention_implementation, find_layers, load_encoder, model_loaded_fields, pool, prune, resolve_device, resolve_precision
from ..flops import gpu_peak_bf16, model_flops_shape, useful_flops_per_token
from ..events import now_iso, owner_pid
from ..fileio import discard_dir, fsync_dir, fsync_tree, make_fresh_dir, write_json_atomic
from ..losses import HardNegativeInfoNCE
from ..variant import ENCODER_INFO
from ..verbs import StopFlag
from .batches import BatchPlan
from .checkpoints import apply_checkpoint, list_checkpoints, read_checkpoint, rng_state, save_checkpoint, set_rng_state, sweep

MAX_GRAD_NORM = 1.0


def schedule_horizon(schedule_steps: int | None, schedule_epochs: float, batches_per_epoch: int) -> int:
    """The decay's horizon in optimizer steps: scheduleSteps, else the Trainer's max_steps for num_train_epochs
    (transformers Trainer: num_update_steps_per_epoch = max(len(dataloader) // grad_accum, 1), max_steps =
    ceil(num_train_epochs * that); our batches are global batches, so there is no accumulation)."""
    if schedule_steps is not None:
        return int(schedule_steps)
    return max(1, math.ceil(schedule_epochs * max(batches_per_epoch, 1)))


def forward_embeddings(enc: Encoder, fwd, texts: list, pooling: str, amp=None) -> tuple[torch.Tensor, dict]:
    """Training's forward: tokenise through enc's text pipeline, run fwd (the LoRA/DDP-wrapped model), pool over
    the embed mask in float32. Returns the (un-normalised) embeddings and the tokenised batch."""
    tok = enc.tokenize(texts)
    inputs = enc.model_inputs(tok)
    with amp if amp is not None else nullcontext():
        out = fwd(**inputs, use_cache=False)
    return pool(out.last_hidden_state.float(), tok["embed_mask"], pooling), tok


def _rng_snapshot(device: str) -> tuple:
    """The generator states dropout draws from (CPU, and the device's on CUDA)."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.startswith("cuda") else None


def _rng_restore(state: tuple, device: str) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def linear_warmup_decay(warmup: int, total: int) -> Callable[[int], float]:
    """transformers.get_linear_schedule_with_warmup's multiplier (the schedule of the paper's Trainer run); total
    is the horizon (schedule_horizon), not the stop step."""

    def f(s: int) -> float:
        if s < warmup:
            return s / max(1, warmup)
        return max(0.0, (total - s) / max(1, total - warmup))

    return f


def train_device(spec, world: D.World) -> str:
    """The spec's device (or its devices) as every verb resolves it; under torchrun each process takes its own GPU."""
    D.check_launch(spec.devices, world)
    wanted = D.wanted_device(spec.device, spec.devices, world)
    return resolve_device(wanted, local_rank=world.local_rank if world.distributed else None)


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
    """One train run in one process: setup, then run() (which restores, loops, checkpoints and finishes)."""

    def __init__(self, spec, run_dir: Path, world: D.World, emit, stop: StopFlag, *, kill_after=None, kill_rank=0, step_sleep=0.0):
        self.spec = spec
        self.run_dir = run_dir.resolve()
        self.world = world
        self.emit = emit
        self.stop = stop
        self.kill_after = kill_after
        self.kill_rank = kill_rank
        self.step_sleep = step_sleep
        self.step = 0
        self.last_checkpoint: Path | None = None
        self.last_loss: float | None = None
        self.elapsed_before = 0.0

    # -- setup: data, model pruned to keep layers, LoRA, optimizer, schedule ------------------------------------
    def setup(self) -> None:
        spec, world = self.spec, self.world
        self.device = train_device(spec, world)
        D.init(world, self.device)
        self.precision = resolve_precision(spec.precision, self.device)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.triples = read_triples(spec.data, spec.dataColumns)
        self.plan = BatchPlan(self.triples, spec.batchSize * world.size, spec.seed, spec.taskHomogeneous, source=f"data file {spec.data}")
        self.per_rank = spec.batchSize
        t0 = time.monotonic()
        random.seed(spec.seed)
        np.random.seed(spec.seed % 2**32)
        torch.manual_seed(spec.seed)
        # Loaded on the CPU and pruned there: the accelerator only ever holds the kept layers (an 8B model cut to
        # 25 layers never puts its 32 on a 24 GB card), which is what the resource planner counts.
        self.attention = attention_implementation(self.device, dtype)
        enc = load_encoder(spec.model, device="cpu", max_length=spec.maxLength, trust_remote_code=spec.trustRemoteCode, dtype=dtype,
                           chat_template=spec.chatTemplate, attn_implementation=self.attention)
        original = enc.num_layers
        if spec.keep > original:
            raise ValueError(f"keep is {spec.keep} but the model has only {original} layers; choose 1..{original}")
        prune(enc.model, spec.keep)
        if self.device != "cpu":
            enc.model.to(self.device)
            enc.device = self.device
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
        # MFU of each step (flops.py, the planner's count): on a CUDA device in bf16 whose peak the table knows.
        self.flops_shape = model_flops_shape(self.peft_model, find_layers(self.peft_model)[2])
        peak = gpu_peak_bf16(torch.cuda.get_device_name(self.device)) if self.device.startswith("cuda") and self.precision == "bf16" else None
        self.peak_flops = peak[1] if peak else None
        # Fused AdamW on CUDA: one kernel for every LoRA tensor instead of a loop of small ones (same update).
        self.opt = torch.optim.AdamW(self.params, lr=spec.learningRate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                     fused=self.device.startswith("cuda"))
        self.horizon = schedule_horizon(spec.scheduleSteps, spec.scheduleEpochs, self.plan.per_epoch)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, linear_warmup_decay(spec.warmupSteps, self.horizon))
        self.loss_fn = HardNegativeInfoNCE(spec.scale)
        self.emit("model_loaded", **model_loaded_fields(
            self.peft_model, num_layers=spec.keep, load_seconds=time.monotonic() - t0, originalNumLayers=original,
            trainableParams=sum(p.numel() for p in self.params), scheduleSteps=self.horizon, totalParams=sum(p.numel() for p in self.peft_model.parameters()),
            device=self.device, precision=self.precision, gradientCheckpointing=self.grad_ckpt, targetModules=targets,
            attention=self.attention,
            worldSize=world.size,
        ))

    def wrap(self) -> None:
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.world.local_rank] if self.device.startswith("cuda") else None
            self.fwd = DDP(self.peft_model, device_ids=ids)
        else:
            self.fwd = self.peft_model

    # -- checkpoints -------------------------------------------------------------------------------------------
    def restore(self) -> Path | None:
        """Load the newest complete checkpoint that reads back whole; returns it (None: start at step 0)."""
        for _, ck in list_checkpoints(self.run_dir / "checkpoints"):
            try:
                c = read_checkpoint(ck)
            except Exception:  # noqa: BLE001 - a damaged checkpoint: fall back to the one before
                continue
            st = c["state"]
            if st.get("worldSize", 1) != self.world.size:
                self.regroup(ck.name, int(st.get("globalBatchSize") or self.spec.batchSize * int(st.get("worldSize", 1))))
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

    def regroup(self, name: str, global_batch: int) -> None:
        """Resume on another number of processes: the data position is a global batch index, so the global batch
        stays what the run started with and each process takes its new share of it (batchSize in run.json remains
        the first launch's per-process value)."""
        if global_batch % self.world.size:
            raise ValueError(
                f"checkpoint {name} was trained at a global batch of {global_batch}, which {self.world.size} processes cannot share "
                f"evenly; resume with a number of processes that divides {global_batch}"
            )
        self.per_rank = global_batch // self.world.size
        self.plan = BatchPlan(self.triples, global_batch, self.spec.seed, self.spec.taskHomogeneous, source=f"data file {self.spec.data}")

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

    # -- the loop ----------------------------------------------------------------------------------------------
    def run(self, *, resume: bool) -> dict:
        """Train to spec.steps (from the newest checkpoint when resuming); {"cancelled": True} when a signal
        stopped it after a step and its checkpoint."""
        spec, world = self.spec, self.world
        if world.is_main:
            sweep(self.run_dir)
        self.setup()
        if resume:
            self.last_checkpoint = ck = self.restore()
            self.emit("resumed", step=self.step, checkpoint=str(ck) if ck else None, pid=owner_pid())
        self.wrap()
        D.clear_ranks(self.run_dir, world)
        D.barrier(world)
        D.register_rank(self.run_dir, world)
        # From here a signal stops the run after the step in flight and a checkpoint, so --resume loses nothing.
        self.stop.deferred = True
        if self.stop.signum is not None:
            return {"cancelled": True}
        self.t_train = time.monotonic()
        b = self.per_rank
        while self.step < spec.steps:
            t_step = time.monotonic()
            # data: this process's share of global batch k
            idx = self.plan.batch(self.step)[world.rank * b : (world.rank + 1) * b]
            lr = float(self.sched.get_last_lr()[0])
            # forward, loss, backward, clip, step (train_step)
            loss, tokens = self.train_step([self.triples[i] for i in idx])
            if not math.isfinite(loss):
                raise ValueError(f"the loss became {loss} at step {self.step + 1}; lower learningRate or use precision fp32")
            if self.step_sleep:
                time.sleep(self.step_sleep)
            self.step += 1
            self.last_loss = loss
            # log: the stop vote and the token count summed over ranks, one step event
            stop_votes, tokens_all = D.sum_across([1.0 if self.stop.signum is not None else 0.0, float(tokens)], world, self.device)
            dt = max(time.monotonic() - t_step, 1e-9)
            self.emit(
                "step",
                step=self.step,
                totalSteps=spec.steps,
                loss=loss,
                learningRate=lr,
                tokensPerSecond=round(tokens_all / dt, 3),
                mfu=self.mfu(tokens_all, 3 * len(idx) * world.size, dt),
                gpuMemoryBytes=int(torch.cuda.max_memory_allocated(self.device)) if self.device.startswith("cuda") else None,
                rssBytes=process_rss_bytes(),
                elapsedSeconds=round(self.elapsed(), 3),
            )
            if self.kill_after is not None and self.step == self.kill_after and world.rank == self.kill_rank:
                os.kill(os.getpid(), signal.SIGKILL)
            # checkpoint: every checkpointEvery steps, and before stopping for a signal
            if self.step % spec.checkpointEvery == 0 or stop_votes > 0:
                self.checkpoint()
            if stop_votes > 0:
                return {"cancelled": True}
        return self.finish()

    def mfu(self, tokens: float, texts: int, seconds: float) -> float | None:
        """Useful FLOPs per second over the devices' dense bf16 peak; None where no peak applies (CPU, fp32, an
        unknown GPU). Attention is counted at the step's mean tokens per text."""
        if self.peak_flops is None or not texts:
            return None
        per_token = useful_flops_per_token("train", seq=tokens / texts, **self.flops_shape)
        return round(per_token * tokens / seconds / (self.peak_flops * self.world.size), 4)

    def train_step(self, batch: list[Triple]) -> tuple[float, int]:
        """One optimizer step on one process's triples; returns the (global) loss and this process's real tokens."""
        loss, tokens = self.accumulate_gradients(batch)
        # clip
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        # step
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return loss, tokens

    def accumulate_gradients(self, batch: list[Triple]) -> tuple[float, int]:
        """Forward, loss and backward of one step: the LoRA parameters' .grad holds the full-batch gradient.

        Queries, positives and negatives are encoded as three groups, each padded to its own longest text (as the
        paper's code and sentence-transformers do), so short queries do not pay for long documents. With
        miniBatchSize M below the batch, the gradient cache (Gao et al. 2021, "Scaling Deep Contrastive Learning
        Batch Size under Memory Limited Setup"): every chunk of M texts is embedded without a graph, the loss and
        its gradient with respect to the embeddings are computed over the whole batch, then each chunk is encoded
        again with its graph and back-propagates its slice of that gradient. Each chunk's RNG state is replayed, so
        LoRA dropout draws the same masks in both passes and the gradient is the one of the whole batch at once.
        Peak activation memory is then that of M texts, whatever the batch."""
        b = len(batch)
        m = self.spec.miniBatchSize or b
        chunks = text_chunks(batch_texts(batch), 3, m)
        amp = torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
        pooling = self.spec.pooling
        cache = m < b
        # Without a cache: one graph per group, kept until the loss's backward. With it, pass 1: every chunk's
        # embeddings without a graph (through the bare model: no gradient flows, so DDP has nothing to
        # synchronise), and the RNG state each chunk started from.
        states, embs, tokens = [], [], 0
        with torch.no_grad() if cache else nullcontext():
            for chunk in chunks:
                if cache:
                    states.append(_rng_snapshot(self.device))
                e, tok = forward_embeddings(self.enc, self.peft_model if cache else self.fwd, chunk, pooling, amp)
                embs.append(e)
                tokens += int(tok["attention_mask"].sum())
        if not cache:
            loss = self._loss_backward(torch.cat(embs))
            return float(loss.detach()), tokens
        after = _rng_snapshot(self.device)
        cached = torch.cat(embs).requires_grad_(True)
        loss = self._loss_backward(cached)
        grads = cached.grad.split([len(c) for c in chunks])
        # pass 2: each chunk again, with its graph, back-propagating its slice of d(loss)/d(embeddings); DDP
        # averages the gradients once, on the last chunk.
        for i, (chunk, grad) in enumerate(zip(chunks, grads)):
            _rng_restore(states[i], self.device)
            sync = self.world.distributed and i < len(chunks) - 1
            with self.fwd.no_sync() if sync else nullcontext():
                e, _ = forward_embeddings(self.enc, self.fwd, chunk, pooling, amp)
                e.backward(grad)
        _rng_restore(after, self.device)
        return float(loss.detach()), tokens

    def _loss_backward(self, emb: torch.Tensor) -> torch.Tensor:
        """Hard-negative InfoNCE over the global batch of (queries; positives; negatives) embeddings, and its
        backward; other ranks' embeddings arrive as constants, and DDP averages gradients over ranks, so the loss is
        scaled by the world size: each rank's gradient is its share of the full-batch loss's gradient."""
        q, p, n = (D.gather_with_grad(x, self.world) for x in emb.chunk(3))
        loss = self.loss_fn(q, p, n)
        (loss * self.world.size).backward()
        return loss

    # -- the result: adapter/ and, with mergeAtEnd, model/ -----------------------------------------------------
    def finish(self) -> dict:
        out = {"cancelled": False, "step": self.step, "finalLoss": self.last_loss, "adapterPath": None, "mergedPath": None,
               "seconds": round(self.elapsed(), 3)}
        if self.world.is_main:
            adapter = self.run_dir / "adapter"
            tmp = self.run_dir / f".adapter.tmp-{os.getpid()}"
            # save_pretrained writes into whatever is there: a link under the name must fail, not be followed.
            make_fresh_dir(tmp)
            self.peft_model.save_pretrained(str(tmp), safe_serialization=True)
            self._install(tmp, adapter)
            out["adapterPath"] = str(adapter)
            if self.spec.mergeAtEnd:
                model_dir = self.run_dir / "model"
                tmp = self.run_dir / f".model.tmp-{os.getpid()}"
                make_fresh_dir(tmp)
                merged = self.peft_model.merge_and_unload()
                if self.grad_ckpt and hasattr(merged, "gradient_checkpointing_disable"):
                    merged.gradient_checkpointing_disable()
                merged.save_pretrained(str(tmp), safe_serialization=True)
                self.enc.tokenizer.save_pretrained(str(tmp))
                # protocol/encoder-info.schema.json: what evaluate and export-onnx read back from a merged model.
                info = {"pooling": self.spec.pooling, "maxLength": self.spec.maxLength, "keep": self.spec.keep,
                        "sourceModel": self.spec.model, "scale": self.spec.scale}
                problems = specs.errors("encoder-info", info)
                if problems:
                    raise RuntimeError(f"{ENCODER_INFO} would not match protocol/encoder-info.schema.json ({problems[0]})")
                write_json_atomic(tmp / ENCODER_INFO, info)
                self._install(tmp, model_dir)
                out["mergedPath"] = str(model_dir)
        D.barrier(self.world)
        if out["finalLoss"] is None:
            out["finalLoss"] = 0.0
        return out

    @staticmethod
    def _install(tmp: Path, final: Path) -> None:
        fsync_tree(tmp)
        if final.exists():
            discard_dir(final)
        os.rename(tmp, final)
        fsync_dir(final.parent)


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0


def process_rss_bytes() -> int | None:
    """This process's resident set size, the memory chart of a CPU run (gpuMemoryBytes is null there). Read from
    /proc rather than psutil, which the worker does not depend on; None where /proc is missing (macOS, Windows)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE_BYTES or None
    except (OSError, ValueError, IndexError):
        return None
