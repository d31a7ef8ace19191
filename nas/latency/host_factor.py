"""How fast this host runs now against when its table was calibrated, from whole networks timed again.

A shared host's speed moves 5-15 % within minutes, and every unit of a network feels it alike, so a
predictor's *shape* holds while its *level* is whatever the host's speed was at calibration. The calibration
(``python -m nas.calibrate``) therefore times a few **reference networks** (:func:`reference_networks`: S0
where the space holds it, and the space's smallest network) right after its calibration networks, in the
same run, with :func:`time_references`. Before predicting, a local target times them again the same way (a few
seconds on a CPU): :func:`measure_host_factor` gives the ratio now / then per pass over them; when the
passes agree (within :data:`STEADY`) the host was steadily that much faster or slower and every prediction
is scaled by it (:meth:`nas.latency.predictor.LatencyPredictor.rescaled`); when they disagree the host's
speed was moving and nothing is scaled. Beyond :data:`FOREIGN` the table is not this host's as it runs now:
:class:`~profilers.tables.table.ForeignTableError`, like any other table of another machine.

Only tables of ``local`` devices are rescaled: a phone's or a GPU's latencies do not follow this CPU.
"""
from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from nas.latency.calibration import Calibration
from nas.latency.networks import network_builder, table_profiler
from nas.space.arch import Arch
from nas.space.spaces import SearchSpace
from profilers.tables.table import refuse_foreign
from profilers.timing.host import pinned

__all__ = ["HostFactor", "STEADY", "FOREIGN", "reference_networks", "time_references", "measure_host_factor",
           "rescale_now"]

log = logging.getLogger(__name__)

#: two passes over the reference networks agreeing within this are a steady host
STEADY = 0.03
#: a host this much faster or slower than at calibration is not the table's host as it runs now
FOREIGN = 0.25
#: passes over the reference networks per reading
PASSES = 2


@dataclass(frozen=True)
class HostFactor:
    """This host's speed now against its calibration: ``factor`` (now / then, the geometric mean of the
    passes' ``readings``; >1: slower now), whether the passes agreed (``steady``), the reference ``networks``
    and the ``seconds`` it took."""
    factor: float
    readings: tuple[float, ...]
    networks: tuple[str, ...]
    steady: bool
    seconds: float

    @property
    def applied(self) -> bool:
        """Whether predictions are scaled by it: when the passes agreed."""
        return self.steady

    def describe(self) -> str:
        how = "slower" if self.factor >= 1 else "faster"
        pct = abs(self.factor - 1) * 100
        seen = (f"{', '.join(f'{r:.3f}' for r in self.readings)} on {' and '.join(self.networks)}, "
                f"{self.seconds:.1f} s")
        if not self.steady:
            return (f"this host's speed moved while it was checked (readings {seen}): predictions not rescaled")
        return (f"this host runs {pct:.1f} % {how} than when its table was calibrated (readings {seen})"
                + (f": predictions scaled by {self.factor:.3f}" if self.applied else ""))

    def to_dict(self) -> dict:
        return {**asdict(self), "readings": list(self.readings), "networks": list(self.networks),
                "applied": self.applied}


def reference_networks(space: SearchSpace) -> list[tuple[str, Arch]]:
    """The networks whose end-to-end time stands for the host's speed: S0 where ``space`` holds it (else its
    largest network) and its smallest network, by name."""
    big = ("S0", space.canonical("s0")) if space.fits("s0") else ("the largest network", space.max_arch())
    small = ("the smallest network", space.min_arch())
    return [big] if big[1] == small[1] else [big, small]


def time_references(profiler, refs: list[tuple[str, Arch]], img_size: int, num_classes: int,
                    passes: int = PASSES) -> list[dict[str, float]]:
    """Median latency (ms) of every reference network in each of ``passes`` passes, timed with ``profiler``'s
    protocol on its cores: exported and loaded once, then the passes one after the other."""
    with tempfile.TemporaryDirectory(prefix="effv2-host-factor-") as tmp, pinned(profiler.cpus):
        runners = {}
        for name, arch in refs:
            torch.manual_seed(0)
            net, shape = network_builder(arch, img_size, num_classes)()
            path = profiler.export(net.eval(), shape, Path(tmp) / f"ref{len(runners)}{profiler.suffix}")
            loaded = profiler.load(path, shape)
            if loaded is None:
                raise ValueError(f"{profiler.name} on {profiler.device.name} times networks elsewhere: no host "
                                 f"factor")
            runners[name] = loaded.run
        return [{k: float(v.p50_ms) for k, v in profiler.protocol.measure_many(runners, profiler.timer).stats.items()}
                for _ in range(passes)]


def _reading(then: dict[str, float], now: dict[str, float]) -> float:
    return math.exp(sum(math.log(now[k] / then[k]) for k in then) / len(then))


def measure_host_factor(table, calibration: Calibration, *, threads: int | None = None,
                        allow_foreign: bool | None = None) -> HostFactor | None:
    """Time ``calibration``'s reference networks again on this host (``table``'s runtime, protocol and
    settings) and compare. None for a table of a device that is not ``local``, or a calibration without
    reference networks (fitted before they were recorded: calibrate again). A steady factor beyond
    :data:`FOREIGN` is a :class:`~profilers.tables.table.ForeignTableError` unless ``allow_foreign`` (or
    ``EFFV2_ALLOW_FOREIGN_TABLE``) turns it into a warning."""
    ref = calibration.reference
    if not table.meta.local:
        return None
    if not ref:
        log.info("%s: its calibration records no reference networks, so predictions do not follow this host's "
                 "speed now; calibrate it again (python -m nas.calibrate) to record them", table.path)
        return None
    t0 = time.perf_counter()
    refs = [(name, Arch.from_dict(a)) for name, a in zip(ref["names"], ref["archs"])]
    then = dict(zip(ref["names"], ref["p50_ms"]))
    passes = time_references(table_profiler(table, threads), refs, int(ref["img_size"]), int(ref["num_classes"]))
    readings = tuple(round(_reading(then, p), 4) for p in passes)
    factor = math.exp(sum(map(math.log, readings)) / len(readings))
    steady = max(readings) / min(readings) - 1 <= STEADY
    hf = HostFactor(round(factor, 4), readings, tuple(then), steady, round(time.perf_counter() - t0, 2))
    if steady and abs(math.log(factor)) > math.log1p(FOREIGN):
        refuse_foreign(f"latency table {table.path} does not describe this host as it runs now: {hf.describe()}, "
                       f"beyond {FOREIGN * 100:.0f} %. Another machine, or one much busier than at calibration: "
                       f"profile it again with {table.meta.profile_command()}", allow_foreign)
    return hf


def rescale_now(table, pred, *, threads: int | None = None, allow_foreign: bool | None = None):
    """``(pred scaled by this host's factor now when it is steady, the HostFactor or None)``: see
    :func:`measure_host_factor`; logs what it found."""
    if pred.calibration is None:
        return pred, None
    hf = measure_host_factor(table, pred.calibration, threads=threads, allow_foreign=allow_foreign)
    if hf is None:
        return pred, None
    log.info("%s", hf.describe())
    return (pred.rescaled(hf.factor) if hf.applied else pred), hf
