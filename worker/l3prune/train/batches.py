"""The order of the data: global batch k of a train run as a pure function of (triples, seed, global batch size, k),
so a resumed run sees exactly the batches an uninterrupted one would."""
from __future__ import annotations

import random

from ..data import DataError, Triple


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
