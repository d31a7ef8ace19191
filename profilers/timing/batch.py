"""Measure many modules the way a shared, drifting host needs: in batches, interleaved, with the probe.

:func:`measure_batches` exports each batch of modules, loads them all, and times them with rounds
interleaved across the batch (:meth:`profilers.timing.protocol.Protocol.measure_many`). The probe units are timed
on their own (always in the same company, so their latency does not depend on what they were mixed
with) before the first batch and after every batch; against the probe's reference
(:func:`profilers.timing.probe.probe_ratio`) the measurements before and after a batch tell whether the host was
steadily faster or slower during it (:func:`drift_factor`). That drift is recorded and shown; dividing the
batch's latencies by it is an option (``correct_drift``), off by default: on the shared hosts it was
measured on, the small probe units slowed down by up to 20 % while whole networks, timed in the same
minutes, did not, and the correction made predictions worse (benchmarks/results/predictor.txt). Plugins whose timing
happens in an external tool (:meth:`~profilers.plugin.base.Profiler.load` gives None) are measured one entry after
another, the probe once per batch.
Each batch's results are yielded as it finishes (:class:`BatchResult`), so a caller that writes them keeps
every finished batch when the run is killed.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch
from tqdm import tqdm

from profilers.runtimes import UnitFailed
from profilers.timing.host import pinned
from profilers.timing.probe import probe_ratio
from profilers.timing.protocol import LatencyStats, Timing

__all__ = ["measure_batches", "measure_modules", "BatchResult", "drift_factor", "DEFAULT_BATCH"]

log = logging.getLogger(__name__)

#: entries per interleaved batch (each batch also times the probe units)
DEFAULT_BATCH = 24

Builder = Callable[[], tuple]          # () -> (nn.Module, input_shape)


#: the probe before and after a batch must agree this well (relative) for the batch to be corrected
STEADY = 0.02
#: and the host must be off its reference by at least this much
MIN_SHIFT = 0.02


def drift_factor(before: float, after: float) -> float:
    """The correction for a batch from the probe's ratios to its reference before and after it: their
    geometric mean when the two agree within ``STEADY`` and are off the reference by ``MIN_SHIFT`` or more
    (a steady shift of the host), else 1. A host that changed speed during the batch is not corrected:
    two probe readings of a second each cannot say how fast it was in between, and on a shared host
    correcting from them added more noise than it removed (measured: benchmarks/results)."""
    f = math.sqrt(before * after)
    steady = abs(math.log(after / before)) <= STEADY
    return f if steady and abs(math.log(f)) >= MIN_SHIFT else 1.0


def _file_stem(name: str) -> str:
    """``name`` when it makes a plain file name (unit keys do), else a stable short hash of it (archs)."""
    if re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", name):
        return name.replace(":", "_")
    return "net-" + hashlib.sha1(name.encode()).hexdigest()[:16]


def _chunks(items, n):
    for i in range(0, len(items), n):
        yield items[i:i + n]


@dataclass(frozen=True)
class BatchResult:
    """One measured batch (:func:`measure_batches`): each entry's ``stats`` (already divided by ``factor``),
    the drift ``factor`` they were divided by (1: not corrected), the drift observed from the probe
    before and after the batch (``drift``; 1 without a probe or a reference), the probe ``readings``
    taken with this batch relative to the ``reference`` (the one before it, for the first batch only,
    then the one after it), the probe ``reference`` in use (given, or set by the first reading), and the
    host-speed factors the protocol's common mode divided out of this batch's sweeps (``sweeps``), and the
    entries the device could not run (``failures``: name -> why; not in ``stats``)."""
    stats: dict[str, LatencyStats]
    factor: float = 1.0
    drift: float = 1.0
    readings: tuple[float, ...] = ()
    reference: dict[str, float] | None = None
    sweeps: tuple[float, ...] = ()
    failures: dict[str, str] = field(default_factory=dict)


def measure_batches(profiler, items: Sequence[tuple[str, Builder]], probe: Sequence[tuple[str, Builder]] | None = None,
                    reference: Mapping[str, float] | None = None, *, batch_size: int = DEFAULT_BATCH,
                    progress: bool = True, desc: str = "measuring",
                    correct_drift: bool = False) -> Iterator[BatchResult]:
    """Measure every ``(name, builder)`` of ``items`` with ``profiler``, a :class:`BatchResult` per batch as
    each finishes (so a caller writes every finished batch before the next is measured).

    ``builder()`` returns ``(module, input_shape)`` and is called only when its batch comes up (whole
    networks are not all held in memory). The work runs on the profiler's cores (``profiler.cpus``, the
    device entry's by default). With ``probe`` (``(key, builder)`` of the probe units, e.g.
    ``nas.space.modules.unit_builders(nas.space.units.probe_units())``), the probe is timed alone before the
    first batch and after every batch, against ``reference`` (its medians; without one, the first reading becomes it); a batch during
    which the host was steadily off the reference (:func:`drift_factor`) is divided by that factor when
    ``correct_drift`` is set, and the factor is only reported otherwise.
    """
    items = list(items)
    if not items:
        return
    bar = tqdm(total=len(items), desc=desc, unit="net" if "network" in desc else "unit", disable=not progress,
               dynamic_ncols=True)
    keep = Path(profiler.keep_exports) if profiler.keep_exports else None
    with tempfile.TemporaryDirectory(prefix=f"prof_{profiler.name}_") as tmp, pinned(profiler.cpus):
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)

        def export(name: str, build: Builder):
            torch.manual_seed(0)
            module, shape = build()
            shape = tuple(int(s) for s in shape)
            path = folder / f"{_file_stem(name)}{profiler.suffix}"
            profiler.export(module.eval(), shape, path)
            return path, shape

        probe_paths = {f"probe:{key}": export(f"probe_{key}", build) for key, build in (probe or [])}
        reference = dict(reference) if reference else None

        def probe_reading() -> float:              # the probe alone, always in the same company
            nonlocal reference
            st = _measure_batch(profiler, probe_paths)[0].stats
            now = {k.removeprefix("probe:"): v for k, v in st.items()}
            if reference is None:
                reference = {k: float(v.p50_ms) for k, v in now.items()}
            return probe_ratio(reference, now)

        try:
            before = probe_reading() if probe_paths else None
            first = True
            for batch in _chunks(items, max(1, int(getattr(profiler, "batch_size", None) or batch_size))):
                paths, failures = {}, {}
                for name, build in batch:
                    try:
                        paths[name] = export(name, build)
                    except UnitFailed as e:        # this one cannot be converted for the device: the others can
                        failures[name] = str(e)
                timing, failed = _measure_batch(profiler, paths)
                failures.update(failed)
                readings: tuple[float, ...] = ((before,) if first else ()) if before is not None else ()
                drift = factor = 1.0
                if probe_paths:                    # host speed during the batch: the probe before and after
                    after = probe_reading()
                    readings += (after,)
                    drift = drift_factor(before, after)
                    factor = drift if correct_drift else 1.0
                    before = after
                stats = {name: timing.stats[name].scaled(factor) if factor != 1.0 else timing.stats[name]
                         for name, _ in batch if name in timing.stats}
                if not keep:                       # a file, or a folder (a Core ML .mlpackage)
                    for p, _ in paths.values():
                        shutil.rmtree(p) if Path(p).is_dir() else Path(p).unlink(missing_ok=True)
                bar.update(len(batch))
                if probe_paths:
                    bar.set_postfix_str(f"host speed vs reference {100 * (readings[-1] - 1):+.1f}%", refresh=False)
                    log.debug("batch of %d: probe factor %.4f", len(batch), drift)
                first = False
                yield BatchResult(stats, factor, drift, readings, dict(reference) if reference else None,
                                  tuple(timing.host_factors), failures)
        finally:
            bar.close()


def measure_modules(profiler, items: Sequence[tuple[str, Builder]], **kw) -> dict[str, LatencyStats]:
    """Every entry's statistics (:func:`measure_batches` without a probe, all batches together)."""
    out: dict[str, LatencyStats] = {}
    for b in measure_batches(profiler, items, **kw):
        out.update(b.stats)
    return out


def _measure_batch(profiler, paths: dict[str, tuple[Path, tuple]]) -> tuple[Timing, dict[str, str]]:
    """The batch's timing, and the entries the device could not run (name -> why): models the plugin loads
    here are timed interleaved by the protocol; the others by the plugin's ``measure_batch`` (an external
    tool, a phone, a hosted device)."""
    runners = {}
    for name, (path, shape) in paths.items():
        loaded = profiler.load(path, shape)
        if loaded is None:
            runners = None
            break
        runners[name] = loaded.run
    if runners is not None:
        return profiler.protocol.measure_many(runners, profiler.timer), {}
    stats, failures = profiler.measure_batch(paths)
    return Timing(stats, {}, []), failures
