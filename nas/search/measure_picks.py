"""The picks measured end to end on the target's runtime, where it can run here: whole networks as
deployed (the table's resolution and classes, random weights: latency does not depend on them), kept in a
journal keyed by what measured them (``measured-<hash>.csv``)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

from nas.latency.measure import make_profiler, measure_archs, table_key
from nas.latency.predictor import LatencyPredictor
from nas.latency.tables import is_local
from nas.search.comparison import REFERENCE
from nas.search.objective import Evaluation
from profilers.base import ProfilerUnavailable

__all__ = ["measure_picks"]

log = logging.getLogger(__name__)


def measure_picks(picks: Mapping[str, Evaluation], pred: LatencyPredictor, table: Path, out: Path, device: str,
                  runtime: str, threads: int | None = None, progress: bool = True) -> dict[str, float] | None:
    """Each pick's measured median latency (ms) by name, measured on ``device``'s ``runtime`` with ``threads``
    (default: the device's) and the table's runtime settings; None when there is nothing to measure or it
    cannot be measured here (said in the log)."""
    if not picks:
        return None
    if not is_local(pred.meta):
        log.info(f"Picks not measured end to end: {device} is not this machine, and its latencies are "
                 f"measured there")
        return None
    try:
        profiler = make_profiler(device, runtime, threads, pred.meta.get("settings"))
        profiler.check_ready()
    except (ProfilerUnavailable, KeyError, ValueError) as e:
        log.info(f"Picks not measured end to end on {device} ({runtime}): {e}")
        return None
    log.info(f"Measuring the picks end to end on {device} ({runtime}, {pred.img_size} px) ...")
    try:
        rows = measure_archs([e.arch for e in picks.values()], profiler, out, "measured",
                             pred.img_size, pred.num_classes, desc="measuring picks",
                             table=table_key(table, pred.meta), progress=progress,
                             probe_reference=(pred.meta.get("probe") or {}).get("p50_ms"))
    except ProfilerUnavailable as e:
        log.info(f"Picks not measured end to end on {device} ({runtime}): {e}")
        return None
    measured = {}
    for (n, ev), ms in zip(picks.items(), rows["p50_ms"]):
        measured[n] = float(ms)
        log.info(f"  {'S0 (reference)' if n == REFERENCE else n:16s} measured {ms:8.3f} ms   predicted "
                 f"{ev.latency_ms:8.3f} ms   ({(ev.latency_ms - ms) / ms * 100:+.1f} %)")
    return measured
