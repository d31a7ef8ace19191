"""The map from a table's block sums to end-to-end latency, fitted so that it cannot predict nonsense.

A network run end to end is not exactly the sum of its units timed alone: each unit paid a per-call cost
when timed alone, and a runtime overlaps or fuses work across unit boundaries. A calibration, fitted on
whole networks measured on the same runtime (``python -m nas.calibrate``), absorbs that. Three models,
from richest to simplest, all with non-negative coefficients, fitted on *relative* error (non-negative
least squares on rows divided by the measured latency):

* ``per_kind``: ``a_ffn * S_ffn + a_attn * S_attn + a_other * S_other + c`` (S_k: the sum of the arch's
  units of that kind; ``other`` is stem, downsamples and head). On public phone-GPU data, one scale per
  unit kind plus a constant was markedly more accurate than a single scale.
* ``affine``: ``a * S + c``;
* ``scale``: ``a * S``.

The fit computes each model's leave-one-out error and keeps the simplest model within 10 % of the best
(a model needs enough networks to be eligible at all), so a few or noisy networks fall back to a simpler,
stable map. Every prediction is finally clipped to ``[lo * S, hi * S]``: the range of measured / sum
ratios seen in the fit, widened by a factor of 1.5 on both sides. Since every unit latency is positive,
no prediction can be zero or negative, nor stray far from what was measured, whatever the architecture.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from nas.core.errors import UserError
from nas.core.files import parsing, read_json

__all__ = ["Calibration", "CalibrationError", "GROUPS", "KIND_GROUP", "MODELS", "calibration_path",
           "load_calibration"]

#: the unit kinds a calibration scales separately (``other``: stem, downsamples and head)
GROUPS = ("ffn", "attn", "other")
KIND_GROUP = {"ffn": 0, "attn": 1, "stem": 2, "downsample": 2, "head": 2}
#: models from richest to simplest, with the fewest networks each needs
MODELS = {"per_kind": 8, "affine": 4, "scale": 2}
BAND_WIDEN = 1.5
FORMAT = 2


class CalibrationError(UserError, ValueError):
    """A calibration file that is missing fields, of an older format, or holds impossible values."""


def calibration_path(table_path: str | Path) -> Path:
    p = Path(table_path)
    return p.with_name(p.name.removesuffix(".csv") + ".calibration.json")


def _design(model: str, groups: np.ndarray) -> np.ndarray:
    g = np.atleast_2d(np.asarray(groups, dtype=float))
    one = np.ones((len(g), 1))
    if model == "per_kind":
        return np.hstack([g, one])
    if model == "affine":
        return np.hstack([g.sum(1, keepdims=True), one])
    if model == "scale":
        return g.sum(1, keepdims=True)
    raise CalibrationError(f"unknown calibration model {model!r}; expected one of {list(MODELS)}")


def _fit_relative_nnls(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin_{b >= 0} sum(((X b - y) / y)^2)."""
    from scipy.optimize import nnls
    coef, _ = nnls(X / y[:, None], np.ones(len(y)))
    return coef


def _loo_errors(model: str, groups: np.ndarray, y: np.ndarray) -> np.ndarray:
    X = _design(model, groups)
    errs = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        coef = _fit_relative_nnls(X[keep], y[keep])
        errs[i] = (X[i] @ coef - y[i]) / y[i]
    return errs


