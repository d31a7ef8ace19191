"""Table runs: measure every unit of a search space that a latency table lacks, with any plugin.

:func:`run_table` is what ``python -m profilers.<runtime>`` runs: one writer per table (a lock), the
table's settings and host checked before anything is measured, units measured in interleaved batches
with the probe (:func:`profilers.batch.measure_modules`), one flushed row per finished unit, and the
metadata merged with the table's (:func:`profilers.table.merge_meta`). :func:`shard_specs` splits a
space into ``n`` shards measured on as many machines of one kind and merged afterwards
(``python -m profilers.merge``).
"""
from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from nas.core.files import exclusive
from nas.space.modules import build_unit

from profilers.base import Profiler
from profilers.batch import DEFAULT_BATCH, measure_modules
from profilers.host import differences, fingerprint
from profilers.probe import DEFAULT_TOLERANCE, Probe, check_probe
from profilers.table import (TableError, TableWriter, TABLE_FIELDS, check_compatible, existing_keys, merge_meta,
                             now_iso, read_meta, scale_rows, write_meta)

__all__ = ["run_table", "parse_shard", "shard_specs", "check_same_host"]

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
def check_same_host(path: str | Path, meta: dict) -> None:
    """TableError when the table at ``path`` (metadata ``meta``) was measured on a host whose fingerprint
    differs from this one's: rows of two machines must never share a table."""
    diffs = differences(meta.get("host") or {}, fingerprint())
    if diffs:
        raise TableError(f"{path} was measured on another machine ({'; '.join(diffs)}); its rows and this "
                         f"host's must not be mixed. Write this host's table elsewhere with --out, or remove it")


def run_table(profiler: Profiler, specs: Sequence, out: str | Path, *, space_name: str, img_size: int,
              num_classes: int, limit: int | None = None, progress: bool = True, shard=None,
              probe_specs: Sequence | None = None, space: dict | None = None,
              tolerance: float = DEFAULT_TOLERANCE, batch_size: int = DEFAULT_BATCH,
              correct_drift: bool = False) -> dict:
    """Measure every unit of ``specs`` missing from table ``out``, appending one flushed row per unit.

    Units are measured in interleaved batches (:func:`profilers.batch.measure_modules`). With
    ``probe_specs`` (``nas.space.units.probe_units()``) each batch also times the probe and its latencies
    are compared with the table's probe reference (recorded in the metadata by the first run; a later
    run on a host whose probe moved by more than ``tolerance`` is refused). ``space`` (the search space
    as a dict) is recorded in the metadata. Returns a summary dict: ``measured`` (count), ``skipped``
    (already present), ``remaining``, ``seconds`` (wall time of this run), ``path``, ``drift`` (the probe
    factor range).
    """
    out = Path(out)
    with exclusive(out, "latency table"):                 # one writer per table
        return _run_table(profiler, specs, out, space_name=space_name, img_size=img_size, num_classes=num_classes,
                          limit=limit, progress=progress, shard=shard, probe_specs=probe_specs, space=space,
                          tolerance=tolerance, batch_size=batch_size, correct_drift=correct_drift)


