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
