"""The profiler plugin base: export a module to a runtime's format, measure it, write table rows.

A runtime plugin (``profilers/onnxruntime.py``, ``tflite.py``, ``coreml.py``, ``tensorrt.py``) subclasses
:class:`Profiler` and implements :meth:`Profiler.export` and :meth:`Profiler.measure`; everything else
(the timing protocol, resumable and sharded table runs, metadata, the command line) lives here.
"""
from __future__ import annotations

import abc
import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from nas.core.cli import positive_int
from nas.core.errors import UserError

from profilers.batch import DEFAULT_BATCH, measure_modules
from profilers.devices import Device, DeviceError, format_devices, get_device
from nas.core.files import exclusive
from profilers.host import differences, fingerprint, pinned
from profilers.probe import DEFAULT_TOLERANCE, Probe, check_probe
from profilers.stats import LatencyStats, Protocol
from profilers.table import (TableError, TableWriter, check_compatible, existing_keys, now_iso, read_meta, scale_rows,
                    table_path, write_meta)

__all__ = ["Profiler", "ProfilerUnavailable", "build_parser", "main", "run_table", "parse_shard", "shard_specs",
           "parse_cpus", "check_same_host",
           "software_info", "quiet_output"]

TOOL = "effv2-nas profilers"
TOOL_VERSION = "0.1.0"


class ProfilerUnavailable(UserError, RuntimeError):
    """A runtime, tool or device that this profiler needs is missing (the message says what to install
    or connect)."""


@contextlib.contextmanager
def quiet_output(enabled: bool = True):
    """Silence stdout/stderr at the file-descriptor level (converters print from C++); on error, the
    captured text is re-printed so nothing is lost."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if not ok:
                tmp.seek(0)
                tail = tmp.read()[-4000:].decode(errors="replace")
                if tail.strip():
                    sys.stderr.write(tail)


def software_info() -> dict:
    """Versions beside the runtime's that a measurement depends on."""
    return {"python": platform.python_version(), "torch": torch.__version__}


