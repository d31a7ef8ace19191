"""Whole networks measured end to end on a table's runtime (for calibration, validation and the search's
check of its picks).

Networks are built from their architecture with :class:`models.EfficientFormerV2` and timed by the plugin set
up as the table was measured (:meth:`profilers.plugin.base.Profiler.for_table`): the same runtime, options and
protocol as its units. Each measured network is appended to a journal (:mod:`nas.core.journal`) as soon as it
is done, so a killed run resumes where it stopped; the journal is keyed by everything that produced its rows,
so a run with other settings measures again instead of replaying them.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from models import EfficientFormerV2
from nas.core.journal import Journal, JournalError
from nas.space.arch import Arch
from nas.space.modules import unit_builders
from nas.space.units import probe_units
from profilers.runtimes import UnitFailed, get_profiler
from profilers.tables.table import LatencyTable
from profilers.timing.batch import measure_batches
from profilers.timing.host import host_id

__all__ = ["table_to_time", "table_profiler", "network_builder", "measure_archs", "measurement_settings", "table_key", "fidelity", "archs_from_csv",
           "COLUMNS"]

COLUMNS = ["arch", "p50_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "cv", "n", "measured_at", "probe_factor"]


def table_to_time(target: str, runtime: str | None, root, command: str) -> LatencyTable:
    """The table of ``target`` read for whole networks to be timed against it, here or on its device
    (``command``: calibrate, validate); :class:`~profilers.tables.table.TableError` when it is a reference
    device's table, which was measured on another machine and ships as it is."""
    table = LatencyTable.read(target, runtime, root)
    table.check_measurable_here(command)
    return table


def table_profiler(table: LatencyTable, threads: int | None = None):
    """The plugin of ``table``'s runtime set up to time networks as the table's units were timed (its
    device as recorded, options, protocol; ``threads`` overrides its thread count)."""
    return get_profiler(table.meta.runtime).for_table(table.meta, threads=threads)


def measurement_settings(profiler, img_size: int, num_classes: int, *, table: dict | None = None,
                         probe_reference: dict | None = None, correct_drift: bool = False) -> dict:
    """Everything that decides what an end-to-end measurement of a network gives: the device, runtime and
    its version, precision, threads, cores and runtime settings of ``profiler``, its protocol, this host
    (for a device measured here), the resolution and classes, the probe reference and drift correction,
    and ``table`` (what identifies the table the measurements serve). A file of measured networks is keyed
    by it (:meth:`nas.core.journal.Journal.keyed`)."""
    dev = profiler.device
    return {"device": dev.name, "runtime": profiler.name, "runtime_version": profiler.runtime_version(),
            "precision": dev.precision, "threads": profiler.threads, "cpus": profiler.cpus,
            "settings": profiler.settings(), "protocol": profiler.protocol.to_dict(),
            "host": host_id() if dev.connection_type == "local" else dev.connection_type,
            "img_size": int(img_size), "num_classes": int(num_classes), "table": table,
            "probe_reference": probe_reference, "correct_drift": bool(correct_drift)}


def table_key(table: LatencyTable) -> dict:
    """What identifies a table for the measurements that serve it: its path and when it was created."""
    return {"path": str(Path(table.path).resolve()), "created": table.meta.created}


def _record(journal: Journal, line: int, r: dict) -> dict:
    """A measured-network row checked: the arch parses, ``p50_ms`` is a finite positive number and the
    other numbers are numbers (or empty)."""
    try:
        Arch.from_json(r["arch"])
        out = {"arch": r["arch"], "measured_at": r["measured_at"]}
        for c in COLUMNS:
            if c in ("arch", "measured_at"):
                continue
            out[c] = float(r[c]) if r[c] != "" else float("nan")
        if not (math.isfinite(out["p50_ms"]) and out["p50_ms"] > 0):
            raise ValueError("p50_ms must be a finite positive number")
    except (ValueError, KeyError) as e:
        raise JournalError(f"{journal.what} {journal.path}, line {line}: not a measured network ({e}); "
                           f"{journal.fix}") from None
    return out


def network_builder(arch: Arch, img_size: int = 224, num_classes: int = 1000):
    """A builder of ``arch``'s whole network (``() -> (module, input_shape)``, batch 1), as
    :mod:`profilers.timing.batch` takes them: built only when its turn comes."""
    return lambda: (EfficientFormerV2(arch.net_config(num_classes), img_size=img_size), (1, 3, img_size, img_size))


def measure_archs(archs: Sequence[Arch], profiler, folder: str | Path, stem: str, img_size: int = 224,
                  num_classes: int = 1000, desc: str = "measuring networks", *, table: dict | None = None,
                  probe_reference: dict | None = None, progress: bool = True,
                  batch_size: int = 4, correct_drift: bool = False) -> pd.DataFrame:
    """Measure every arch end to end and return the rows for ``archs`` (columns :data:`COLUMNS`).

    Rows are kept in a journal in ``folder`` named ``{stem}-{digest}.csv``, the digest of
    :func:`measurement_settings` (written beside it as JSON): a killed run resumes where it stopped, and a
    run with other settings (threads, runtime, table, ...) measures again instead of replaying numbers
    those settings did not produce. Networks are measured in interleaved batches with the probe units
    (:mod:`profilers.timing.batch`). With ``correct_drift`` and a ``probe_reference`` (a table's recorded probe
    medians), a batch during which the host was steadily off that reference is divided by the factor
    (``probe_factor``, kept beside each row; 1 when not corrected).
    """
    settings = measurement_settings(profiler, img_size, num_classes, table=table, probe_reference=probe_reference,
                                    correct_drift=correct_drift)
    journal = Journal.keyed(folder, stem, COLUMNS, settings, what="measured networks",
                            fix="delete it to measure those networks again")
    done = {r["arch"] for r in journal.records()}
    todo = [a for a in archs if a.to_json() not in done]
    if todo:
        profiler.writes_to(journal.path)
        probe = unit_builders(probe_units()) if profiler.device.local else None   # the probe: this host's speed
        with journal:
            for batch in measure_batches(profiler, [(a.to_json(), network_builder(a, img_size, num_classes)) for a in todo], probe, probe_reference,
                                         batch_size=batch_size, progress=progress, desc=desc,
                                         correct_drift=correct_drift):
                for key, st in batch.stats.items():
                    journal.append([key, st.p50_ms, st.p10_ms, st.p90_ms, st.mean_ms, st.std_ms, st.cv, st.n,
                                    time.strftime("%Y-%m-%dT%H:%M:%S"), round(float(batch.factor), 5)])
                if batch.failures:
                    why = next(iter(batch.failures.values()))
                    raise UnitFailed(f"{len(batch.failures)} network(s) could not be measured on "
                                     f"{profiler.device.name} (e.g. {why}); the others are kept: rerun to try them "
                                     f"again")
    rows = {}
    for i, r in enumerate(journal.records(), start=2):
        rows[r["arch"]] = _record(journal, i, r)
    return pd.DataFrame([rows[a.to_json()] for a in archs], columns=COLUMNS)


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
