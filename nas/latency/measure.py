"""End-to-end measurement of whole networks on a table's runtime (for calibration and validation).

Each measured network is appended to a CSV as soon as it is done, so a killed run resumes where it
stopped; networks are built from their architecture with :class:`models.EfficientFormerV2` and timed
with the same profiler plugin and protocol as the table's blocks.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from models import EfficientFormerV2
from nas.space.arch import Arch
from nas.space.units import probe_units
from profilers import get_profiler
from profilers.batch import measure_modules
from profilers.devices import get_device
from profilers.probe import Probe

__all__ = ["make_profiler", "measure_archs", "fidelity", "archs_from_csv"]

COLUMNS = ["arch", "p50_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "cv", "n", "measured_at", "probe_factor"]


def make_profiler(device: str, runtime: str | None = None, threads: int | None = None,
                  settings: dict | None = None):
    """The profiler plugin instance for ``device`` (and ``runtime``, default the device's own); with a
    table's recorded ``settings`` (its metadata's ``settings``), set up to time the way that table was
    timed (:meth:`profilers.base.Profiler.options_from_settings`)."""
    dev = get_device(device)
    rt = runtime or dev.runtime
    cls = get_profiler(rt)
    return cls(dev, threads=threads, **cls.options_from_settings(settings or {}))


def measure_archs(archs: Sequence[Arch], profiler, out_csv: str | Path, img_size: int = 224,
                  num_classes: int = 1000, desc: str = "measuring networks",
                  probe_reference: dict | None = None, progress: bool = True,
                  batch_size: int = 4, correct_drift: bool = False) -> pd.DataFrame:
    """Measure every arch end to end (resuming from ``out_csv``); returns the rows for ``archs``.

    Networks are measured in interleaved batches with the probe units (:mod:`profilers.batch`). With
    ``correct_drift`` and a ``probe_reference`` (a table's recorded probe medians), a batch during which
    the host was steadily off that reference is divided by the factor (``probe_factor``, kept in the CSV
    beside each row; 1 when not corrected).
    """
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(out_csv) if out_csv.exists() and out_csv.stat().st_size else pd.DataFrame(columns=COLUMNS)
    have = set(done["arch"])
    todo = [a for a in archs if a.to_json() not in have]
    if todo:
        new_file = not out_csv.exists() or not out_csv.stat().st_size
        probe = Probe(probe_units(), reference=dict(probe_reference) if probe_reference else None)

        def build(arch):
            return lambda: (EfficientFormerV2(arch.net_config(num_classes), img_size=img_size),
                            (1, 3, img_size, img_size))

        with open(out_csv, "a", newline="") as f:
            w = csv.writer(f)
            if new_file:
                w.writerow(COLUMNS)

            def on_result(key, st, factor):
                w.writerow([key, st.p50_ms, st.p10_ms, st.p90_ms, st.mean_ms, st.std_ms, st.cv, st.n,
                            time.strftime("%Y-%m-%dT%H:%M:%S"), round(float(factor), 5)])
                f.flush()

            measure_modules(profiler, [(a.to_json(), build(a)) for a in todo], probe, batch_size=batch_size,
                            progress=progress, desc=desc, on_result=on_result, correct_drift=correct_drift)
        done = pd.read_csv(out_csv)
    by_arch = done.drop_duplicates("arch", keep="last").set_index("arch")
    return by_arch.loc[[a.to_json() for a in archs]].reset_index()


def fidelity(predicted: Sequence[float], measured: Sequence[float]) -> dict:
    """MAPE, share within ±5 % and ±10 %, and Spearman rank correlation."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    err = (p - m) / m
    rp, rm = pd.Series(p).rank().to_numpy(), pd.Series(m).rank().to_numpy()
    spearman = float(np.corrcoef(rp, rm)[0, 1]) if len(p) > 1 else float("nan")
    return {"n": int(len(p)), "mape_pct": float(np.mean(np.abs(err)) * 100),
            "within_5_pct": float(np.mean(np.abs(err) <= 0.05) * 100),
            "within_10_pct": float(np.mean(np.abs(err) <= 0.10) * 100),
            "bias_pct": float(np.mean(err) * 100), "spearman": spearman}


def archs_from_csv(df: pd.DataFrame) -> list[Arch]:
    return [Arch.from_dict(json.loads(s)) for s in df["arch"]]