class Profiler(abc.ABC):
    """Exports an ``nn.Module`` to one runtime's format and measures it with the shared protocol.

    Subclasses set :attr:`name` (the runtime) and :attr:`suffix` (the exported file's extension) and
    implement :meth:`export` and :meth:`measure`. ``threads`` overrides the device's thread count.
    """
    name: str = ""
    suffix: str = ""

    def __init__(self, device: Device | str, threads: int | None = None, protocol: Protocol | None = None,
                 keep_exports: str | Path | None = None, quiet: bool = True, cpus: Sequence[int] | None | str = "device"):
        dev = get_device(device) if isinstance(device, str) else device
        if self.name not in dev.runtimes and dev.runtime != self.name:
            raise ValueError(f"device {dev.name!r} is profiled with {'/'.join(dev.runtimes)}, not {self.name}; "
                             f"use python -m profilers.{dev.runtime} --device {dev.name}")
        self.device = dev.with_threads(threads)
        self.threads = self.device.threads
        self.protocol = protocol or Protocol()
        self.keep_exports = Path(keep_exports) if keep_exports else None
        self.quiet = quiet
        #: cores the measurements run on (the device entry's by default; None: wherever the OS puts them)
        self.cpus = (list(self.device.cpus) if self.device.cpus is not None else None) if cpus == "device" \
            else (list(cpus) if cpus is not None else None)

    # -- to implement -------------------------------------------------------------------------------
    @abc.abstractmethod
    def export(self, module: nn.Module, input_shape: tuple, path: Path) -> Path:
        """Write ``module`` (eval mode, batch-1 ``input_shape``) in this runtime's format to ``path``."""

    def runner(self, path: Path, input_shape: tuple) -> Callable[[], object] | None:
        """A zero-argument callable that runs the exported model at ``path`` once in this process (a
        loaded session, input already set), or ``None`` when timing happens in an external tool (a phone's
        ``benchmark_model``, ``trtexec``). With a runner, the base times entries interleaved
        (:meth:`profilers.stats.Protocol.measure_many`)."""
        return None

    def measure(self, path: Path, input_shape: tuple) -> LatencyStats:
        """Time the exported model at ``path`` with :attr:`protocol` on :attr:`device`. Plugins without a
        :meth:`runner` override this."""
        fn = self.runner(path, input_shape)
        if fn is None:
            raise NotImplementedError(f"{type(self).__name__} implements neither runner() nor measure()")
        return self.protocol.measure(fn)

    def runtime_version(self) -> str:
        """Version of the runtime that measures (recorded in the table metadata)."""
        return "unknown"

    def check_ready(self) -> None:
        """Raise :class:`ProfilerUnavailable` (before any work) when a tool or device is missing."""

    def settings(self) -> dict:
        """Runtime settings recorded in the metadata (delegate, providers, exporter...)."""
        return {}

    @classmethod
    def add_arguments(cls, ap: argparse.ArgumentParser) -> None:
        """Runtime-specific command-line flags (added to the shared parser)."""

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict:
        """Constructor keyword arguments taken from the runtime-specific flags."""
        return {}

    # -- provided -----------------------------------------------------------------------------------
    def profile_module(self, module: nn.Module, input_shape: tuple, name: str = "model") -> LatencyStats:
        """Export and measure one module end to end (a unit or a whole network)."""
        with pinned(self.cpus):
            return self._profile_module(module, input_shape, name)

    def _profile_module(self, module: nn.Module, input_shape: tuple, name: str) -> LatencyStats:
        module = module.eval()
        input_shape = tuple(int(s) for s in input_shape)
        if self.keep_exports:
            self.keep_exports.mkdir(parents=True, exist_ok=True)
            path = self.keep_exports / f"{name}{self.suffix}"
            self.export(module, input_shape, path)
            return self.measure(path, input_shape)
        with tempfile.TemporaryDirectory(prefix=f"prof_{self.name}_") as d:
            path = Path(d) / f"{name}{self.suffix}"
            self.export(module, input_shape, path)
            return self.measure(path, input_shape)

    def profile_spec(self, spec) -> LatencyStats:
        """Build a :class:`nas.blocks.BlockSpec` (seeded weights) and profile it."""
        torch.manual_seed(0)
        module, shape = spec.build()
        return self.profile_module(module, shape, name=spec.key)

    def table_meta(self, space_name: str, img_size: int, num_classes: int) -> dict:
        return {"device": self.device.name, "runtime": self.name, "runtime_version": self.runtime_version(),
                "precision": self.device.precision, "threads": self.threads, "settings": self.settings(),
                "space": space_name, "img_size": img_size, "num_classes": num_classes,
                "protocol": self.protocol.to_dict(), "tool": TOOL, "tool_version": TOOL_VERSION,
                "host": fingerprint(), "software": software_info(), "device_entry": self.device.to_dict()}


# ----------------------------------------------------------------------------------------------
# sharding and table runs
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


