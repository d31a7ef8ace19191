"""Local targets profile themselves: this host's table and calibration, made on first use.

A device with a ``local`` connection (``local-cpu``) is the machine the code runs on, so its table must
be measured here. :func:`ensure_local_table` makes sure this host has, in its user-cache folder, a table
covering a search space (measuring the missing units with the device's runtime, interleaved with the
probe) and a calibration (measuring S0/S1/S2/L and random subnets end to end). An existing table is
checked first: its host fingerprint, runtime version and probe must match this host.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from nas.latency.calibration import calibration_path
from nas.latency.calibration_run import calibrate, format_report
from nas.space.spaces import SearchSpace
from nas.space.units import probe_units, space_units
from profilers.devices import get_device
from profilers.runtimes import get_profiler
from profilers.tables.runs import run_table
from profilers.tables.table import LatencyTable, existing_keys, table_path
from profilers.timing.probe import DEFAULT_TOLERANCE

__all__ = ["ensure_local_table"]

log = logging.getLogger(__name__)


def ensure_local_table(device: str, runtime: str | None, space: SearchSpace, img_size: int = 224,
                       num_classes: int = 1000, *, calibrate_networks: int = 8, progress: bool = True,
                       allow_foreign: bool | None = None, say: Callable[[str], None] = log.info,
                       tolerance: float = DEFAULT_TOLERANCE) -> Path:
    """This host's table of ``device`` for ``space``, measured and calibrated here if needed; its path.

    Returns at once (after a probe check of a few seconds) when the table is complete and calibrated.
    """
    dev = get_device(device)
    rt = runtime or dev.runtime
    path = table_path(dev, rt)
    specs = space_units(space, img_size, num_classes)
    if path.exists():
        LatencyTable.read(path).verify_host(probe=True, allow_foreign=allow_foreign, tolerance=tolerance)
    profiler = get_profiler(rt)(dev)
    have = existing_keys(path) if path.exists() else set()
    missing = [s for s in specs if s.key not in have]
    t0 = time.perf_counter()
    if missing:
        say(f"This host has {'no' if not path.exists() else 'an incomplete'} {dev.name} table for {rt} "
            f"({len(missing)} of {len(specs)} units to measure): profiling it now, once, into {path} "
            f"(python -m profilers.{rt} --device {dev.name}; interrupt and rerun at any time: it resumes)")
        res = run_table(profiler, missing, path, space_name=space.name, img_size=img_size, num_classes=num_classes,
                        progress=progress, probe_specs=probe_units(), space=space.to_dict())
        say(f"Measured {res.measured} units in {res.seconds:.0f} s")
    if missing or not calibration_path(path).exists():
        say(f"Calibrating it on whole networks measured end to end (python -m nas.calibrate --target {dev.name}) ...")
        cal = calibrate(str(path), rt, n_random=calibrate_networks, progress=progress, allow_foreign=allow_foreign,
                        out_dir=path.parent / "calibrate", verify="fingerprint")      # probed (or made) just now
        say(format_report(cal))
    if missing:
        say(f"This host's table is ready ({time.perf_counter() - t0:.0f} s).")
    return path
