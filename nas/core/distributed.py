"""torch.distributed set-up shared by training and search: one process per ``torchrun`` rank, nccl on GPUs,
gloo on CPUs; a plain ``python`` run is a group of one without any process group."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "launch", "local_cores"]


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


def local_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                                   # macOS, Windows
        return os.cpu_count() or 1


def launch(fn, *args, nproc: int):
    """Run ``fn(*args)`` in ``nproc`` processes on this machine under torchrun's own launcher
    (``torch.distributed.launcher``, the engine behind ``torchrun --standalone``), each with the
    ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` environment :func:`init_distributed` reads; ``nproc`` 1 calls
    ``fn`` here. ``fn`` must be importable by name (a module-level function). Returns rank 0's result; a
    failed worker raises ``torch.distributed.elastic.multiprocessing.errors.ChildFailedError``."""
    if nproc <= 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return fn(*args)
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", run_id=f"effv2-nas-{os.getpid()}", max_restarts=0,
                          monitor_interval=1.0)
    env = os.environ.get("OMP_NUM_THREADS")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        return elastic_launch(config, fn)(*args)[0]
    finally:
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
