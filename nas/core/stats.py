"""How sure an accuracy, and a difference of two accuracies, is: binomial standard errors and a paired
bootstrap over the same test images.

Two networks evaluated on the same images make correlated errors (the hard images are hard for both),
so their accuracies are compared per image: :func:`paired_bootstrap` resamples the images (the same
indices for both networks) and reads a percentile confidence interval off the resampled differences.
A difference whose interval contains 0 is a tie: the data cannot tell the two apart::

    c = paired_bootstrap(correct_a, correct_b)        # per-image 0/1 vectors, same images, same order
    c.diff, c.ci_low, c.ci_high, c.verdict             # 0.0012, -0.009, 0.011, "tie"
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["binomial_stderr", "paired_stderr", "paired_bootstrap", "PairedComparison", "verdict",
           "A_BETTER", "B_BETTER", "TIE"]

A_BETTER, B_BETTER, TIE = "a better", "b better", "tie"


def binomial_stderr(p: float, n: int) -> float:
    """The standard error ``sqrt(p (1 - p) / n)`` of an accuracy ``p`` measured on ``n`` images."""
    if n <= 0:
        raise ValueError(f"a standard error needs at least one image, got n={n}")
    p = min(max(float(p), 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / n)


def _pair(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(correct_a, dtype=np.float64).ravel()
    b = np.asarray(correct_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired vectors must cover the same images: {a.size} and {b.size} values")
    if a.size == 0:
        raise ValueError("paired vectors are empty")
    return a, b


def paired_stderr(correct_a, correct_b) -> float:
    """The analytic standard error of ``mean(a) - mean(b)`` over the same images: the standard
    deviation of the per-image differences over ``sqrt(n)`` (population variance, as the bootstrap's)."""
    a, b = _pair(correct_a, correct_b)
    return float(np.std(a - b) / math.sqrt(a.size))


def verdict(ci_low: float, ci_high: float) -> str:
    """``"a better"`` when the interval of ``a - b`` lies above 0, ``"b better"`` when below, and
    ``"tie"`` when it contains 0."""
    if ci_low > 0:
        return A_BETTER
    if ci_high < 0:
        return B_BETTER
    return TIE


@dataclass(frozen=True)
class PairedComparison:
    """``diff``: ``mean(a) - mean(b)``; ``ci_low``, ``ci_high``: its percentile confidence interval at
    ``level``; ``stderr``: the standard deviation of the bootstrap differences; ``n``: images;
    ``n_boot``: resamples."""
    diff: float
    ci_low: float
    ci_high: float
    stderr: float
    n: int
    n_boot: int
    level: float

    @property
    def verdict(self) -> str:
        """``"a better"``, ``"b better"`` or ``"tie"`` (the interval contains 0)."""
        return verdict(self.ci_low, self.ci_high)

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def paired_bootstrap(correct_a, correct_b, n_boot: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> PairedComparison:
    """Paired bootstrap of ``mean(a) - mean(b)`` over per-image scores of two networks on the same images.

    Each resample draws ``n`` image indices with replacement and takes the difference of the two
    networks' means over those same indices. The difference over a resample depends only on how many
    times each distinct per-image difference value is drawn, so the resamples are drawn as multinomial
    counts of those values: the same distribution as drawing indices, at a cost independent of ``n``
    for 0/1 vectors. Deterministic given ``seed``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    a, b = _pair(correct_a, correct_b)
    n = a.size
    values, counts = np.unique(a - b, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=n_boot)                 # (n_boot, distinct values)
    boot = draws @ values / n
    alpha = (1.0 - level) / 2
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    diff = float(a.mean() - b.mean())
    return PairedComparison(diff=diff, ci_low=float(low), ci_high=float(high), stderr=float(boot.std()),
                            n=int(n), n_boot=int(n_boot), level=float(level))
