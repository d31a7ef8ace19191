"""Measure many modules the way a shared, drifting host needs: in batches, interleaved, with the probe.

:func:`measure_modules` exports each batch of modules, loads them all, and times them with rounds
interleaved across the batch (:meth:`profilers.stats.Protocol.measure_many`). The probe units are timed
on their own (always in the same company, so their latency does not depend on what they were mixed
with) before the first batch and after every batch; against the probe's reference
(:class:`profilers.probe.Probe`) the measurements before and after a batch tell whether the host was
steadily faster or slower during it (:func:`drift_factor`). That drift is recorded and shown; dividing the
batch's latencies by it is an option (``correct_drift``), off by default: on the shared hosts it was
measured on, the small probe units slowed down by up to 20 % while whole networks, timed in the same
minutes, did not, and the correction made predictions worse (benchmarks/results/predictor.txt). Plugins whose timing happens in an external tool (no
:meth:`~profilers.base.Profiler.runner`) are measured one entry after another, the probe once per batch.
Results are handed to ``on_result`` as each batch finishes, so a killed run keeps every finished batch.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import tempfile
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from nas.space.modules import build_unit

from profilers.host import pinned
from profilers.probe import Probe
from profilers.stats import LatencyStats

__all__ = ["measure_modules", "DEFAULT_BATCH"]

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


def measure_modules(profiler, items: Sequence[tuple[str, Builder]], probe: Probe | None = None, *,
                    batch_size: int = DEFAULT_BATCH, progress: bool = True, desc: str = "measuring",
                    correct_drift: bool = False,
                    on_result: Callable[[str, LatencyStats, float], None] | None = None,
                    sweeps: list | None = None) -> dict[str, LatencyStats]:
    """Measure every ``(name, builder)`` of ``items`` with ``profiler``; ``{name: LatencyStats}``.

    ``builder()`` returns ``(module, input_shape)`` and is called only when its batch comes up (whole
    networks are not all held in memory). The work runs on the profiler's cores (``profiler.cpus``,
    the device entry's by default). With a ``probe``, each batch's latencies are divided by the
    host's speed during the batch relative to the probe's reference when the probe shows a steady shift
    (:func:`drift_factor`; without a reference yet, the first probe measurement becomes it) and
    ``correct_drift`` is set; otherwise the factors are only recorded (``probe.factors``).
    ``on_result(name, stats, factor)`` receives the stats and the factor they were divided by. A
    ``sweeps`` list receives the host-speed factor of every sweep of every batch that the protocol's
    common mode estimated (:attr:`profilers.stats.Protocol.host_factors`).
    """
    items = list(items)
    results: dict[str, LatencyStats] = {}
    if not items:
        return results
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

        probe_paths = {f"probe:{s.key}": export(f"probe_{s.key}", partial(build_unit, s)) for s in (probe.specs if probe else [])}

        def probe_ratio() -> float:               # the probe alone, always in the same company
            st = _measure_batch(profiler, probe_paths)
            return probe.ratio({k: st[f"probe:{k}"] for k in probe.keys})

        try:
            before = probe_ratio() if probe else 1.0
            for batch in _chunks(items, max(1, int(batch_size))):
                paths = {name: export(name, build) for name, build in batch}
                protocol = getattr(profiler, "protocol", None)
                if protocol is not None:
                    protocol.host_factors = []
                stats = _measure_batch(profiler, paths)
                if sweeps is not None and protocol is not None:
                    sweeps.extend(protocol.host_factors)
                factor = 1.0
                if probe:                          # host speed during the batch: the probe before and after
                    after = probe_ratio()
                    observed = drift_factor(before, after)
                    probe.factors.append(observed)
                    factor = observed if correct_drift else 1.0
                    before = after
                for name, _ in batch:
                    st = stats[name].scaled(factor) if factor != 1.0 else stats[name]
                    results[name] = st
                    if on_result:
                        on_result(name, st, factor)
                if not keep:
                    for p, _ in paths.values():
                        Path(p).unlink(missing_ok=True)
                bar.update(len(batch))
                if probe:
                    bar.set_postfix_str(f"host speed vs reference {100 * (probe.ratios[-1] - 1):+.1f}%",
                                        refresh=False)
                    log.debug("batch of %d: probe factor %.4f", len(batch), observed)
        finally:
            bar.close()
    return results


def _measure_batch(profiler, paths: dict[str, tuple[Path, tuple]]) -> dict[str, LatencyStats]:
    runners = {}
    for name, (path, shape) in paths.items():
        fn = profiler.runner(path, shape)
        if fn is None:
            runners = None
            break
        runners[name] = fn
    if runners is not None:
        return profiler.protocol.measure_many(runners)
    return {name: profiler.measure(path, shape) for name, (path, shape) in paths.items()}
