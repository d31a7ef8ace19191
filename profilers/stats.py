"""Timing protocol and latency statistics shared by every profiler.

The protocol follows the best peers (nn-Meter, OFA, coreml-performance): warm up, then time several
*rounds* of back-to-back calls, each call timed on its own with ``time.perf_counter_ns``. The reported
median is the median of the round medians (robust to a round hit by interference); p10/p90, mean and
std are over all timed calls; ``cv`` is the robust coefficient of variation of the round medians
(1.4826 x their median absolute deviation / their median: the std of a normal sample, but not inflated
by one disturbed round), i.e. how far the median moves from one round to the next.

:meth:`Protocol.measure_many` times several callables *interleaved*: round 1 of every callable, then
round 2 of every callable, and so on, in a rotating order. On a shared host whose speed drifts over
minutes, drift then hits every entry of a batch alike instead of the ones that happened to be timed
last; entries whose rounds disagree (``cv`` above ``max_cv``) get more rounds, up to ``retries`` times.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

__all__ = ["LatencyStats", "Protocol", "summarize_rounds", "summarize_runs", "stats_from_round_summaries",
           "robust_cv"]


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

    def scaled(self, divisor: float) -> "LatencyStats":
        """These statistics with every time divided by ``divisor`` (a drift correction; cv and n kept)."""
        d = float(divisor)
        return LatencyStats(self.p50_ms / d, self.p10_ms / d, self.p90_ms / d, self.mean_ms / d, self.std_ms / d,
                            self.cv, self.n)


def summarize_rounds(rounds: Sequence[Sequence[float]]) -> LatencyStats:
    """Statistics of per-call times (ms) grouped in rounds (see the module docstring)."""
    rounds = [np.asarray(r, dtype=float) for r in rounds if len(r)]
    if not rounds:
        raise ValueError("no timings to summarize")
    allv = np.concatenate(rounds)
    meds = np.array([np.median(r) for r in rounds])
    cv = robust_cv(meds)
    return LatencyStats(
        p50_ms=float(np.median(meds)),
        p10_ms=float(np.percentile(allv, 10)),
        p90_ms=float(np.percentile(allv, 90)),
        mean_ms=float(np.mean(allv)),
        std_ms=float(np.std(allv, ddof=1)) if len(allv) > 1 else 0.0,
        cv=cv,
        n=int(len(allv)),
    )


def robust_cv(values: Sequence[float]) -> float:
    """1.4826 x median absolute deviation / median (NaN for fewer than 2 values)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan")
    med = float(np.median(v))
    return float(1.4826 * np.median(np.abs(v - med)) / med) if med > 0 else float("nan")


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
    cv = robust_cv(a)
    return LatencyStats(float(np.median(a)), float("nan"), float("nan"), mean, std, cv, int(n))


@dataclass
class Protocol:
    """How a callable is timed.

    ``warmup`` calls (and at least ``warmup_s`` seconds) are run first; their median sets how many calls
    a round needs to last about ``round_s`` (clamped to ``[min_runs, max_runs]``) unless ``runs`` fixes it.
    Many short rounds beat a few long ones on a shared host: a burst of interference spoils one round,
    and the median of the round medians ignores it.
    """
    warmup: int = 5
    warmup_s: float = 0.05
    rounds: int = 7
    runs: int | None = None
    round_s: float = 0.03
    min_runs: int = 3
    max_runs: int = 2000
    max_cv: float = 0.05
    retries: int = 2
    attempts: dict = field(default_factory=dict, repr=False)   # per name: cv after each pass of the last call

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("attempts")
        return d

    def runs_per_round(self, call_ms: float) -> int:
        if self.runs:
            return int(self.runs)
        want = math.ceil(self.round_s * 1000.0 / max(call_ms, 1e-3))
        return int(min(self.max_runs, max(self.min_runs, want)))

    def _warm(self, fn: Callable[[], object]) -> float:
        """Warm ``fn`` up; returns the median time (ms) of the second half of the warm-up calls."""
        clock = time.perf_counter_ns
        warm, t0 = [], clock()
        while len(warm) < self.warmup or (clock() - t0) < self.warmup_s * 1e9:
            a = clock()
            fn()
            warm.append((clock() - a) / 1e6)
            if len(warm) >= 10 * max(self.warmup, 1) and len(warm) >= 1000:
                break
        return float(np.median(warm[len(warm) // 2:]))

    @staticmethod
    def _round(fn: Callable[[], object], runs: int) -> np.ndarray:
        clock = time.perf_counter_ns
        times = np.empty(runs)
        for i in range(runs):
            a = clock()
            fn()
            times[i] = clock() - a
        return times / 1e6

    def measure(self, fn: Callable[[], object]) -> LatencyStats:
        """Time ``fn`` with this protocol and return its statistics (see :meth:`measure_many`)."""
        return self.measure_many({"_": fn})["_"]

    def measure_many(self, fns: Mapping[str, Callable[[], object]]) -> dict[str, LatencyStats]:
        """Time every callable of ``fns`` with rounds interleaved across them; ``{name: LatencyStats}``.

        Each callable is warmed up, then ``rounds`` rounds are run, each round timing every callable
        once (the order rotates from round to round). A callable whose round medians vary by more than
        ``max_cv`` gets ``rounds`` more rounds (interleaved with the other unsteady ones), up to
        ``retries`` times; its statistics cover all its rounds, so a disturbed round weighs less and
        less in the median of round medians. ``attempts`` holds, per name, the cv after each pass.
        """
        names = list(fns)
        per_round = {k: self.runs_per_round(self._warm(fns[k])) for k in names}
        rounds: dict[str, list[np.ndarray]] = {k: [] for k in names}
        self.attempts = {k: [] for k in names}
        todo, stats = names, {}
        for attempt in range(1 + max(0, self.retries)):
            for r in range(self.rounds):
                shift = (r + attempt * self.rounds) % len(todo)
                for k in todo[shift:] + todo[:shift]:
                    rounds[k].append(self._round(fns[k], per_round[k]))
            for k in todo:
                stats[k] = summarize_rounds(rounds[k])
                self.attempts[k].append(stats[k].cv)
            todo = [k for k in todo if stats[k].cv > self.max_cv]
            if not todo:
                break
        return {k: stats[k] for k in names}
