"""Fit the predictor's calibration on whole networks measured end to end, and store it with the table.

The networks (S0/S1/S2/L where the space holds them, and random subnets) are measured with the table's
own runtime and protocol, interleaved with the probe units and put on the table's scale (resumable:
measurements are kept in ``runs/calibrate/``). The calibration (:mod:`nas.latency.calibration`:
non-negative, fitted on relative error, the simplest model that its leave-one-out error supports, clipped
to the measured range) is written beside the table as ``*.calibration.json``, where
:meth:`nas.latency.predictor.LatencyPredictor.from_table` picks it up. Command: ``python -m nas.calibrate``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nas.core.files import atomic_write_text, claim_output, exclusive
from nas.core.values import NONNEGATIVE_INT, POSITIVE_INT, WHOLE
from nas.latency.calibration import Calibration, CalibrationError, calibration_path
from nas.latency.networks import measure_archs, table_key, table_profiler
from nas.latency.predictor import LatencyPredictor, MissingLatencyError
from profilers.tables.table import LatencyTable

__all__ = ["calibrate", "format_report", "VARIANTS"]

VARIANTS = ("s0", "s1", "s2", "l")


def calibrate(target: str, runtime: str | None = None, n_random: int = 8, seed: int = 0,
              threads: int | None = None, out_dir: str | Path = "runs/calibrate", root=None,
              progress: bool = True, allow_foreign: bool | None = None, verify: str = "probe") -> Calibration:
    """Measure S0/S1/S2/L (those in the table's space) and ``n_random`` random subnets, fit, store.

    The table must be one this machine can measure networks for (not a reference device's, which ships
    as it is) and describe this host (``verify``: ``"probe"``, the probe re-measured too, or
    ``"fingerprint"``, for a table probed or measured just before); its calibration file and ``out_dir``
    are claimed before anything is measured, and the table's lock is held until the calibration is
    written."""
    n_random = NONNEGATIVE_INT.check("n_random", n_random)
    seed = WHOLE.check("seed", seed)
    if threads is not None:
        threads = POSITIVE_INT.check("threads", threads)
    table = LatencyTable.read(target, runtime, root)
    table.check_measurable_here("calibrate")
    table.verify_host(probe=verify == "probe", allow_foreign=allow_foreign)
    pred = LatencyPredictor.of_table(table, calibrated=False)
    path = table.path
    claim_output(calibration_path(path))
    claim_output(out_dir, folder=True)
    space = pred.space
    archs = [space.canonical(v) for v in VARIANTS if space.fits(v)]
    archs += [space.sample(seed * 100_003 + i) for i in range(n_random)]
    if len(archs) < 3:
        k = len(archs) - n_random
        raise CalibrationError(f"a calibration needs at least 3 networks: the space {space.name!r} holds {k} "
                               f"published variant(s), so ask for at least {3 - k} random subnets (--n)")
    missing = pred.missing_keys(archs)
    if missing:
        raise MissingLatencyError(missing, pred.fill_hint())
    profiler = table_profiler(table, threads)
    with exclusive(path, "latency table", folder=False):     # the table and its calibration: one writer
        rows = measure_archs(archs, profiler, out_dir, f"{Path(path).name.removesuffix('.csv')}.networks",
                             pred.img_size, pred.num_classes, desc="calibration networks", table=table_key(table),
                             probe_reference=table.meta.probe_p50, progress=progress)
        groups = np.array([pred.group_sums(a)[0] for a in archs])
        cal = Calibration.fit(groups, rows["p50_ms"].to_numpy(), archs=[a.to_dict() for a in archs])
        atomic_write_text(calibration_path(path), json.dumps(cal.to_dict(), indent=1))
    return cal


def format_report(cal: Calibration) -> str:
    r = cal.report
    loo = "  ".join(f"{m} {v:.2f}%" for m, v in r["loo_mape_pct"].items())
    return "\n".join([
        f"calibration on {cal.n} networks, model '{cal.model}': {cal.describe()}",
        f"leave-one-out MAPE per model: {loo}   (the simplest within 10% of the best is kept)",
        f"sum of blocks alone: MAPE {r['uncalibrated_mape_pct']:.2f}% (bias {r['uncalibrated_bias_pct']:+.2f}%)",
        f"calibrated fit:      MAPE {r['calibrated_mape_pct']:.2f}% (max {r['calibrated_max_abs_err_pct']:.2f}%)",
    ])
