"""Latency units as PyTorch modules: :func:`build_unit` turns a :class:`~nas.space.units.BlockSpec` into the
eval-mode ``nn.Module`` a profiler exports and times, built from the same modules as
:class:`models.EfficientFormerV2`.

This is the only module of :mod:`nas.space` that needs torch; ``nas.space`` itself does not import it, so
the space description, the encoding and the units' keys and analytic cost load without torch.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch.nn as nn

from models.efficientformer_v2 import Attention2d, ConvMlp, Downsample, LayerScale2d, Stem

from nas.space.units import BlockSpec

__all__ = ["build_unit", "unit_builders", "FFNUnit", "AttnUnit", "HeadUnit"]


class FFNUnit(nn.Module):
    """``x + ls2(mlp(x))``: the FFN half of a block."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.mlp = ConvMlp(dim, hidden)
        self.ls2 = LayerScale2d(dim)

    def forward(self, x):
        return x + self.ls2(self.mlp(x))


class AttnUnit(nn.Module):
    """``x + ls1(attention(x))``: the attention half of an attention block."""

    def __init__(self, dim: int, res: int, stride: int | None):
        super().__init__()
        self.token_mixer = Attention2d(dim, res, stride)
        self.ls1 = LayerScale2d(dim)

    def forward(self, x):
        return x + self.ls1(self.token_mixer(x))


class HeadUnit(nn.Module):
    """Final BN, global pool and the two averaged classifiers."""

    def __init__(self, dim: int, classes: int, distillation: bool = True):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.head = nn.Linear(dim, classes)
        self.head_dist = nn.Linear(dim, classes) if distillation else None

    def forward(self, x):
        x = self.norm(x).mean(dim=(2, 3))
        return self.head(x) if self.head_dist is None else (self.head(x) + self.head_dist(x)) / 2


def build_unit(spec: BlockSpec) -> tuple[nn.Module, tuple[int, int, int, int]]:
    """The unit as an eval-mode ``nn.Module`` and its input shape (batch 1)."""
    k = spec.kind
    if k == "stem":
        m = Stem(spec.cin, spec.cout)
    elif k == "downsample":
        m = Downsample(spec.cin, spec.cout, spec.res, use_attn=spec.attn)
    elif k == "ffn":
        m = FFNUnit(spec.cin, spec.hidden)
    elif k == "attn":
        m = AttnUnit(spec.cin, spec.res, spec.stride if spec.stride > 1 else None)
    elif k == "head":
        m = HeadUnit(spec.cin, spec.classes)
    else:
        raise ValueError(f"unknown unit kind {k!r}")
    return m.eval(), spec.input_shape


def unit_builders(specs) -> list[tuple[str, Callable[[], tuple[nn.Module, tuple[int, int, int, int]]]]]:
    """``(key, builder)`` for every unit of ``specs``: what a profiler measures (each built when its batch
    comes up)."""
    return [(s.key, partial(build_unit, s)) for s in specs]
