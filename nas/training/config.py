"""The settings of one supernet training run."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch

from nas.core.errors import UserError
from nas.space.spaces import CPU_SPACE, DEFAULT_SPACE
from nas.training.precision import PRECISIONS

__all__ = ["TrainConfig", "ConfigError", "default_space"]


class ConfigError(UserError, ValueError):
    """A training setting that cannot work; the message names the field and the values it accepts."""


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

    space: str | None = None
    dataset: str = "fashion-mnist"
    img_size: int = 32
    steps: int = 550
    batch_size: int = 128
    lr: float = 1.5e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.025
    warmup: int | None = None
    num_random: int = 2
    label_smoothing: float = 0.1
    clip_grad: float = 2.0
    shift: int = 2
    out: str = "runs/supernet"
    ckpt_every: int = 50
    eval_every: int = 100
    eval_size: int = 1000
    calib_batches: int = 4
    resume: bool = False
    overwrite: bool = False
    seed: int = 0
    threads: int = 1
    train_subset: int | None = None
    init_from: str | None = None
    num_workers: int | None = None
    randaug: int = 0
    mixup: float = 0.0
    cutmix: float = 0.0
    precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    accum_steps: int = 1
    progress: bool = True
    plot: bool = True
    stop_at: int | None = None
    save_rank_states: bool = False

    def __post_init__(self):
        if isinstance(self.out, os.PathLike):
            object.__setattr__(self, "out", os.fspath(self.out))
        if isinstance(self.init_from, os.PathLike):
            object.__setattr__(self, "init_from", os.fspath(self.init_from))
        if self.space is None:
            object.__setattr__(self, "space", default_space())
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise ConfigError(f"init_from must be a path to a checkpoint or None, got {self.init_from!r}")
        for name in ("space", "dataset", "out"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("img_size", "steps", "batch_size", "ckpt_every", "eval_size", "calib_batches", "threads"):
            _whole(name, getattr(self, name), minimum=1)
        for name in ("num_random", "eval_every", "shift"):
            _whole(name, getattr(self, name), minimum=0)
        _whole("seed", self.seed)
        if self.num_workers is not None:
            _whole("num_workers", self.num_workers, minimum=0)
        _whole("randaug", self.randaug, minimum=0)
        if self.randaug > 10:
            raise ConfigError(f"randaug (a RandAugment magnitude) must be between 0 and 10, got {self.randaug}")
        for name in ("mixup", "cutmix"):
            _number(name, getattr(self, name), at_least=0.0)
        for name in ("warmup", "train_subset", "stop_at"):
            if getattr(self, name) is not None:
                _whole(name, getattr(self, name), minimum=0 if name == "warmup" else 1)
        if self.warmup is None:
            object.__setattr__(self, "warmup", max(1, round(0.05 * self.steps)))
        _number("lr", self.lr, above=0.0)
        for name in ("min_lr", "weight_decay", "clip_grad"):
            _number(name, getattr(self, name), at_least=0.0)
        _number("label_smoothing", self.label_smoothing, at_least=0.0)
        if self.label_smoothing > 1:
            raise ConfigError(f"label_smoothing must be between 0 and 1, got {self.label_smoothing}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        _whole("accum_steps", self.accum_steps, minimum=1)
        if self.batch_size % self.accum_steps:
            raise ConfigError(f"batch_size ({self.batch_size}) must be a multiple of accum_steps ({self.accum_steps})")
        for name in ("resume", "overwrite", "progress", "plot", "save_rank_states", "channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """The settings as plain JSON-ready values (what a checkpoint and ``args.json`` record)."""
        return dataclasses.asdict(self)


def default_space() -> str:
    """The space a run trains when none is named: the full space, whose points include S0, S1, S2 and L,
    where CUDA is available; on a CPU-only machine its neighbourhood of S0 (:data:`nas.space.spaces.CPU_SPACE`),
    small enough to train in half an hour on two cores."""
    return DEFAULT_SPACE.name if torch.cuda.is_available() else CPU_SPACE.name


def _whole(name: str, value, minimum: int | None = None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        rule = "at least 1" if minimum == 1 else f"{minimum} or more"
        raise ConfigError(f"{name} must be {rule}, got {value}")


def _number(name: str, value, above: float | None = None, at_least: float | None = None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if above is not None and not value > above:
        raise ConfigError(f"{name} must be above {above:g}, got {value}")
    if at_least is not None and value < at_least:
        raise ConfigError(f"{name} must be {at_least:g} or more, got {value}")
