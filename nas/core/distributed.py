"""torch.distributed set-up shared by training and search: one process per ``torchrun`` rank, nccl on GPUs,
gloo on CPUs; a plain ``python`` run is a group of one without any process group."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["init_distributed"]


def init_distributed() -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``, initialising the process group when ``WORLD_SIZE`` > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device
