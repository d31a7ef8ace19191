"""Accuracy evaluations spread over the processes of a ``torchrun`` group."""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from nas.space.arch import Arch

__all__ = ["DistributedAccuracy"]


class DistributedAccuracy:
    """``accuracy_many(archs)`` whose work is shared by every process of a torch.distributed group.

    Rank 0 runs the search and calls the object; every other rank calls :meth:`serve`, which waits for
    lists of architectures (broadcast by rank 0), evaluates its share (every ``world``-th one) and
    gathers the results back, until rank 0 calls :meth:`close`. With one process it simply loops.
    ``fns`` maps a name to an accuracy function (e.g. the search's held-out split and a final one);
    ``__call__(archs, which=...)`` picks one. A function returns a number (gathered as a float) or a
    per-image vector (a tensor or array, gathered as a numpy array, e.g.
    :meth:`~nas.supernet.evaluate.SubnetEvaluator.correct` for paired comparisons). ``progress`` shows
    a bar (stderr) for long lists on rank 0.
    """

    def __init__(self, fns: dict[str, Callable[[Arch], Any]] | Callable[[Arch], Any], progress: bool = True):
        self.fns = fns if isinstance(fns, dict) else {"search": fns}
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.progress = progress

    def _share(self, archs: Sequence[Arch], which: str) -> list:
        fn = self.fns[which]
        mine = range(self.rank, len(archs), self.world)
        it = mine
        if self.progress and self.rank == 0 and len(archs) >= 2 * self.world + 1:
            here = f" ({len(mine)} on this process)" if self.world > 1 else ""
            it = tqdm(mine, desc=f"evaluating {len(archs)} subnets{here}", unit="net", leave=False,
                      file=sys.stderr, dynamic_ncols=True)
        local = {i: _portable(fn(archs[i])) for i in it}
        if self.world == 1:
            return [local[i] for i in range(len(archs))]
        parts: list = [None] * self.world
        dist.all_gather_object(parts, local)
        merged = {k: v for p in parts for k, v in p.items()}
        return [merged[i] for i in range(len(archs))]

    def __call__(self, archs: Sequence[Arch], which: str = "search") -> list:
        """The results of ``fns[which]`` for ``archs``, in order (floats, or numpy vectors)."""
        if self.world > 1:
            dist.broadcast_object_list([(which, [a.to_dict() for a in archs])], src=0)
        return self._share(archs, which)

    def serve(self) -> None:
        """On a rank other than 0: evaluate shares of what rank 0 sends until it calls :meth:`close`."""
        while True:
            payload = [None]
            dist.broadcast_object_list(payload, src=0)
            if payload[0] is None:
                return
            which, archs = payload[0]
            self._share([Arch.from_dict(d) for d in archs], which)

    def close(self) -> None:
        """On rank 0: release the other ranks from :meth:`serve`."""
        if self.world > 1 and self.rank == 0:
            dist.broadcast_object_list([None], src=0)


def _portable(value: Any) -> float | np.ndarray:
    """A result as it is gathered: a per-image vector as a numpy array on the CPU, a number as a float."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy() if value.dim() else value.item()
    if isinstance(value, np.ndarray) and value.ndim:
        return value
    return float(value)
