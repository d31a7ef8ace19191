"""Table runs: measure every unit of a search space that a latency table lacks, with any plugin.

:func:`run_table` is what ``python -m profilers.<runtime>`` runs: one writer per table (a lock), the table's
settings, options and host checked before anything is measured (:func:`profilers.tables.table.check_host`, the
check the predictor uses too), units measured in interleaved batches with the probe
(:func:`profilers.timing.batch.measure_batches`), one flushed row per finished unit, and the metadata joined
with the table's (:meth:`profilers.tables.meta.TableMeta.joined`). :func:`shard_specs` splits a space into
``n`` shards measured on as many machines of one kind and merged afterwards (``python -m profilers.merge``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nas.core.files import exclusive
from nas.space.modules import unit_builders

from profilers.tables.meta import TABLE_FIELDS, ProbeRecord, TableError, TableMeta, now_iso
from profilers.tables.table import TableWriter, check_host, existing_keys, scale_rows
from profilers.timing.batch import DEFAULT_BATCH, measure_batches, measure_modules
from profilers.timing.probe import DEFAULT_TOLERANCE

if TYPE_CHECKING:
    from profilers.plugin.base import Profiler

__all__ = ["run_table", "TableRun", "parse_shard", "shard_specs"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# sharding
# ----------------------------------------------------------------------------------------------
def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (1 <= i <= n) -> ``(i, n)``."""
    if text in (None, ""):
        return None
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/n, e.g. 1/4 (got {text!r})") from None
    if not (n >= 1 and 1 <= i <= n):
        raise ValueError(f"--shard {text}: need 1 <= i <= n")
    return i, n


def shard_specs(specs: Sequence, shard: tuple[int, int] | None) -> list:
    """Shard ``i`` of ``n``: every n-th unit of the key-sorted list, starting at the i-th (deterministic,
    balanced across kinds; the n shards partition the units)."""
    specs = sorted(specs, key=lambda s: s.key)
    if not shard:
        return specs
    i, n = shard
    return [s for j, s in enumerate(specs) if j % n == i - 1]


# ----------------------------------------------------------------------------------------------
# table runs
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableRun:
    """What :func:`run_table` did: the table's ``path``, units ``measured`` now, ``skipped`` (already
    there), ``remaining`` (left by ``limit``, or failed), ``seconds`` of this run, the range of the probe's
    drift factors over its batches (None without a probe), and the units the device could not run
    (``failed``: key -> why; a rerun tries them again)."""
    path: str
    measured: int
    skipped: int
    remaining: int
    seconds: float
    drift: tuple[float, float] | None = None
    failed: dict[str, str] = field(default_factory=dict)


def run_table(profiler: Profiler, specs: Sequence, out: str | Path, *, space_name: str, img_size: int,
              num_classes: int, limit: int | None = None, progress: bool = True, shard=None,
              probe_specs: Sequence | None = None, space: dict | None = None,
              tolerance: float = DEFAULT_TOLERANCE, batch_size: int = DEFAULT_BATCH,
              correct_drift: bool = False) -> TableRun:
    """Measure every unit of ``specs`` missing from table ``out``, appending one flushed row per unit.

    Units are measured in interleaved batches (:func:`profilers.timing.batch.measure_batches`). With
    ``probe_specs`` (``nas.space.units.probe_units()``) each batch also times the probe and its latencies
    are compared with the table's probe reference (recorded in the metadata by the first run; a later
    run on a host whose probe moved by more than ``tolerance`` is refused). ``space`` (the search space
    as a dict) is recorded in the metadata.
    """
    out = Path(out)
    with exclusive(out, "latency table"):                 # one writer per table
        return _run_table(profiler, specs, out, space_name=space_name, img_size=img_size, num_classes=num_classes,
                          limit=limit, progress=progress, shard=shard, probe_specs=probe_specs, space=space,
                          tolerance=tolerance, batch_size=batch_size, correct_drift=correct_drift)


def _check_appendable(profiler: Profiler, out: Path, old: TableMeta, new: TableMeta, probe_specs, tolerance) -> None:
    """TableError unless rows measured now may join the table at ``out``: the same device, runtime,
    precision, threads and runtime options, and this host (fingerprint, runtime version and probe: rows of
    two machines never share a table)."""
    diffs = old.differences(new)
    if old.settings:
        had = profiler.Options.from_settings(old.settings, str(out))
        diffs += [f"{k}: table has {v!r}, this run {getattr(profiler.options, k)!r}" for k, v in had.to_dict().items()
                  if v != profiler.options.to_dict()[k]]
    if diffs:
        raise TableError(f"{out} was measured with other settings ({'; '.join(diffs)}); write to another table "
                         f"with --out, or remove it to start over")
    measure = (lambda: measure_modules(profiler, unit_builders(probe_specs), progress=False)) if probe_specs else False
    check = check_host(out, old, probe=measure, tolerance=tolerance, runtime_version=new.runtime_version)
    if not check.ok:
        raise TableError(f"{out} was measured on another machine, or one much busier than now ({check.describe()}); "
                         f"its rows and this host's must not be mixed. Write this host's table elsewhere with --out, "
                         f"or remove it and measure again")
    if check.probe is not None:
        log.debug("%s: probe within tolerance (%s)", out, check.probe.describe())