@dataclass
class Calibration:
    """A fitted map from per-group block sums (``GROUPS``) to end-to-end latency (ms)."""
    model: str = "scale"
    coef: tuple = (1.0,)
    band: tuple[float, float] = (0.0, math.inf)
    n: int = 0
    report: dict = field(default_factory=dict)
    archs: list = field(default_factory=list)
    measured_ms: list = field(default_factory=list)
    group_sums: list = field(default_factory=list)
    #: the reference networks timed right after the calibration networks (:mod:`nas.latency.host_factor`):
    #: ``names``, ``archs``, ``p50_ms`` (the median over the passes), ``passes``, ``img_size``, ``num_classes``
    reference: dict = field(default_factory=dict)

    # -- use ------------------------------------------------------------------------------------
    def apply(self, groups) -> np.ndarray | float:
        """Calibrated latency of one arch (a length-3 group-sum vector) or many (an ``(N, 3)`` array)."""
        g = np.asarray(groups, dtype=float)
        if g.ndim == 1:
            return self.apply_one(g)
        return self.apply_columns(g[:, 0], g[:, 1], g[:, 2], total=g.sum(1), groups=g)

    def apply_columns(self, ffn, attn, other, total=None, groups=None) -> np.ndarray:
        """:meth:`apply` of many archs given by their group sums as three arrays. ``total`` (their sum,
        added in ``GROUPS`` order) and ``groups`` (the ``(N, 3)`` array) are used where the caller has them."""
        s = ffn + attn + other if total is None else total
        c = self.coef
        if self.model == "per_kind":
            g = np.stack([ffn, attn, other], 1) if groups is None else groups
            y = g @ np.asarray(c[:3]) + c[3]
        elif self.model == "affine":
            y = c[0] * s + c[1]
        else:
            y = c[0] * s
        return np.clip(y, self.band[0] * s, self.band[1] * s, out=y)

    def apply_one(self, groups) -> float:
        """:meth:`apply` for one arch, without numpy overhead (the scalar prediction path)."""
        f, a, o = groups
        return self.apply_sums(float(f), float(a), float(o))

    def apply_sums(self, f: float, a: float, o: float) -> float:
        """:meth:`apply_one` of the group sums given as three floats (ffn, attn, other)."""
        s, c, model = f + a + o, self.coef, self.model
        if model == "per_kind":
            y = c[0] * f + c[1] * a + c[2] * o + c[3]
        elif model == "affine":
            y = c[0] * s + c[1]
        else:
            y = c[0] * s
        lo, hi = self.band
        lo *= s
        hi *= s
        y = lo if lo > y else y                  # = min(max(y, lo), hi), without two calls
        return hi if hi < y else y

    def floor(self, block_sum):
        """The lowest latency this calibration can predict for an arch whose units sum to ``block_sum``."""
        return self.band[0] * np.asarray(block_sum, dtype=float)

    # -- fitting --------------------------------------------------------------------------------
    @classmethod
    def fit(cls, group_sums: Sequence[Sequence[float]], measured_ms: Sequence[float], archs: list | None = None,
            models: Sequence[str] | None = None) -> "Calibration":
        """Fit on networks given by their per-group block sums ``(N, 3)`` and measured latencies (ms)."""
        g = np.asarray(group_sums, dtype=float).reshape(-1, len(GROUPS))
        y = np.asarray(measured_ms, dtype=float)
        if len(y) != len(g):
            raise ValueError(f"{len(g)} block sums but {len(y)} measured latencies")
        if len(y) < 3:
            raise ValueError(f"a calibration needs at least 3 measured networks, got {len(y)}")
        if not (np.isfinite(y).all() and (y > 0).all() and np.isfinite(g).all() and (g.sum(1) > 0).all()):
            raise ValueError("measured latencies and block sums must be finite and positive")
        s = g.sum(1)
        eligible = [m for m in (models or MODELS) if len(y) >= MODELS[m]]
        eligible = eligible or ["scale"]
        loo = {m: float(np.mean(np.abs(_loo_errors(m, g, y))) * 100) for m in eligible}
        best = min(loo.values())
        simplest_first = sorted(eligible, key=lambda m: _design(m, g).shape[1])
        chosen = next(m for m in simplest_first if loo[m] <= best * 1.1 + 1e-9)
        X = _design(chosen, g)
        coef = _fit_relative_nnls(X, y)
        ratio = y / s
        band = (float(ratio.min() / BAND_WIDEN), float(ratio.max() * BAND_WIDEN))
        cal = cls(chosen, tuple(float(c) for c in coef), band, len(y), {}, list(archs or []),
                  [float(v) for v in y], [[float(v) for v in row] for row in g])
        fitted = cal.apply(g)
        raw_err, fit_err = (s - y) / y, (fitted - y) / y
        cal.report = {
            "model": chosen,
            "loo_mape_pct": loo,
            "uncalibrated_mape_pct": float(np.mean(np.abs(raw_err)) * 100),
            "uncalibrated_bias_pct": float(np.mean(raw_err) * 100),
            "calibrated_mape_pct": float(np.mean(np.abs(fit_err)) * 100),
            "calibrated_max_abs_err_pct": float(np.max(np.abs(fit_err)) * 100),
            "residuals_ms": [float(r) for r in fitted - y],
        }
        return cal

    def scaled(self, factor: float) -> "Calibration":
        """This map with every prediction multiplied by ``factor`` (coefficients and band alike, so the clip
        scales too): this host's speed now against its calibration (:mod:`nas.latency.host_factor`)."""
        k = float(factor)
        if not (math.isfinite(k) and k > 0):
            raise ValueError(f"a host factor must be a finite positive number, got {factor!r}")
        return dataclasses.replace(self, coef=tuple(c * k for c in self.coef), band=(self.band[0] * k,
                                                                                   self.band[1] * k),
                                   report={**self.report, "scaled_by": k})

    def describe(self) -> str:
        """The fitted formula in words."""
        c = self.coef
        if self.model == "per_kind":
            f = (f"{c[0]:.4f}*S_ffn + {c[1]:.4f}*S_attn + {c[2]:.4f}*S_other + {c[3]:.4f} ms")
        elif self.model == "affine":
            f = f"{c[0]:.4f}*S + {c[1]:.4f} ms"
        else:
            f = f"{c[0]:.4f}*S"
        return f"measured_ms = {f}, clipped to [{self.band[0]:.3f}, {self.band[1]:.3f}] x S"

    # -- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "model": self.model, "groups": list(GROUPS), "coef": list(self.coef),
                "band": list(self.band), "formula": self.describe(), "n": self.n, "report": self.report,
                "archs": self.archs, "measured_ms": self.measured_ms, "group_sums": self.group_sums,
                **({"reference": self.reference} if self.reference else {})}

    @classmethod
    def from_dict(cls, d: dict, source: str = "calibration") -> "Calibration":
        """Rebuild from :meth:`to_dict`'s form; :class:`CalibrationError` naming ``source`` when the content
        is of another format or holds impossible values."""
        if not isinstance(d, dict):
            raise CalibrationError(f"{source}: expected a JSON object")
        if d.get("format") != FORMAT:
            raise CalibrationError(f"{source} is of an older calibration format; fit it again with "
                                   f"python -m nas.calibrate")
        model = d.get("model")
        if model not in MODELS:
            raise CalibrationError(f"{source}: unknown model {model!r}; expected one of {list(MODELS)}")
        try:
            coef = tuple(float(c) for c in d["coef"])
            band = tuple(float(b) for b in d["band"])
        except (KeyError, TypeError, ValueError):
            raise CalibrationError(f"{source}: 'coef' and 'band' must be lists of numbers") from None
        width = _design(model, np.ones(len(GROUPS))).shape[1]
        if len(coef) != width or not all(math.isfinite(c) and c >= 0 for c in coef):
            raise CalibrationError(f"{source}: model {model!r} needs {width} finite non-negative coefficients, "
                                   f"got {list(coef)}; fit it again with python -m nas.calibrate")
        if len(band) != 2 or not (0 < band[0] <= band[1] and math.isfinite(band[1])):
            raise CalibrationError(f"{source}: 'band' must be [lo, hi] with 0 < lo <= hi, got {list(band)}")
        ref = d.get("reference") or {}
        if ref and not (isinstance(ref, dict) and len(ref.get("names", [])) == len(ref.get("archs", [])) ==
                        len(ref.get("p50_ms", [])) > 0 and all(isinstance(v, (int, float)) and v > 0
                                                                for v in ref["p50_ms"])
                        and isinstance(ref.get("img_size"), int) and isinstance(ref.get("num_classes"), int)):
            raise CalibrationError(f"{source}: 'reference' must hold names, archs and positive p50_ms of the same "
                                   f"length, img_size and num_classes; fit it again with python -m nas.calibrate")
        return cls(model, coef, band, int(d.get("n", 0)), dict(d.get("report", {})), list(d.get("archs", [])),
                   list(d.get("measured_ms", [])), list(d.get("group_sums", [])), dict(ref))


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file; :class:`CalibrationError` naming the file when it cannot be used."""
    path = Path(path)
    fix = "delete it and run python -m nas.calibrate"
    d = read_json(path, "calibration", CalibrationError, fix=fix)
    with parsing(path, "calibration", CalibrationError, fix):
        return Calibration.from_dict(d, str(path))
