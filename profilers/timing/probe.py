"""The probe: a few fixed reference units whose latencies say how fast this host is right now.

A table records its probe (the probe units' medians, measured with the table). Re-measuring the probe
takes seconds and answers two questions:

* **Is this the machine the table describes?** Another machine of the same name can be 1.5x slower,
  and not uniformly so. :meth:`ProbeCheck.ok` is False when any probe unit moved by more than a
  tolerance.
* **How much has the host drifted?** Shared machines speed up and slow down by 5-10 % over minutes.
  While a table (or a set of networks) is measured, the probe is measured between batches;
  :func:`probe_ratio` (the geometric mean of the probe units' ratios to the reference) is the host's
  speed relative to the reference, and dividing a batch's latencies by it puts every batch on the
  reference's scale (:mod:`profilers.timing.batch`).

The probe is always timed on its own, with the table's protocol: a unit's latency depends on what it is
interleaved with (caches), so a probe mixed into a batch and the same probe timed alone differ.

This module knows nothing of the search space or of the runtimes: it compares probe medians.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from profilers.timing.protocol import LatencyStats

__all__ = ["probe_ratio", "ProbeCheck", "check_probe", "DEFAULT_TOLERANCE", "PROBE_TRIES"]

#: how far (relative) a probe unit may move before a table is taken not to describe this host
DEFAULT_TOLERANCE = 0.20
#: probe measurements before a host is declared different (a shared host can be 20-30 % slower for a while)
PROBE_TRIES = 3


def probe_ratio(reference: Mapping[str, float], stats: Mapping[str, LatencyStats]) -> float:
    """Host speed now relative to ``reference`` (>1: slower now): the geometric mean of the probe units'
    ratios of ``stats`` (the probe measured now) to their reference medians."""
    return math.exp(sum(math.log(float(stats[k].p50_ms) / reference[k]) for k in reference) / len(reference))


@dataclass
class ProbeCheck:
    """A re-measured probe against a table's: per-unit ratios (now / then) and the verdict."""
    ratios: dict[str, float]
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def factor(self) -> float:
        """Geometric mean of the ratios: how much slower (>1) or faster this host is than the table says."""
        return math.exp(sum(math.log(r) for r in self.ratios.values()) / len(self.ratios))

    @property
    def ok(self) -> bool:
        return all(abs(r - 1.0) <= self.tolerance for r in self.ratios.values())

    def describe(self) -> str:
        parts = ", ".join(f"{k} {100 * (r - 1):+.1f}%" for k, r in self.ratios.items())
        return (f"probe {100 * (self.factor - 1):+.1f}% overall ({parts}); tolerance ±{100 * self.tolerance:.0f}%")

    @classmethod
    def compare(cls, reference: Mapping[str, float], stats: Mapping[str, LatencyStats],
                tolerance: float = DEFAULT_TOLERANCE) -> "ProbeCheck":
        return cls({k: float(stats[k].p50_ms) / float(v) for k, v in reference.items()}, tolerance)


def check_probe(reference: Mapping[str, float], measure: Callable[[], Mapping[str, LatencyStats]],
                tolerance: float = DEFAULT_TOLERANCE, tries: int = PROBE_TRIES, pause_s: float = 2.0) -> ProbeCheck:
    """Compare freshly measured probe units (``measure()``) with ``reference``, up to ``tries`` times,
    ``pause_s`` apart: a busy neighbour passes, another machine stays off. Returns the try closest to the
    reference."""
    best = None
    for i in range(max(1, tries)):
        if i:
            time.sleep(pause_s)
        stats = measure()
        got = ProbeCheck.compare(reference, {k: stats[k] for k in reference}, tolerance)
        if best is None or abs(math.log(got.factor)) < abs(math.log(best.factor)):
            best = got
        if best.ok:
            break
    return best