def _run_table(profiler: Profiler, specs: Sequence, out: Path, *, space_name, img_size, num_classes, limit,
               progress, shard, probe_specs, space, tolerance, batch_size, correct_drift) -> TableRun:
    profiler.writes_to(out)
    new = profiler.table_meta(space_name, img_size, num_classes)
    have = existing_keys(out)
    todo = [s for s in specs if s.key not in have]
    if limit is not None:
        todo = todo[:max(0, int(limit))]
    profiler.check_ready()
    old = TableMeta.read(out)
    if old is not None and have:
        _check_appendable(profiler, out, old, new, probe_specs if todo else None, tolerance)
    new = new.replace(space_def=space, extra={**({"shard": f"{shard[0]}/{shard[1]}"} if shard else {})})
    meta = old.joined(new, keep=TABLE_FIELDS + (("host",) if have else ())) if old else new.joined(new)
    meta.write(out)
    reference = meta.probe_p50 if have else None
    t0 = time.perf_counter()
    by_key = {s.key: s for s in todo}
    n_done, factors, readings, sweeps, failed = 0, [], [], [], {}
    try:
        with TableWriter(out) as w:
            for batch in measure_batches(profiler, unit_builders(todo), unit_builders(probe_specs or []) or None, reference,
                                         progress=progress, desc=f"{profiler.device.name}/{profiler.name}",
                                         batch_size=batch_size, correct_drift=correct_drift):
                for key, stats in batch.stats.items():
                    w.append(by_key[key].to_dict(), stats, profiler.threads)
                    n_done += 1
                for key, why in batch.failures.items():
                    log.warning("%s: not measured (%s)", key, why)
                failed.update(batch.failures)
                if probe_specs:
                    factors.append(batch.drift)
                    readings.extend(batch.readings)
                    if meta.probe is None:                       # the first batch set the reference
                        meta = meta.replace(probe=ProbeRecord(batch.reference, now_iso(),
                                                              {"units": [s.to_dict() for s in probe_specs]}))
                        meta.write(out)
                sweeps.extend(batch.sweeps)
    finally:
        secs = time.perf_counter() - t0
        meta = _record_run(out, meta, secs, factors, readings, sweeps, correct_drift)
    if reference is None and meta.probe is not None and len(readings) >= 2:
        _rebase(out, meta, readings, list(by_key), rows_too=correct_drift)
    skipped = sum(s.key in have for s in specs)
    return TableRun(str(out), n_done, skipped, len(specs) - skipped - n_done, secs,
                    (min(factors), max(factors)) if factors else None, failed)


def _record_run(out: Path, meta: TableMeta, secs: float, factors: list[float], readings: list[float],
                sweeps: list[float], correct_drift: bool) -> TableMeta:
    """The run's time, rows, probe drift and host speed within batches, added to the table's metadata."""
    drift = meta.drift
    if factors:
        d = dict(drift or {"factors": []})
        d["factors"] = [round(f, 4) for f in list(d.get("factors", [])) + factors]
        d["readings"] = [round(r, 4) for r in list(d.get("readings", [])) + readings]
        d["min"], d["max"] = min(d["factors"]), max(d["factors"])
        d["note"] = ("factors: host speed per measured batch relative to the probe reference (>1: slower; 1 "
                     "where the host changed speed during the batch); readings: every probe measurement "
                     "(before the first batch and after each batch) relative to the reference; "
                     + ("each batch's latencies were divided by its factor" if correct_drift
                        else "recorded, not applied to the latencies"))
        drift = d
    within = meta.host_speed_within_batches
    if sweeps:
        lo, hi = (float(v) for v in np.percentile(sweeps, [10, 90]))
        within = {"p10": round(lo, 4), "p90": round(hi, 4), "sweeps": len(sweeps),
                  "note": "the host-speed factor of each sweep over a batch that the protocol's common mode divided "
                          "out (1: the batch's median sweep; >1: slower), over this run's batches"}
        log.info("%s: the host's speed moved between %.2fx and %.2fx of each batch's median (p10-p90 of %d "
                 "sweeps); the protocol's common mode divided that out", out, lo, hi, len(sweeps))
    meta = meta.replace(updated=now_iso(), profiling_seconds=round(float(meta.profiling_seconds or 0.0) + secs, 2),
                        rows=len(existing_keys(out)), drift=drift, host_speed_within_batches=within)
    meta.write(out)
    return meta


def _rebase(out: Path, meta: TableMeta, readings: list[float], keys: list[str], rows_too: bool) -> None:
    """Make a new table's probe reference the median of all the probe readings of its first run rather
    than the first reading; with ``rows_too`` (drift-corrected rows) the rows follow it."""
    m = float(np.median(readings))
    if abs(m - 1.0) < 1e-3:
        return
    if rows_too:
        scale_rows(out, keys, m)
    d = dict(meta.drift)
    # a factor of 1 that was not applied means "not estimated" and stays 1; applied ones follow the reference
    d["factors"] = [round(f / m, 4) if (rows_too or f != 1.0) else f for f in d["factors"]]
    d["readings"] = [round(r / m, 4) for r in d.get("readings", [])]
    d["min"], d["max"] = min(d["factors"]), max(d["factors"])
    d["rebased_by"] = round(m, 4)
    meta.replace(probe=meta.probe.scaled(m), drift=d).write(out)
