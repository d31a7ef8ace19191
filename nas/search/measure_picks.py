"""The picks measured end to end on the target's runtime, where it can run here: whole networks as
deployed (the table's resolution and classes, random weights: latency does not depend on them), kept in a
journal keyed by what measured them (``measured-<hash>.csv``)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

from nas.latency.networks import measure_archs, table_key, table_profiler
from nas.latency.predictor import LatencyPredictor
from nas.search.comparison import REFERENCE
from nas.search.objective import Evaluation
from profilers.plugin.options import OptionsError
from profilers.runtimes import ProfilerUnavailable
from profilers.tables.table import LatencyTable

__all__ = ["measure_picks"]

log = logging.getLogger(__name__)


def measure_picks(picks: Mapping[str, Evaluation], pred: LatencyPredictor, table: LatencyTable, out: Path,
                  device: str, runtime: str, threads: int | None = None,
                  progress: bool = True) -> dict[str, float] | None:
    """Each pick's measured median latency (ms) by name, measured with the table's plugin set up as the table
    was measured (``threads``: default the table's); None when there is nothing to measure or it cannot be
    measured here (said in the log)."""
    if not picks:
        return None
    if not table.meta.local:
        log.info(f"Picks not measured end to end: {device} is not this machine, and its latencies are "
                 f"measured there")
        return None
    try:
        profiler = table_profiler(table, threads)
        profiler.check_ready()
    except (ProfilerUnavailable, OptionsError) as e:
        log.info(f"Picks not measured end to end on {device} ({runtime}): {e}")
        return None
    log.info(f"Measuring the picks end to end on {device} ({runtime}, {pred.img_size} px) ...")
    try:
        rows = measure_archs([e.arch for e in picks.values()], profiler, out, "measured",
                             pred.img_size, pred.num_classes, desc="measuring picks",
                             table=table_key(table), progress=progress, probe_reference=table.meta.probe_p50)
    except ProfilerUnavailable as e:
        log.info(f"Picks not measured end to end on {device} ({runtime}): {e}")
        return None
    measured = {}
    for (n, ev), ms in zip(picks.items(), rows["p50_ms"]):
        measured[n] = float(ms)
        log.info(f"  {'S0 (reference)' if n == REFERENCE else n:16s} measured {ms:8.3f} ms   predicted "
                 f"{ev.latency_ms:8.3f} ms   ({(ev.latency_ms - ms) / ms * 100:+.1f} %)")
    return measured
