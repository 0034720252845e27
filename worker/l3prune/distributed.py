"""Scale-out under `torchrun --nproc_per_node=K`: process group, rank helpers, all_gather with gradients.

Nothing here runs unless torchrun (or any launcher that sets WORLD_SIZE/RANK/LOCAL_RANK/MASTER_ADDR) started the
process; a plain `python -m l3prune train` is a world of one and every helper is then a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> World:
    """The world torchrun describes in the environment (a world of one without it)."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return World()
    return World(rank=int(os.environ.get("RANK", "0")), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: str) -> None:
    """Join the process group: gloo on CPU, nccl on CUDA (one GPU per process, cuda:LOCAL_RANK)."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend=backend)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.barrier()


def gather_with_grad(t: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate every rank's (B, D) tensor in rank order; the local slice keeps its autograd graph.

    As in the paper's loss (LLM2Vec's HardNegativeNLLLoss): the other ranks' embeddings arrive as constants,
    the own part is the live tensor, so backward yields d(loss)/d(own embeddings) through the own encoder.
    Every rank then computes the same full-batch loss. Sizes must match across ranks (the sampler guarantees it).
    """
    if not world.distributed:
        return t
    parts = [torch.empty_like(t) for _ in range(world.size)]
    dist.all_gather(parts, t.detach().contiguous())
    parts[world.rank] = t
    return torch.cat(parts, dim=0)


def sum_across(values: list[float], world: World, device: str) -> list[float]:
    """All-reduce (sum) a few floats; used once per step for the stop flag and the token count."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_objects(obj, world: World) -> list:
    """Every rank's picklable object, on every rank (small things only: RNG states)."""
    if not world.distributed:
        return [obj]
    out: list = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, world: World):
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# -- the spec's `devices`: how many processes a node runs, and which physical devices they hold ---------------

def processes_of(devices: str) -> int | None:
    """Processes per node that `devices` asks for; None for `all` (the launcher counts the CUDA devices) and for
    `auto`, which leaves the count to whoever launched (a torchrun by hand trains as it always did)."""
    if devices in ("all", "auto"):
        return None
    if devices.startswith("cpu:"):
        return int(devices[4:])
    if devices.startswith("cuda:"):
        return len(devices[5:].split(","))
    return 1


def local_size(world: World) -> int:
    """Processes on this node: torchrun's LOCAL_WORLD_SIZE (a one-node launch without it: the world)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0) or world.size


def check_launch(devices: str, world: World) -> None:
    """A launch by hand that does not match `devices` would train with another global batch than the one asked for."""
    want = processes_of(devices)
    have = local_size(world)
    if want is not None and want != have:
        raise ValueError(
            f"devices {devices} asks for {want} process(es) on this node but this launch started {have}; launch with "
            f"`python -m torch.distributed.run --nproc_per_node={want} -m l3prune train …` (the extension does), or change devices"
        )


def wanted_device(spec_device: str, devices: str, world: World) -> str:
    """The device string this process computes on, before resolve_device: `devices` wins over `device` when set."""
    if devices == "auto":
        return spec_device
    if devices.startswith("cpu"):
        return "cpu"
    if not world.distributed and devices.startswith("cuda:") and "," not in devices:
        # One GPU without torchrun: the named one, unless the launcher already narrowed CUDA_VISIBLE_DEVICES to it.
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return "cuda:0" if visible is not None and visible.strip() == devices[5:] else devices
    return "cuda"


def lock_names(device: str, world: World) -> list[str]:
    """The devices local rank 0 locks for the whole node, named as the machine knows them (CUDA_VISIBLE_DEVICES
    maps this process's cuda:i to a physical index), so two runs that see different subsets still collide.
    Other ranks lock nothing: one holder per node puts a refusal on the main node into run.json, not a torn launch."""
    if world.local_rank != 0:
        return []
    if not device.startswith("cuda"):
        return [device]
    n = local_size(world) if world.distributed else 1
    first = int(device.split(":")[1]) if ":" in device else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    out = []
    for i in range(first, first + n):
        physical = visible[i] if i < len(visible) else str(i)
        out.append(f"cuda:{physical}")
    return out


# -- a rank that dies: its last words in the run folder, and rank 0's sentence naming it ----------------------
# Only rank 0 writes run.json and events.jsonl; each rank writes its own ranks/<rank>.json (pid, host) once the
# group has formed and ranks/<rank>.stderr when it fails, so the run's error can name the rank that stopped first.

def _ranks_dir(run_dir) -> "os.PathLike":
    from pathlib import Path

    return Path(run_dir) / "ranks"


def clear_ranks(run_dir, world: World) -> None:
    """Rank 0, before the group's first barrier: a resumed run's old ranks/ (another count, an earlier failure)
    must not name a rank of this attempt."""
    if not world.distributed or not world.is_main:
        return
    d = _ranks_dir(run_dir)
    if d.is_dir() and not d.is_symlink():
        for p in d.iterdir():
            if p.is_file() and not p.is_symlink() and p.suffix in (".json", ".stderr"):
                p.unlink(missing_ok=True)


def register_rank(run_dir, world: World) -> None:
    if not world.distributed:
        return
    import json
    import socket

    d = _ranks_dir(run_dir)
    d.mkdir(exist_ok=True)
    (d / f"{world.rank}.json").write_text(json.dumps({"rank": world.rank, "pid": os.getpid(), "host": socket.gethostname()}))


def rank_say(run_dir, world: World):
    """The `say` of a rank > 0: its sentence on its stderr (torchrun's log) and in ranks/<rank>.stderr."""

    def say(message: str) -> None:
        import sys

        print(f"l3prune: rank {world.rank}: {message}", file=sys.stderr, flush=True)
        try:
            d = _ranks_dir(run_dir)
            if d.is_dir():
                with open(d / f"{world.rank}.stderr", "a", encoding="utf-8") as fh:
                    fh.write(message.rstrip() + "\n")
        except OSError:
            pass  # the sentence is still on stderr

    return say


def peer_failure(run_dir, world: World) -> str | None:
    """Rank 0's account of a collective that broke because another rank stopped: the first rank that wrote its
    error, else a rank on this host whose process is gone; None when no rank is known to have stopped."""
    import json
    import socket

    if not world.distributed or world.rank != 0:
        return None
    d = _ranks_dir(run_dir)
    if not d.is_dir():
        return None
    said = sorted((p for p in d.glob("*.stderr") if p.stem.isdigit()), key=lambda p: p.stat().st_mtime)
    for p in said:
        lines = [line for line in p.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        if lines:
            return f"rank {p.stem} failed: {lines[-1]} (ranks/{p.name} in the run folder)"
    host = socket.gethostname()
    peers = []
    for p in sorted(d.glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0):
        try:
            info = json.loads(p.read_text(encoding="utf-8"))
            peers.append((int(info["rank"]), int(info["pid"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if info.get("host") != host or peers[-1][0] == 0:
            peers.pop()
    # The broken connection can arrive while the killed rank is still being torn down: give it a moment to be gone.
    import time

    deadline = time.monotonic() + 3.0
    while peers:
        for rank, pid in peers:
            if _dead(pid):
                return (f"rank {rank} (pid {pid}) died without a word (killed by a signal: out of host memory, or "
                        f"kill -9); resume the run to continue from its newest checkpoint")
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return None


def _dead(pid: int) -> bool:
    """Gone, or a zombie torchrun has not reaped yet (it polls its workers, so a dead rank lingers a moment)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].startswith("Z")
