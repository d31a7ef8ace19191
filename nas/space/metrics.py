"""Analytic parameters and MACs of an architecture, and the Mobile Efficiency Score (MES).

MES = Score * prod_i (M_i / U_i) ** (-alpha_i) with M in {params, latency}. The defaults below
(Score 100, U_params = 3 M, U_latency = 1 ms, alpha_params = 0.5, alpha_latency = 1.0) reproduce the
EfficientFormerV2 paper's MES values from its params and iPhone-12 latencies (S0: 3.5 M, 0.9 ms ->
102.9); they are defaults, and every constant can be changed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from nas.space.units import arch_units
from nas.space.arch import Arch

__all__ = ["count_params", "count_macs", "MES"]


def count_params(arch: Arch, *, img_size: int = 224, num_classes: int = 1000, distillation: bool = True) -> int:
    """Exactly ``sum(p.numel() for p in model.parameters())`` of the built network (BN and layer scale
    included). ``img_size`` matters only through the attention-bias tables."""
    n = sum(u.params for u in arch_units(arch, img_size, num_classes))
    if not distillation:
        n -= arch.widths[-1] * num_classes + num_classes
    return n


def count_macs(arch: Arch, *, img_size: int = 224, num_classes: int = 1000, distillation: bool = True) -> int:
    """Multiply-accumulates of one image: convolutions, linear layers and attention products (BN is
    folded into convolutions at deployment and not counted)."""
    n = sum(u.macs for u in arch_units(arch, img_size, num_classes))
    if not distillation:
        n -= arch.widths[-1] * num_classes
    return n


@dataclass(frozen=True)
class MES:
    """Mobile Efficiency Score. ``MES()(params=3.5e6, latency_ms=0.9)`` -> 102.9.

    ``units`` and ``alphas`` are keyed by metric name; any metric passed to ``__call__`` must have both.
    """
    score: float = 100.0
    units: dict = field(default_factory=lambda: {"params": 3e6, "latency_ms": 1.0})
    alphas: dict = field(default_factory=lambda: {"params": 0.5, "latency_ms": 1.0})

    def __call__(self, **metrics: float) -> float:
        out = self.score
        for name, value in metrics.items():
            if name not in self.units or name not in self.alphas:
                raise KeyError(f"MES has no unit/exponent for metric {name!r}; known: {sorted(self.units)}")
            if value <= 0:
                raise ValueError(f"MES metric {name} must be positive, got {value}")
            out *= (value / self.units[name]) ** (-self.alphas[name])
        return out

    def to_dict(self) -> dict:
        return {"score": self.score, "units": dict(self.units), "alphas": dict(self.alphas)}
