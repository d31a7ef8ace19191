"""Supernet training: the sandwich rule with in-place distillation, resumable and ``torchrun``-ready.

    from nas.training import TrainConfig, train
    summary = train(TrainConfig(out="runs/supernet", resume=True))

:class:`TrainConfig` holds the settings (defaults = ``python -m nas.train_supernet``), :func:`train` runs
one training and returns its summary dict; :class:`Trainer` is the run itself, step by step.
"""
from nas.training.config import ConfigError, TrainConfig
from nas.training.trainer import Trainer, train

__all__ = ["TrainConfig", "ConfigError", "Trainer", "train"]
