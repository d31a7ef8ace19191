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

A shared host's speed also jumps within seconds (measured on a 2-core cloud EPYC: from 0.7x to 1.5x of
its median from one sweep over a batch to the next, for every entry of the sweep alike). With
``common_mode`` on and at least :data:`MIN_COMMON` entries, :meth:`Protocol.measure_many` therefore
removes that common part: the log round medians form an entries x sweeps table, a median polish
(:func:`sweep_factors`, Tukey's two-way fit: log time = entry level + sweep effect + residual) estimates
each sweep's host-speed factor from all entries timed in it, and every round is divided by its sweep's
factor (factors are centred on the batch's median sweep, so latencies keep the batch's typical host
speed) before the statistics are taken. ``cv`` then measures how much an entry moves against the entries
timed beside it, which is what sums and rankings of table entries depend on; the host's own variation is
kept apart in the timing's ``host_factors`` (:class:`Timing`). At the default 7 rounds this made entries agree better with
their own second measurement, relative to each other, in every run of
``benchmarks/protocol_common_mode.py`` (benchmarks/results/protocol_common_mode.txt).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from nas.core.values import (FLAG, NONNEGATIVE_FLOAT, NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, ConfigError,
                             check_settings, setting)

__all__ = ["LatencyStats", "Protocol", "Timing", "summarize_rounds", "summarize_runs", "stats_from_round_summaries",
           "robust_cv", "sweep_factors", "MIN_COMMON"]

#: fewest entries timed in one sweep for the sweep's common host-speed factor to be estimated
MIN_COMMON = 3

#: times a round: ``timer(fn, runs)`` -> the ``runs`` call times of ``fn`` in ms
Timer = Callable[[Callable[[], object], int], np.ndarray]


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one unit or network, in milliseconds. ``n`` is the number of timed calls.

    ``p10_ms``/``p90_ms`` (and ``std_ms``) are NaN where the tool that measured it does not report
    per-run times (TFLite ``benchmark_model`` on a phone, for instance). ``compute``: where the device says
    which compute units ran the model, their shares of its work (``(("neural_engine", 0.97), ("cpu", 0.03))``,
    summing to 1; None where it does not say).
    """
    p50_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    cv: float
    n: int
    compute: tuple[tuple[str, float], ...] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def scaled(self, divisor: float) -> "LatencyStats":
        """These statistics with every time divided by ``divisor`` (a drift correction; cv and n kept)."""
        d = float(divisor)
        return LatencyStats(self.p50_ms / d, self.p10_ms / d, self.p90_ms / d, self.mean_ms / d, self.std_ms / d,
                            self.cv, self.n, self.compute)

    def with_compute(self, shares: Mapping[str, float] | None) -> "LatencyStats":
        """These statistics with the compute units' ``shares`` (unit name -> share of the work)."""
        if not shares:
            return self
        return LatencyStats(self.p50_ms, self.p10_ms, self.p90_ms, self.mean_ms, self.std_ms, self.cv, self.n,
                            tuple((str(k).lower(), float(v)) for k, v in shares.items()))


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


def sweep_factors(log_medians, min_common: int = MIN_COMMON, iters: int = 50) -> np.ndarray:
    """Each sweep's common host-speed factor from an entries x sweeps array of log round medians (NaN
    where an entry was not timed in a sweep), by median polish; ``exp`` of the sweep effects, centred so
    that the median sweep has factor 1. A sweep with fewer than ``min_common`` timed entries gets 1 (too
    few entries to tell the host from the entries)."""
    x = np.asarray(log_medians, dtype=float)
    if x.ndim != 2:
        raise ValueError("sweep_factors takes an entries x sweeps array")
    seen = np.isfinite(x)
    ok = seen.sum(axis=0) >= int(min_common)
    col = np.zeros(x.shape[1])
    if not ok.any():
        return np.ones(x.shape[1])
    rows = seen.any(axis=1)
    row = np.zeros(x.shape[0])
    for _ in range(int(iters)):
        row[rows] = np.nanmedian(x[rows] - col[None, :], axis=1)
        new = np.zeros_like(col)
        new[ok] = np.nanmedian(x[:, ok] - row[:, None], axis=0)
        new[ok] -= np.median(new[ok])
        done = np.max(np.abs(new - col)) < 1e-9
        col = new
        if done:
            break
    return np.exp(col)


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


@dataclass(frozen=True)
class Timing:
    """What :meth:`Protocol.measure_many` measured: each entry's ``stats``, its cv after each pass
    (``attempts``) and the host-speed factor of every sweep the common mode divided out
    (``host_factors``)."""
    stats: dict[str, LatencyStats]
    attempts: dict[str, list[float]]
    host_factors: list[float]


@dataclass(frozen=True)
class Protocol:
    """How a callable is timed.

    ``warmup`` calls (and at least ``warmup_s`` seconds) are run first; their median sets how many calls
    a round needs to last about ``round_s`` (clamped to ``[min_runs, max_runs]``) unless ``runs`` fixes it.
    Many short rounds beat a few long ones on a shared host: a burst of interference spoils one round,
    and the median of the round medians ignores it. ``common_mode`` removes the host speed that all
    entries of a sweep share (see the module docstring); :meth:`measure` (one entry) never does.
    """
    warmup: int = setting(5, NONNEGATIVE_INT, help="warm-up calls")
    warmup_s: float = setting(0.05, NONNEGATIVE_FLOAT, help="warm-up seconds at least")
    rounds: int = setting(7, POSITIVE_INT, help="timed rounds per unit")
    runs: int | None = setting(None, POSITIVE_INT, optional=True, help="timed calls per round (default: enough for "
                                                                      "round_s seconds)")
    round_s: float = setting(0.03, POSITIVE_FLOAT, help="seconds a round lasts")
    min_runs: int = setting(3, POSITIVE_INT)
    max_runs: int = setting(2000, POSITIVE_INT)
    max_cv: float = setting(0.05, POSITIVE_FLOAT, help="re-measure a unit whose round medians vary more than this")
    retries: int = setting(2, NONNEGATIVE_INT, help="extra passes at most for unsteady units")
    common_mode: bool = setting(True, FLAG, help="divide each sweep over a batch by the host speed its units share")

    def __post_init__(self):
        check_settings(self)
        if self.min_runs > self.max_runs:
            raise ConfigError(f"min_runs ({self.min_runs}) must not exceed max_runs ({self.max_runs})")

    def to_dict(self) -> dict:
        return asdict(self)

    def runs_per_round(self, call_ms: float) -> int:
        if self.runs:
            return int(self.runs)
        want = math.ceil(self.round_s * 1000.0 / max(call_ms, 1e-3))
        return int(min(self.max_runs, max(self.min_runs, want)))

    def _warm(self, fn: Callable[[], object], timer: Timer | None = None) -> float:
        """Warm ``fn`` up (each call timed by ``timer``, :meth:`time_round` by default); returns the median
        time (ms) of the second half of the warm-up calls."""
        timer = timer or self.time_round
        clock = time.perf_counter_ns
        warm, t0 = [], clock()
        while len(warm) < self.warmup or (clock() - t0) < self.warmup_s * 1e9:
            warm.append(float(timer(fn, 1)[0]))
            if len(warm) >= 10 * max(self.warmup, 1) and len(warm) >= 1000:
                break
        return float(np.median(warm[len(warm) // 2:]))

    @staticmethod
    def time_round(fn: Callable[[], object], runs: int) -> np.ndarray:
        """``runs`` back-to-back calls of ``fn``, each timed with ``time.perf_counter_ns``; their times (ms).
        The default ``timer`` of :meth:`measure_many`: a plugin whose device has its own clock (CUDA events)
        passes one with the same signature."""
        clock = time.perf_counter_ns
        times = np.empty(runs)
        for i in range(runs):
            a = clock()
            fn()
            times[i] = clock() - a
        return times / 1e6

    def measure(self, fn: Callable[[], object], timer: Timer | None = None) -> LatencyStats:
        """Time ``fn`` with this protocol and return its statistics (see :meth:`measure_many`)."""
        return self.measure_many({"_": fn}, timer).stats["_"]

    def measure_many(self, fns: Mapping[str, Callable[[], object]], timer: Timer | None = None) -> "Timing":
        """Time every callable of ``fns`` with rounds interleaved across them; a :class:`Timing` (their
        ``stats``, the cv after each pass of each, the host-speed factor of each sweep divided out).

        Each callable is warmed up, then ``rounds`` rounds are run, each round timing every callable
        once (the order rotates from round to round). A callable whose round medians vary by more than
        ``max_cv`` gets ``rounds`` more rounds (interleaved with the other unsteady ones), up to
        ``retries`` times; its statistics cover all its rounds, so a disturbed round weighs less and
        less in the median of round medians. With ``common_mode`` and at least :data:`MIN_COMMON`
        entries, every round is first divided by its sweep's host-speed factor (:func:`sweep_factors`;
        the timing's ``host_factors`` are those of the sweeps that had enough entries to estimate one,
        empty without common mode). ``timer(fn, runs)`` times a round (:meth:`time_round`,
        ``perf_counter``, by default).
        """
        timer = timer or self.time_round
        names = list(fns)
        per_round = {k: self.runs_per_round(self._warm(fns[k], timer)) for k in names}
        rounds: dict[str, list[tuple[int, np.ndarray]]] = {k: [] for k in names}   # (sweep, call times)
        attempts: dict[str, list[float]] = {k: [] for k in names}
        todo, stats, sweep = names, {}, 0
        for attempt in range(1 + max(0, self.retries)):
            for r in range(self.rounds):
                shift = (r + attempt * self.rounds) % len(todo)
                for k in todo[shift:] + todo[:shift]:
                    rounds[k].append((sweep, timer(fns[k], per_round[k])))
                sweep += 1
            factors, estimated = self._host_factors(names, rounds, sweep)
            for k in todo:
                stats[k] = summarize_rounds([t / factors[s] for s, t in rounds[k]])
                attempts[k].append(stats[k].cv)
            todo = [k for k in todo if stats[k].cv > self.max_cv]
            if not todo:
                break
        return Timing({k: stats[k] for k in names}, attempts, [float(f) for f, e in zip(factors, estimated) if e])

    def _host_factors(self, names: list[str], rounds: dict, sweeps: int) -> tuple[np.ndarray, np.ndarray]:
        """Per sweep, the host-speed factor shared by its entries (1 without ``common_mode`` or where fewer
        than :data:`MIN_COMMON` entries were timed), and whether it was estimated."""
        if not self.common_mode or len(names) < MIN_COMMON:
            return np.ones(sweeps), np.zeros(sweeps, dtype=bool)
        x = np.full((len(names), sweeps), np.nan)
        for i, k in enumerate(names):
            for s, t in rounds[k]:
                med = float(np.median(t))
                if med > 0:
                    x[i, s] = math.log(med)
        return sweep_factors(x), np.isfinite(x).sum(axis=0) >= MIN_COMMON
