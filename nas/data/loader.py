"""Batches for training and evaluation through :class:`torch.utils.data.DataLoader`, with worker processes.

Training (:class:`TrainStream`): :class:`StepSampler` turns :class:`~nas.data.datasets.ShardedOrder` into
one key per step -- this rank's image indices and their positions in the global order -- for steps
``start .. stop - 1``; a worker turns a key into the whole batch. The order, and every image's
augmentation (seeded by ``(seed, position)``), are functions of the step, so the batches do not depend on
the number of workers, and a run resumed at step ``k`` reads exactly the batches an uninterrupted run
reads from ``k`` on; under ``torchrun`` each rank reads only its share. In-memory sets
(:class:`~nas.data.datasets.ImageSet`) keep their ±``shift`` px translations; image folders
(:class:`~nas.data.folder.ImageFolder`) get :class:`~nas.data.transforms.TrainTransform` (random-resized
crop, flip, optional RandAugment). Batch-level mixup / cutmix, if asked for, is applied after.

Evaluation (:func:`eval_batches`): deterministic, unshuffled ``(x, y)`` batches (resize and centre crop
for folders).

A file that cannot be decoded is dropped from its batch in the worker and counted: the first one is
logged with its name and reason, then one line per epoch (training) or per pass (evaluation) gives the
count. It never stops a run, unless every image of a batch fails.
"""
from __future__ import annotations

import logging
import os
import random
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nas.core.errors import UserError
from nas.data.datasets import ImageSet, ShardedOrder, to_input
from nas.data.folder import ImageFolder
from nas.data.transforms import EvalTransform, Mixup, RandAugment, TrainTransform, normalize

__all__ = ["StepKey", "StepSampler", "TrainStream", "eval_batches", "default_workers", "resolve_workers",
           "UnreadableBatch", "MAX_DEFAULT_WORKERS"]

log = logging.getLogger(__name__)

MAX_DEFAULT_WORKERS = 4


class UnreadableBatch(UserError, RuntimeError):
    """Not one image of a batch could be decoded (the message names one and says what to check)."""


def default_workers(data: ImageSet | ImageFolder) -> int:
    """0 (read in the training process) for an in-memory set; for a folder ``min(4, cores)``, the cores
    this process may use shared among the processes ``torchrun`` started on this machine."""
    if isinstance(data, ImageSet):
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:                                   # not on Linux
        cores = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(MAX_DEFAULT_WORKERS, cores // local))


def resolve_workers(num_workers: int | None, data: ImageSet | ImageFolder) -> int:
    """``num_workers``, or :func:`default_workers` when it is None."""
    return default_workers(data) if num_workers is None else int(num_workers)


# -- keys: what each step reads ------------------------------------------------------------------------
class StepKey(NamedTuple):
    """One rank's share of global step ``step``: dataset ``indices`` at global ``positions``."""
    step: int
    indices: tuple[int, ...]
    positions: tuple[int, ...]


class StepSampler(Sampler):
    """The :class:`StepKey` of every step ``start .. stop - 1`` for ``order``'s rank (a pure function of
    ``(order, step)``: resuming at ``start`` continues the same sequence)."""

    def __init__(self, order: ShardedOrder, start: int, stop: int):
        if not 0 <= start <= stop:
            raise ValueError(f"need 0 <= start <= stop, got start={start}, stop={stop}")
        self.order, self.start, self.stop = order, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[StepKey]:
        for step in range(self.start, self.stop):
            yield StepKey(step, tuple(self.order.indices(step).tolist()),
                          tuple(self.order.positions(step).tolist()))


def _aug_rng(seed: int, position: int) -> random.Random:
    return random.Random(f"aug:{seed}:{position}")


def _read_all(data: ImageFolder, indices, transform, rngs) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Decode and transform ``data``'s images at ``indices``; ``(uint8 x, int64 y, [(path, why)] skipped)``."""
    xs, ys, skipped = [], [], []
    for i, rng in zip(indices, rngs):
        try:
            xs.append(transform(data.read(i), rng))
            ys.append(data.label(i))
        except Exception as e:            # corrupt, truncated, not an image, unreadable: dropped, counted
            skipped.append((data.path(i), f"{type(e).__name__}: {e}"))
    size = getattr(transform, "size", 0)
    x = torch.stack(xs) if xs else torch.empty(0, 3, size, size, dtype=torch.uint8)
    return x, torch.tensor(ys, dtype=torch.int64), skipped


class _TrainBatches(Dataset):
    """Map-style over :class:`StepKey`: the key's whole batch, ``(x, y, skipped)``."""

    def __init__(self, data, order: ShardedOrder, img_size: int, shift: int, transform: TrainTransform | None):
        self.data, self.order, self.img_size, self.shift, self.transform = data, order, img_size, shift, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: StepKey):
        idx = torch.tensor(key.indices, dtype=torch.int64)
        if isinstance(self.data, ImageSet):
            x = to_input(self.data.images[idx], self.img_size, self.order.shifts(key.step, self.shift))
            return x, self.data.labels[idx], []
        rngs = [_aug_rng(self.order.seed, p) for p in key.positions]
        return _read_all(self.data, key.indices, self.transform, rngs)


class _EvalBatches(Dataset):
    def __init__(self, data: ImageFolder, transform: EvalTransform):
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, indices: tuple[int, ...]):
        return _read_all(self.data, indices, self.transform, [None] * len(indices))


def _keep(sample):
    return sample


def _example(skipped: list) -> str:
    path, why = skipped[0]
    return f"{path} ({why})"


