"""The settings of one supernet training run."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch

from nas.core.values import (FLAG, FRACTION, IMG_SIZE, NONNEGATIVE_FLOAT, NONNEGATIVE_INT, POSITIVE_FLOAT,
                             POSITIVE_INT, TEXT, WHOLE, ConfigError, check_settings, int_range, one_of, setting)
from nas.space.spaces import CPU_SPACE, DEFAULT_SPACE
from nas.training.precision import PRECISIONS

__all__ = ["TrainConfig", "ConfigError", "default_space"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`nas.training.train` needs; the defaults are those of ``python -m nas.train_supernet``.

    ``space`` left at ``None`` becomes :func:`default_space`: the full space (S0 to L) where CUDA is
    available, S0's neighbourhood (``efficientformerv2-small``) on a CPU-only machine. The other
    defaults are the CPU recipe: Fashion-MNIST at 32 px, 128 images per step and process; under
    ``torchrun --nproc_per_node 2`` on two CPU cores it trains in about half an hour.

    ``warmup`` left at ``None`` becomes 5% of ``steps`` (at least 1) when the config is built, so
    ``config.warmup`` is always a whole number; pass ``warmup=None`` again to
    :func:`dataclasses.replace` to derive it from a new ``steps``. ``out`` may be given as a path and
    is kept as a string. Values that cannot work raise :class:`ConfigError` (a
    :class:`~nas.core.errors.UserError`).

    ``precision`` (``auto``, ``fp32``, ``bf16``, ``fp16``; :mod:`nas.training.precision`), ``channels_last``
    (NHWC activations and weights, faster convolutions on GPUs), ``compile`` (``torch.compile`` of the
    sandwich module; each distinct subnet shape compiles once) and ``accum_steps`` (the batch split into
    that many micro-batches, one optimizer step) make steps faster or fit larger batches; they do not
    change what a step computes beyond rounding.

    Data: ``num_workers`` data-loader processes per training process (None: 0 for the in-memory offline
    sets, ``min(4, cores)`` for a folder; :func:`nas.data.loader.default_workers`). ``shift`` translates
    the offline sets' images; a folder's get a random-resized crop and flip, plus RandAugment at magnitude
    ``randaug`` (0: off; the EfficientFormerV2 recipe uses 9). ``mixup`` / ``cutmix`` are the Beta alphas of
    batch-level mixing (0: off; the recipe uses 0.8 / 1.0), for any dataset.

    ``init_from`` (a path) starts the supernet from a published S0/S1/S2/L checkpoint, timm's or the official
    one (:func:`nas.supernet.pretrained.load_pretrained`); a resumed run keeps its own weights instead.

    ``stop_at`` and ``save_rank_states`` are for tests: stop after that step as if the process were
    killed, and write every rank's synchronised weights to ``OUT/rank{r}.pt`` at the end.
    """

    space: str | None = setting(None, TEXT, optional=True)
    dataset: str = setting("fashion-mnist", TEXT)
    img_size: int = setting(32, IMG_SIZE)
    steps: int = setting(550, POSITIVE_INT)
    batch_size: int = setting(128, POSITIVE_INT)
    lr: float = setting(1.5e-3, POSITIVE_FLOAT)
    min_lr: float = setting(1e-5, NONNEGATIVE_FLOAT)
    weight_decay: float = setting(0.025, NONNEGATIVE_FLOAT)
    warmup: int | None = setting(None, NONNEGATIVE_INT, optional=True)
    num_random: int = setting(2, NONNEGATIVE_INT)
    label_smoothing: float = setting(0.1, FRACTION)
    clip_grad: float = setting(2.0, NONNEGATIVE_FLOAT)
    shift: int = setting(2, NONNEGATIVE_INT)
    out: str = setting("runs/supernet", TEXT)
    ckpt_every: int = setting(50, POSITIVE_INT)
    eval_every: int = setting(100, NONNEGATIVE_INT)
    eval_size: int = setting(1000, POSITIVE_INT)
    calib_batches: int = setting(4, POSITIVE_INT)
    resume: bool = setting(False, FLAG)
    overwrite: bool = setting(False, FLAG)
    seed: int = setting(0, WHOLE)
    threads: int = setting(1, POSITIVE_INT)
    train_subset: int | None = setting(None, POSITIVE_INT, optional=True)
    init_from: str | None = setting(None, TEXT, optional=True)
    num_workers: int | None = setting(None, NONNEGATIVE_INT, optional=True)
    randaug: int = setting(0, int_range(0, 10))
    mixup: float = setting(0.0, NONNEGATIVE_FLOAT)
    cutmix: float = setting(0.0, NONNEGATIVE_FLOAT)
    precision: str = setting("auto", one_of(PRECISIONS))
    channels_last: bool = setting(False, FLAG)
    compile: bool = setting(False, FLAG)
    accum_steps: int = setting(1, POSITIVE_INT)
    progress: bool = setting(True, FLAG)
    plot: bool = setting(True, FLAG)
    stop_at: int | None = setting(None, POSITIVE_INT, optional=True)
    save_rank_states: bool = setting(False, FLAG)

    def __post_init__(self):
        for name in ("out", "init_from", "dataset"):
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        if self.space is None:
            object.__setattr__(self, "space", default_space())
        check_settings(self)
        if self.warmup is None:
            object.__setattr__(self, "warmup", max(1, round(0.05 * self.steps)))
        if self.batch_size % self.accum_steps:
            raise ConfigError(f"batch_size ({self.batch_size}) must be a multiple of accum_steps ({self.accum_steps})")

    def to_dict(self) -> dict:
        """The settings as plain JSON-ready values (what a checkpoint and ``args.json`` record)."""
        return dataclasses.asdict(self)


def default_space() -> str:
    """The space a run trains when none is named: the full space, whose points include S0, S1, S2 and L,
    where CUDA is available; on a CPU-only machine its neighbourhood of S0 (:data:`nas.space.spaces.CPU_SPACE`),
    small enough to train in half an hour on two cores."""
    return DEFAULT_SPACE.name if torch.cuda.is_available() else CPU_SPACE.name