def _run_table(profiler: Profiler, specs: Sequence, out: Path, *, space_name, img_size, num_classes, limit,
               progress, shard, probe_specs, space, tolerance, batch_size, correct_drift) -> dict:
    meta_new = profiler.table_meta(space_name, img_size, num_classes)
    check_compatible(out, meta_new)
    have = existing_keys(out)
    todo = [s for s in specs if s.key not in have]
    if limit is not None:
        todo = todo[:max(0, int(limit))]
    profiler.check_ready()
    old = read_meta(out)
    if have and profiler.device.connection_type == "local":
        check_same_host(out, old)
    probe = None
    if probe_specs:
        ref = (old.get("probe") or {}).get("p50_ms") if have else None
        probe = Probe(list(probe_specs), reference=dict(ref) if ref else None)
        if probe.reference and todo:
            check = check_probe(probe.reference, lambda: measure_modules(
                profiler, [(s.key, partial(build_unit, s)) for s in probe.specs], None, progress=False), tolerance)
            if not check.ok:
                raise TableError(f"{out}: this host's probe differs from the one recorded with the table "
                                 f"({check.describe()}): another machine, or one much busier than then. Write "
                                 f"this host's table elsewhere with --out, or remove it and measure again")
            log.debug("%s: probe within tolerance (%s)", out, check.describe())
    if space is not None:
        meta_new["space_def"] = space
    if shard:
        meta_new["shard"] = f"{shard[0]}/{shard[1]}"
    meta = merge_meta(old, meta_new, keep=TABLE_FIELDS + (("host",) if have else ()))
    write_meta(out, meta)
    t0 = time.perf_counter()
    by_key = {s.key: s for s in todo}
    new_reference = probe is not None and not probe.reference
    n_done = 0
    sweeps: list[float] = []
    try:
        with TableWriter(out) as w:
            def on_result(key, stats, factor):
                nonlocal n_done
                w.append(by_key[key].to_dict(), stats, profiler.threads)
                n_done += 1
                if probe and "probe" not in meta:              # the first batch set the reference
                    meta["probe"] = probe.to_meta({"measured_at": now_iso()})
                    write_meta(out, meta)

            measure_modules(profiler, [(s.key, partial(build_unit, s)) for s in todo], probe, progress=progress,
                            desc=f"{profiler.device.name}/{profiler.name}", on_result=on_result,
                            batch_size=batch_size, correct_drift=correct_drift, sweeps=sweeps)
    finally:
        secs = time.perf_counter() - t0
        meta = read_meta(out) or meta
        meta["updated"] = now_iso()
        meta["profiling_seconds"] = round(float(meta.get("profiling_seconds", 0.0)) + secs, 2)
        meta["rows"] = len(existing_keys(out))
        if probe and probe.factors:
            d = meta.get("drift") or {"factors": []}
            d["factors"] = [round(f, 4) for f in list(d.get("factors", [])) + probe.factors]
            d["readings"] = [round(r, 4) for r in list(d.get("readings", [])) + probe.ratios]
            d["min"], d["max"] = min(d["factors"]), max(d["factors"])
            d["note"] = ("factors: host speed per measured batch relative to the probe reference (>1: slower; 1 "
                         "where the host changed speed during the batch); readings: every probe measurement "
                         "(before the first batch and after each batch) relative to the reference; "
                         + ("each batch's latencies were divided by its factor" if correct_drift
                            else "recorded, not applied to the latencies"))
            meta["drift"] = d
        if sweeps:
            lo, hi = (float(v) for v in np.percentile(sweeps, [10, 90]))
            meta["host_speed_within_batches"] = {
                "p10": round(lo, 4), "p90": round(hi, 4), "sweeps": len(sweeps),
                "note": "the host-speed factor of each sweep over a batch that the protocol's common mode divided "
                        "out (1: the batch's median sweep; >1: slower), over this run's batches"}
            log.info("%s: the host's speed moved between %.2fx and %.2fx of each batch's median (p10-p90 of %d "
                     "sweeps); the protocol's common mode divided that out", out, lo, hi, len(sweeps))
        write_meta(out, meta)
    if new_reference and len(probe.ratios) >= 2:
        _rebase(out, probe, list(by_key), rows_too=correct_drift)
    skipped = sum(s.key in have for s in specs)
    return {"path": str(out), "measured": n_done, "skipped": skipped, "seconds": secs,
            "remaining": len(specs) - skipped - n_done,
            "drift": (min(probe.factors), max(probe.factors)) if probe and probe.factors else None}


def _rebase(out: Path, probe: Probe, keys: list[str], rows_too: bool) -> None:
    """Make a new table's probe reference the median of all the probe readings of its first run rather
    than the first reading; with ``rows_too`` (drift-corrected rows) the rows follow it."""
    m = float(np.median(probe.ratios))
    if abs(m - 1.0) < 1e-3:
        return
    if rows_too:
        scale_rows(out, keys, m)
    meta = read_meta(out)
    meta["probe"]["p50_ms"] = {k: v * m for k, v in meta["probe"]["p50_ms"].items()}
    # a factor of 1 that was not applied means "not estimated" and stays 1; applied ones follow the reference
    meta["drift"]["factors"] = [round(f / m, 4) if (rows_too or f != 1.0) else f for f in meta["drift"]["factors"]]
    meta["drift"]["readings"] = [round(r / m, 4) for r in meta["drift"].get("readings", [])]
    meta["drift"]["min"], meta["drift"]["max"] = min(meta["drift"]["factors"]), max(meta["drift"]["factors"])
    meta["drift"]["rebased_by"] = round(m, 4)
    write_meta(out, meta)
