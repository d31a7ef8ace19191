"""The sandwich rule with in-place distillation, and the optimiser set-up of supernet training.

Every step trains the largest subnet on the labels and the smallest plus ``num_random`` random subnets
on the largest one's soft labels (KL divergence), with one backward pass over the summed loss. AdamW
over :func:`param_groups`, linear warm-up then cosine decay (:func:`lr_schedule`).
"""
from __future__ import annotations

import contextlib
import math
import random
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas.space.spaces import Arch, SearchSpace
from nas.supernet.supernet import SlimmableSupernet
from nas.training.precision import Precision

__all__ = ["sandwich_archs", "SandwichLoss", "sandwich_step", "param_groups", "lr_schedule"]


def sandwich_archs(space: SearchSpace, seed: int, step: int, num_random: int) -> list[tuple[str, Arch]]:
    """max, min and ``num_random`` random subnets for ``step``: the same on every rank and on resume."""
    rng = random.Random(f"sandwich:{seed}:{step}")
    return ([("max", space.max_arch()), ("min", space.min_arch())]
            + [(f"rand{i}", space.sample(rng)) for i in range(num_random)])


class SandwichLoss(nn.Module):
    """One forward over every subnet of a step: CE on the largest, KL to its (detached) soft labels for
    the rest. Returns ``(total, per-subnet losses)``; a single module call keeps DDP's bookkeeping of
    which parameters took part exact."""

    def __init__(self, net: SlimmableSupernet, label_smoothing: float = 0.1):
        super().__init__()
        self.net, self.label_smoothing = net, label_smoothing

    def forward(self, x, y, archs: list[tuple[str, Arch]]):
        losses = []
        soft = None
        for kind, arch in archs:
            self.net.set_active(arch)
            out = self.net(x).float()                 # losses in float32 under autocast too
            if soft is None:
                losses.append(F.cross_entropy(out, y, label_smoothing=self.label_smoothing))
                soft = out.detach().softmax(-1)
            else:
                losses.append(F.kl_div(out.log_softmax(-1), soft, reduction="batchmean"))
        parts = torch.stack(losses)
        return parts.sum(), parts.detach()


def sandwich_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, archs: list[tuple[str, Arch]], *,
                  precision: Precision, scaler: "torch.amp.GradScaler | None" = None, accum_steps: int = 1,
                  no_sync: Callable[[], contextlib.AbstractContextManager] | None = None) -> torch.Tensor:
    """Forward and backward of one sandwich step (the optimizer step is the caller's): the batch is split
    into ``accum_steps`` micro-batches whose gradients add up to the whole batch's (each loss is divided
    by ``accum_steps``); ``no_sync`` (DDP's) skips the gradient all-reduce of all but the last one.
    Returns the per-subnet losses, averaged over the micro-batches (detached)."""
    xs, ys = x.chunk(accum_steps), y.chunk(accum_steps)
    parts = []
    for i, (xi, yi) in enumerate(zip(xs, ys)):
        sync = no_sync is None or i == len(xs) - 1
        with contextlib.nullcontext() if sync else no_sync():
            with precision.autocast():
                total, p = model(xi, yi, archs)
            loss = total / len(xs)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        parts.append(p)
    return torch.stack(parts).mean(0)


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on weights, none on norms, biases and attention biases."""
    decay, no_decay = [], []
    for n, p in net.named_parameters():
        (no_decay if p.ndim <= 1 or "attention_biases" in n else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_schedule(steps: int, warmup: int, lr: float, min_lr: float) -> Callable[[int], float]:
    """The learning-rate factor of ``step`` for :class:`torch.optim.lr_scheduler.LambdaLR`: linear
    warm-up over ``warmup`` steps, then cosine decay from ``lr`` to ``min_lr`` at ``steps``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return (min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))) / lr
    return factor
