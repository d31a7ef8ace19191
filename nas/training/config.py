"""The settings of one supernet training run."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from nas.core.errors import UserError

__all__ = ["TrainConfig", "ConfigError"]


class ConfigError(UserError, ValueError):
    """A training setting that cannot work; the message names the field and the values it accepts."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`nas.training.train` needs; the defaults are those of ``python -m nas.train_supernet``.

    ``warmup`` left at ``None`` becomes 5% of ``steps`` (at least 1) when the config is built, so
    ``config.warmup`` is always a whole number; pass ``warmup=None`` again to
    :func:`dataclasses.replace` to derive it from a new ``steps``. ``out`` may be given as a path and
    is kept as a string. Values that cannot work raise :class:`ConfigError` (a
    :class:`~nas.core.errors.UserError`).

    ``stop_at`` and ``save_rank_states`` are for tests: stop after that step as if the process were
    killed, and write every rank's synchronised weights to ``OUT/rank{r}.pt`` at the end.
    """

    space: str = "efficientformerv2"
    dataset: str = "fashion-mnist"
    img_size: int = 64
    steps: int = 400
    batch_size: int = 32
    lr: float = 2e-3
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
    progress: bool = True
    plot: bool = True
    stop_at: int | None = None
    save_rank_states: bool = False

    def __post_init__(self):
        if isinstance(self.out, os.PathLike):
            object.__setattr__(self, "out", os.fspath(self.out))
        for name in ("space", "dataset", "out"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("img_size", "steps", "batch_size", "ckpt_every", "eval_size", "calib_batches", "threads"):
            _whole(name, getattr(self, name), minimum=1)
        for name in ("num_random", "eval_every", "shift"):
            _whole(name, getattr(self, name), minimum=0)
        _whole("seed", self.seed)
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
        for name in ("resume", "overwrite", "progress", "plot", "save_rank_states"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """The settings as plain JSON-ready values (what a checkpoint and ``args.json`` record)."""
        return dataclasses.asdict(self)


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