def _merge_list(old, new):
    out = list(old or [])
    for v in new:
        if v not in out:
            out.append(v)
    return out


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
    ``probe_specs`` (``nas.blocks.probe_units()``) each batch also times the probe and its latencies are
    put on the scale of the table's probe reference (recorded in the metadata by the first run; a later
    run on a host whose probe moved by more than ``tolerance`` is refused). ``space`` (the search space
    as a dict) is recorded in the metadata. Returns a summary dict: ``measured`` (count), ``skipped``
    (already present), ``seconds`` (wall time of this run), ``path``, ``drift`` (the probe factor range).
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
                profiler, [(s.key, s.build) for s in probe.specs], None, progress=False), tolerance)
            if not check.ok:
                raise TableError(f"{out}: this host's probe differs from the one recorded with the table "
                                 f"({check.describe()}): another machine, or one much busier than then. Write "
                                 f"this host's table elsewhere with --out, or remove it and measure again")
    meta = {**old, **meta_new}
    meta["host"] = old.get("host", meta_new["host"]) if have else meta_new["host"]
    meta["created"] = old.get("created", now_iso())
    meta["updated"] = now_iso()
    meta["img_sizes"] = _merge_list(old.get("img_sizes"), [img_size])
    meta["spaces"] = _merge_list(old.get("spaces"), [space_name])
    meta["img_size"], meta["space"] = old.get("img_size", img_size), old.get("space", space_name)
    meta["num_classes"] = old.get("num_classes", num_classes)
    if space is not None and "space_def" not in old:
        meta["space_def"] = space
    if shard:
        meta["shard"] = f"{shard[0]}/{shard[1]}"
    write_meta(out, meta)
    t0 = time.perf_counter()
    by_key = {s.key: s for s in todo}
    new_reference = probe is not None and not probe.reference
    n_done = 0
    try:
        with TableWriter(out) as w:
            def on_result(key, stats, factor):
                nonlocal n_done
                w.append(by_key[key].to_dict(), stats, profiler.threads)
                n_done += 1
                if probe and "probe" not in meta:              # the first batch set the reference
                    meta["probe"] = probe.to_meta({"measured_at": now_iso()})
                    write_meta(out, meta)

            measure_modules(profiler, [(s.key, s.build) for s in todo], probe, progress=progress,
                            desc=f"{profiler.device.name}/{profiler.name}", on_result=on_result,
                            batch_size=batch_size, correct_drift=correct_drift)
    finally:
        secs = time.perf_counter() - t0
        meta = read_meta(out) or meta
        meta["updated"] = now_iso()
        meta["profiling_seconds"] = round(float(meta.get("profiling_seconds", 0.0)) + secs, 2)
        meta["rows"] = len(existing_keys(out))
        if probe and probe.factors:
            d = meta.get("drift") or {"factors": []}
            d["factors"] = [round(f, 4) for f in list(d.get("factors", [])) + probe.factors]
            d["min"], d["max"] = min(d["factors"]), max(d["factors"])
            d["note"] = ("host speed per measured batch relative to the probe reference (>1: slower; 1 where "
                         "the host changed speed during the batch); "
                         + ("each batch's latencies were divided by its factor" if correct_drift
                            else "recorded, not applied to the latencies"))
            meta["drift"] = d
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
    meta["drift"]["factors"] = [round(f / m, 4) for f in meta["drift"]["factors"]]
    meta["drift"]["min"], meta["drift"]["max"] = min(meta["drift"]["factors"]), max(meta["drift"]["factors"])
    meta["drift"]["rebased_by"] = round(m, 4)
    write_meta(out, meta)


