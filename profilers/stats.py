"""Timing protocol and latency statistics shared by every profiler.

The protocol follows the best peers (nn-Meter, OFA, coreml-performance): warm up, then time several
*rounds* of back-to-back calls, each call timed on its own with ``time.perf_counter_ns``. The reported
median is the median of the round medians; p10/p90, mean and std are over all timed calls; ``cv`` is
the coefficient of variation of the round medians (std / mean), i.e. how far the median moves from one
round to the next. An entry whose ``cv`` exceeds ``max_cv`` is measured again (up to ``retries`` times)
and the steadiest attempt is kept.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = ["LatencyStats", "Protocol", "summarize_rounds", "summarize_runs", "stats_from_round_summaries"]


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one unit or network, in milliseconds. ``n`` is the number of timed calls.

    ``p10_ms``/``p90_ms`` (and ``std_ms``) are NaN where the tool that measured it does not report
    per-run times (TFLite ``benchmark_model`` on a phone, for instance).
    """
    p50_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    cv: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_rounds(rounds: Sequence[Sequence[float]]) -> LatencyStats:
    """Statistics of per-call times (ms) grouped in rounds (see the module docstring)."""
    rounds = [np.asarray(r, dtype=float) for r in rounds if len(r)]
    if not rounds:
        raise ValueError("no timings to summarize")
    allv = np.concatenate(rounds)
    meds = np.array([np.median(r) for r in rounds])
    cv = float(np.std(meds, ddof=1) / np.mean(meds)) if len(meds) > 1 else float("nan")
    return LatencyStats(
        p50_ms=float(np.median(meds)),
        p10_ms=float(np.percentile(allv, 10)),
        p90_ms=float(np.percentile(allv, 90)),
        mean_ms=float(np.mean(allv)),
        std_ms=float(np.std(allv, ddof=1)) if len(allv) > 1 else 0.0,
        cv=cv,
        n=int(len(allv)),
    )


def summarize_runs(runs_ms: Sequence[float], rounds: int = 5) -> LatencyStats:
    """Statistics of a flat list of per-run times, split into ``rounds`` consecutive rounds."""
    runs = np.asarray(runs_ms, dtype=float)
    if runs.size == 0:
        raise ValueError("no timings to summarize")
    k = max(1, min(rounds, runs.size))
    return summarize_rounds(np.array_split(runs, k))


def stats_from_round_summaries(avgs_ms: Sequence[float], stds_ms: Sequence[float] | None,
                               counts: Sequence[int]) -> LatencyStats:
    """Statistics from tools that only report a per-round mean/std/count (``benchmark_model``).

    The median is the median of the round means, the mean and std are pooled exactly over all runs,
    ``cv`` is the variation of the round means; p10/p90 are unknown (NaN).
    """
    a = np.asarray(avgs_ms, float)
    c = np.asarray(counts, float)
    n = c.sum()
    mean = float((a * c).sum() / n)
    if stds_ms is not None and n > 1:
        s = np.asarray(stds_ms, float)
        ss = ((c - 1) * s ** 2 + c * (a - mean) ** 2).sum()       # pooled sum of squares
        std = float(math.sqrt(ss / (n - 1)))
    else:
        std = float("nan")
    cv = float(np.std(a, ddof=1) / np.mean(a)) if len(a) > 1 else float("nan")
    return LatencyStats(float(np.median(a)), float("nan"), float("nan"), mean, std, cv, int(n))


@dataclass
class Protocol:
    """How a callable is timed.

    ``warmup`` calls (and at least ``warmup_s`` seconds) are run first; their median sets how many calls
    a round needs to last about ``round_s`` (clamped to ``[min_runs, max_runs]``) unless ``runs`` fixes it.
    """
    warmup: int = 10
    warmup_s: float = 0.1
    rounds: int = 5
    runs: int | None = None
    round_s: float = 0.12
    min_runs: int = 10
    max_runs: int = 2000
    max_cv: float = 0.03
    retries: int = 2
    attempts: list = field(default_factory=list, repr=False)   # cv of every attempt of the last call

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("attempts")
        return d

    def runs_per_round(self, call_ms: float) -> int:
        if self.runs:
            return int(self.runs)
        want = math.ceil(self.round_s * 1000.0 / max(call_ms, 1e-3))
        return int(min(self.max_runs, max(self.min_runs, want)))

    def measure(self, fn: Callable[[], object]) -> LatencyStats:
        """Time ``fn`` with this protocol and return its statistics."""
        clock = time.perf_counter_ns
        warm, t0 = [], clock()
        while len(warm) < self.warmup or (clock() - t0) < self.warmup_s * 1e9:
            a = clock()
            fn()
            warm.append((clock() - a) / 1e6)
            if len(warm) >= 10 * max(self.warmup, 1) and len(warm) >= 1000:
                break
        per_round = self.runs_per_round(float(np.median(warm[len(warm) // 2:])))
        best, self.attempts = None, []
        for _ in range(1 + max(0, self.retries)):
            rounds = []
            for _ in range(self.rounds):
                times = np.empty(per_round)
                for i in range(per_round):
                    a = clock()
                    fn()
                    times[i] = clock() - a
                rounds.append(times / 1e6)
            st = summarize_rounds(rounds)
            self.attempts.append(st.cv)
            if best is None or not (st.cv >= best.cv):
                best = st
            if not (st.cv > self.max_cv):
                break
        return best