# -- training ----------------------------------------------------------------------------------------------
class TrainStream:
    """The training batches of one rank, ``batch(step)`` for consecutive steps, read ahead by ``workers``
    processes (0: in this process).

    ``data``: an :class:`~nas.data.datasets.ImageSet` (translated by up to ``shift`` native pixels) or an
    :class:`~nas.data.folder.ImageFolder` (random-resized crop to ``img_size``, flip, and RandAugment at
    magnitude ``randaug`` if above 0). ``mixup`` / ``cutmix`` (Beta alphas, 0: off) mix each batch; the
    targets are then float ``B x num_classes`` distributions instead of class indices. Batches come back
    on ``device``, normalised. Reading the steps in order uses one loader from the first step to
    ``stop``; asking for another step starts a new one there. :meth:`close` stops the workers.
    """

    def __init__(self, data: ImageSet | ImageFolder, order: ShardedOrder, img_size: int, stop: int, *,
                 workers: int = 0, shift: int = 0, randaug: float = 0, mixup: float = 0.0, cutmix: float = 0.0,
                 device: str | torch.device = "cpu"):
        self.data, self.order, self.img_size, self.stop = data, order, img_size, stop
        self.workers, self.device = workers, torch.device(device)
        transform = None
        if isinstance(data, ImageFolder):
            transform = TrainTransform(img_size, randaug=RandAugment(randaug) if randaug > 0 else None)
        self.dataset = _TrainBatches(data, order, img_size, shift, transform)
        self.mix = Mixup(mixup, cutmix)
        self.skipped = 0                       # images dropped since this stream was made
        self._it = None
        self._next = None
        self._epoch = None
        self._epoch_skipped = 0
        self._example = ""

    def loader(self, start: int) -> DataLoader:
        """The loader of steps ``start .. stop - 1`` (yields ``(x, y, skipped)`` as the workers made them)."""
        return DataLoader(self.dataset, batch_size=None, sampler=StepSampler(self.order, start, self.stop),
                          num_workers=self.workers, collate_fn=_keep, pin_memory=self.device.type == "cuda")

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``step`` on ``device``: ``x`` float B x 3 x img_size x img_size, ``y`` int64 B, or
        float B x num_classes with mixup / cutmix."""
        if not 0 <= step < self.stop:
            raise ValueError(f"step {step} is outside this stream's steps 0 .. {self.stop - 1}")
        if self._it is None or step != self._next:
            self._close_iter()
            self._it = iter(self.loader(step))
        x, y, skipped = next(self._it)
        self._next = step + 1
        self._count(step, skipped, len(y))
        nb = self.device.type == "cuda"
        x, y = x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)
        if x.dtype == torch.uint8:
            x = normalize(x)
        if self.mix.active:
            rng = np.random.default_rng([self.order.seed % 2 ** 63, step, self.order.rank, 0x6d6978])
            x, y = self.mix(x, y, self.data.num_classes, rng)
        return x, y

    def _count(self, step: int, skipped: list, kept: int) -> None:
        epoch = self.order.position(step)["epoch"]
        if epoch != self._epoch:
            self._log_epoch()
            self._epoch = epoch
        if skipped:
            if not self.skipped:
                log.warning(f"rank {self.order.rank}: skipping unreadable images of {self.data.source}, first "
                            f"{_example(skipped)}; a count follows per epoch")
            self.skipped += len(skipped)
            self._epoch_skipped += len(skipped)
            self._example = self._example or _example(skipped)
        if not kept:
            raise UnreadableBatch(f"not one of the {len(skipped)} images of step {step} on rank {self.order.rank} "
                                  f"could be decoded, e.g. {_example(skipped)}; check that {self.data.source} "
                                  f"holds readable images")

    def _log_epoch(self) -> None:
        if self._epoch_skipped:
            log.warning(f"rank {self.order.rank}: skipped {self._epoch_skipped} unreadable image(s) in epoch "
                        f"{self._epoch} of {self.data.source}, e.g. {self._example}")
        self._epoch_skipped, self._example = 0, ""

    def _close_iter(self) -> None:
        self._it, self._next = None, None         # the last reference: its workers are shut down now

    def close(self) -> None:
        """Stop the workers and log the count of the epoch under way."""
        self._close_iter()
        self._log_epoch()


# -- evaluation -------------------------------------------------------------------------------------------
def eval_batches(data: ImageSet | ImageFolder, img_size: int, batch_size: int = 256, indices=None,
                 limit: int | None = None, workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Deterministic, unshuffled ``(x, y)`` CPU batches of ``data``'s images at ``indices`` (default:
    all), the first ``limit`` of them: ``x`` normalised float B x 3 x img_size x img_size. A folder's
    images are resized and centre-cropped, read by ``workers`` processes; unreadable ones are dropped
    and counted in one log line."""
    idx = list(range(len(data))) if indices is None else [int(i) for i in indices]
    if limit is not None:
        idx = idx[:limit]
    keys = [tuple(idx[i:i + batch_size]) for i in range(0, len(idx), batch_size)]
    if isinstance(data, ImageSet):
        for k in keys:
            sel = torch.tensor(k, dtype=torch.int64)
            yield to_input(data.images[sel], img_size), data.labels[sel]
        return
    loader = DataLoader(_EvalBatches(data, EvalTransform(img_size)), batch_size=None, sampler=keys,
                        num_workers=min(workers, len(keys)), collate_fn=_keep)
    skipped: list = []
    try:
        for x, y, bad in loader:
            skipped += bad
            if len(y):
                yield normalize(x), y
    finally:
        if skipped:
            log.warning(f"skipped {len(skipped)} unreadable image(s) of {data.source}, e.g. {_example(skipped)}")