# ----------------------------------------------------------------------------------------------
# command line (shared by every runtime module)
# ----------------------------------------------------------------------------------------------
def build_parser(runtime: str, description: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser every ``python -m profilers.<runtime>`` shares."""
    ap = argparse.ArgumentParser(
        prog=f"python -m profilers.{runtime}",
        description=description or f"Measure every unit of a search space with {runtime} and append it to "
                                   f"latency_tables/{{device}}.{runtime}.csv (resumable).")
    ap.add_argument("--device", help="device name from profilers/devices.json (see --list-devices)")
    ap.add_argument("--list-devices", action="store_true", help="print the device registry and exit")
    ap.add_argument("--space", default="efficientformerv2", help="search space name or JSON file (default: %(default)s)")
    ap.add_argument("--img-size", type=positive_int, default=224, help="input resolution (default: %(default)s)")
    ap.add_argument("--num-classes", type=positive_int, default=1000, help="classes of the head (default: %(default)s)")
    ap.add_argument("--threads", type=positive_int, default=None, help="override the device's thread count")
    ap.add_argument("--cpus", default=None,
                    help="comma-separated CPU cores to pin this process to (default: the device's 'cpus'; "
                         "'none' to not pin)")
    ap.add_argument("--shard", default=None, help="measure shard i of n only (i/n, 1-based); merge the shard "
                                                  "tables with python -m profilers.merge")
    ap.add_argument("--out", default=None, help="table path (default: latency_tables/{device}.{runtime}.csv; "
                                                "with --shard, latency_tables/shards/...)")
    ap.add_argument("--runs", type=positive_int, default=None, help="timed calls per round (default: enough for ~0.12 s)")
    ap.add_argument("--rounds", type=positive_int, default=Protocol.rounds, help="timed rounds per unit (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=Protocol.warmup, help="warm-up calls (default: %(default)s)")
    ap.add_argument("--max-cv", type=float, default=Protocol.max_cv,
                    help="re-measure a unit whose round medians vary more than this (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="measure at most N missing units")
    ap.add_argument("--coverage", action="store_true", help="report which units the table lacks and exit")
    ap.add_argument("--keep-exports", default=None, help="keep exported models in this folder")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("-v", "--verbose", action="store_true", help="show converter output")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return ap


def default_out(device: str, runtime: str, shard) -> Path:
    p = table_path(device, runtime)
    if shard:
        return p.parent / "shards" / f"{device}.{runtime}.shard{shard[0]}of{shard[1]}.csv"
    return p


def parse_cpus(spec: str | None, device: Device) -> list[int] | None | str:
    """The cores of ``--cpus`` (comma-separated; ``none`` or ``all``: not pinned), or ``"device"`` (the
    device entry's) when not given."""
    if spec is None:
        return "device"
    if spec.lower() in ("none", "all", ""):
        return None
    try:
        cpus = [int(c) for c in spec.split(",")]
    except ValueError:
        raise ValueError(f"--cpus takes comma-separated core numbers, e.g. 0 or 0,1 (got {spec!r})") from None
    n = os.cpu_count() or 1
    if not set(cpus) <= set(range(n)):
        raise ValueError(f"--cpus {spec}: this machine has cores 0..{n - 1}")
    return cpus


def main(profiler_cls, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m profilers.<runtime>``."""
    from nas.space.units import probe_units, space_units
    from nas.space.spaces import get_space

    ap = build_parser(profiler_cls.name)
    profiler_cls.add_arguments(ap)
    args = ap.parse_args(argv)
    if args.list_devices:
        print(format_devices())
        return 0
    if not args.device:
        ap.error("--device is required (see --list-devices)")
    try:
        device = get_device(args.device)
        if device.connection_type == "reference":
            raise DeviceError(f"{device.name!r} is a reference device: its tables were measured on another machine "
                              f"and ship as they are. To measure this machine, use --device local-cpu")
        space = get_space(args.space)
        shard = parse_shard(args.shard)
        specs = space_units(space, args.img_size, args.num_classes)
        out = Path(args.out) if args.out else default_out(device.name, profiler_cls.name, shard)
        if args.coverage:
            from profilers.coverage import coverage_report
            text, missing = coverage_report(out, space, args.img_size, args.num_classes)
            print(text)
            return 1 if missing else 0
        protocol = Protocol(warmup=args.warmup, rounds=args.rounds, runs=args.runs, max_cv=args.max_cv)
        prof = profiler_cls(device, threads=args.threads, protocol=protocol, keep_exports=args.keep_exports,
                            quiet=not args.verbose, cpus=parse_cpus(args.cpus, device),
                            **profiler_cls.options_from_args(args))
        torch.set_num_threads(max(1, prof.threads))
        todo = shard_specs(specs, shard)
        res = run_table(prof, todo, out, space_name=space.name, img_size=args.img_size,
                        num_classes=args.num_classes, limit=args.limit, progress=not args.no_progress, shard=shard,
                        probe_specs=probe_units(), space=space.to_dict())
    except (UserError, ValueError, KeyError) as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{res['path']}: measured {res['measured']} unit(s) in {res['seconds']:.1f} s, "
          f"{res['skipped']} already present, {res['remaining']} left")
    return 0
