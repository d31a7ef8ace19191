"""The probe: a few fixed reference units whose latencies say how fast this host is right now.

A table records its probe (the probe units' medians, measured with the table). Re-measuring the probe
takes seconds and answers two questions:

* **Is this the machine the table describes?** Another machine of the same name can be 1.5x slower,
  and not uniformly so. :meth:`ProbeCheck.ok` is False when any probe unit moved by more than a
  tolerance.
* **How much has the host drifted?** Shared machines speed up and slow down by 5-10 % over minutes.
  While a table (or a set of networks) is measured, the probe is measured between batches;
  :meth:`Probe.ratio` (the geometric mean of the probe units' ratios to the reference) is the host's
  speed relative to the reference, and dividing a batch's latencies by it puts every batch on the
  reference's scale.

The probe is always timed on its own, with the table's protocol: a unit's latency depends on what it is
interleaved with (caches), so a probe mixed into a batch and the same probe timed alone differ.

This module knows nothing of the search space: the probe units are any objects with a ``key`` and a
``build()`` returning ``(module, input_shape)`` (``nas.space.units.probe_units()`` provides them).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from profilers.stats import LatencyStats

__all__ = ["Probe", "ProbeCheck", "check_probe", "DEFAULT_TOLERANCE", "PROBE_TRIES"]

#: how far (relative) a probe unit may move before a table is taken not to describe this host
DEFAULT_TOLERANCE = 0.20
#: probe measurements before a host is declared different (a shared host can be 20-30 % slower for a while)
PROBE_TRIES = 3


@dataclass
class Probe:
    """Probe units and their reference medians (ms; ``None`` until the first measurement sets them)."""
    specs: Sequence
    reference: dict[str, float] | None = None
    factors: list[float] = field(default_factory=list)      # factor of every batch measured so far
    ratios: list[float] = field(default_factory=list)       # every probe measurement, relative to the reference

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.specs]

    def ratio(self, stats: Mapping[str, LatencyStats]) -> float:
        """Host speed now relative to the reference (>1: slower now): the geometric mean of the probe
        units' ratios. The first call, when there is no reference yet, makes ``stats`` the reference."""
        now = {k: float(stats[k].p50_ms) for k in self.keys}
        if not self.reference:
            self.reference = now
            r = 1.0
        else:
            r = math.exp(sum(math.log(now[k] / self.reference[k]) for k in self.keys) / len(self.keys))
        self.ratios.append(r)
        return r

    def to_meta(self, extra: dict | None = None) -> dict:
        return {"units": [s.to_dict() if hasattr(s, "to_dict") else {"key": s.key} for s in self.specs],
                "p50_ms": dict(self.reference or {}), **(extra or {})}


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
