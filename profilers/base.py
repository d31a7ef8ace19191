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
from typing import Sequence

import torch
import torch.nn as nn

from .devices import Device, DeviceError, format_devices, get_device
from .stats import LatencyStats, Protocol
from .table import (TableError, TableWriter, check_compatible, existing_keys, now_iso, read_meta,
                    table_path, write_meta)

__all__ = ["Profiler", "ProfilerUnavailable", "build_parser", "main", "run_table", "parse_shard", "shard_specs",
           "host_info", "quiet_output"]

TOOL = "effv2-nas profilers"
TOOL_VERSION = "0.1.0"


class ProfilerUnavailable(RuntimeError):
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


def host_info() -> dict:
    """Where a measurement ran: CPU model, core count, the cores this process may use, OS, Python."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "machine": platform.machine(), "os": platform.platform(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__}
    if hasattr(os, "sched_getaffinity"):
        info["cpu_affinity"] = sorted(os.sched_getaffinity(0))
    return info


class Profiler(abc.ABC):
    """Exports an ``nn.Module`` to one runtime's format and measures it with the shared protocol.

    Subclasses set :attr:`name` (the runtime) and :attr:`suffix` (the exported file's extension) and
    implement :meth:`export` and :meth:`measure`. ``threads`` overrides the device's thread count.
    """
    name: str = ""
    suffix: str = ""

    def __init__(self, device: Device | str, threads: int | None = None, protocol: Protocol | None = None,
                 keep_exports: str | Path | None = None, quiet: bool = True):
        dev = get_device(device) if isinstance(device, str) else device
        if self.name not in dev.runtimes and dev.runtime != self.name:
            raise ValueError(f"device {dev.name!r} is profiled with {'/'.join(dev.runtimes)}, not {self.name}; "
                             f"use python -m profilers.{dev.runtime} --device {dev.name}")
        self.device = dev.with_threads(threads)
        self.threads = self.device.threads
        self.protocol = protocol or Protocol()
        self.keep_exports = Path(keep_exports) if keep_exports else None
        self.quiet = quiet

    # -- to implement -------------------------------------------------------------------------------
    @abc.abstractmethod
    def export(self, module: nn.Module, input_shape: tuple, path: Path) -> Path:
        """Write ``module`` (eval mode, batch-1 ``input_shape``) in this runtime's format to ``path``."""

    @abc.abstractmethod
    def measure(self, path: Path, input_shape: tuple) -> LatencyStats:
        """Time the exported model at ``path`` with :attr:`protocol` on :attr:`device`."""

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
                "host": host_info(), "device_entry": self.device.to_dict()}


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


def run_table(profiler: Profiler, specs: Sequence, out: str | Path, *, space_name: str, img_size: int,
              num_classes: int, limit: int | None = None, progress: bool = True, shard=None) -> dict:
    """Measure every unit of ``specs`` missing from table ``out``, appending one flushed row per unit.

    Returns a summary dict: ``measured`` (count), ``skipped`` (already present), ``seconds`` (wall time
    of this run), ``path``.
    """
    from tqdm import tqdm

    out = Path(out)
    meta_new = profiler.table_meta(space_name, img_size, num_classes)
    check_compatible(out, meta_new)
    have = existing_keys(out)
    todo = [s for s in specs if s.key not in have]
    if limit is not None:
        todo = todo[:max(0, int(limit))]
    profiler.check_ready()
    old = read_meta(out)
    meta = {**old, **meta_new}
    meta["created"] = old.get("created", now_iso())
    meta["updated"] = now_iso()
    meta["img_sizes"] = _merge_list(old.get("img_sizes"), [img_size])
    meta["spaces"] = _merge_list(old.get("spaces"), [space_name])
    meta["img_size"], meta["space"] = old.get("img_size", img_size), old.get("space", space_name)
    meta["num_classes"] = old.get("num_classes", num_classes)
    if shard:
        meta["shard"] = f"{shard[0]}/{shard[1]}"
    write_meta(out, meta)
    t0 = time.perf_counter()
    n_done = 0
    try:
        with TableWriter(out) as w:
            bar = tqdm(todo, desc=f"{profiler.device.name}/{profiler.name}", unit="unit", disable=not progress,
                       dynamic_ncols=True)
            for spec in bar:
                bar.set_postfix_str(spec.key, refresh=False)
                stats = profiler.profile_spec(spec)
                w.append(spec.to_dict(), stats, profiler.threads)
                n_done += 1
    finally:
        secs = time.perf_counter() - t0
        meta = read_meta(out) or meta
        meta["updated"] = now_iso()
        meta["profiling_seconds"] = round(float(meta.get("profiling_seconds", 0.0)) + secs, 2)
        meta["rows"] = len(existing_keys(out))
        write_meta(out, meta)
    skipped = sum(s.key in have for s in specs)
    return {"path": str(out), "measured": n_done, "skipped": skipped, "seconds": secs,
            "remaining": len(specs) - skipped - n_done}


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
    ap.add_argument("--img-size", type=int, default=224, help="input resolution (default: %(default)s)")
    ap.add_argument("--num-classes", type=int, default=1000, help="classes of the head (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=None, help="override the device's thread count")
    ap.add_argument("--cpus", default=None,
                    help="comma-separated CPU cores to pin this process to (default: the device's 'cpus'; "
                         "'none' to not pin)")
    ap.add_argument("--shard", default=None, help="measure shard i of n only (i/n, 1-based); merge the shard "
                                                  "tables with python -m profilers.merge")
    ap.add_argument("--out", default=None, help="table path (default: latency_tables/{device}.{runtime}.csv; "
                                                "with --shard, latency_tables/shards/...)")
    ap.add_argument("--runs", type=int, default=None, help="timed calls per round (default: enough for ~0.12 s)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per unit (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=10, help="warm-up calls (default: %(default)s)")
    ap.add_argument("--max-cv", type=float, default=0.03,
                    help="re-measure a unit whose round medians vary more than this (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="measure at most N missing units")
    ap.add_argument("--coverage", action="store_true", help="report which units the table lacks and exit")
    ap.add_argument("--keep-exports", default=None, help="keep exported models in this folder")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("-v", "--verbose", action="store_true", help="show converter output")
    return ap


def default_out(device: str, runtime: str, shard) -> Path:
    p = table_path(device, runtime)
    if shard:
        return p.parent / "shards" / f"{device}.{runtime}.shard{shard[0]}of{shard[1]}.csv"
    return p


def pin_cpus(spec: str | None, device: Device) -> list[int] | None:
    """Pin this process to the cores of ``--cpus`` or the device entry (no-op where unsupported)."""
    if spec is not None and spec.lower() in ("none", "all", ""):
        return None
    cpus = [int(c) for c in spec.split(",")] if spec else (list(device.cpus) if device.cpus is not None else None)
    if cpus and hasattr(os, "sched_setaffinity"):
        avail = os.sched_getaffinity(0)
        if not set(cpus) <= set(range(os.cpu_count() or 1)):
            raise ValueError(f"--cpus {cpus}: this machine has cores 0..{(os.cpu_count() or 1) - 1}")
        if set(cpus) != avail:
            os.sched_setaffinity(0, set(cpus))
    return cpus


def main(profiler_cls, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m profilers.<runtime>``."""
    from nas.blocks import space_units
    from nas.space import get_space

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
        space = get_space(args.space)
        shard = parse_shard(args.shard)
        specs = space_units(space, args.img_size, args.num_classes)
        out = Path(args.out) if args.out else default_out(device.name, profiler_cls.name, shard)
        if args.coverage:
            from .coverage import coverage_report
            text, missing = coverage_report(out, space, args.img_size, args.num_classes)
            print(text)
            return 1 if missing else 0
        pin_cpus(args.cpus, device)
        protocol = Protocol(warmup=args.warmup, rounds=args.rounds, runs=args.runs, max_cv=args.max_cv)
        prof = profiler_cls(device, threads=args.threads, protocol=protocol, keep_exports=args.keep_exports,
                            quiet=not args.verbose, **profiler_cls.options_from_args(args))
        torch.set_num_threads(max(1, prof.threads))
        todo = shard_specs(specs, shard)
        res = run_table(prof, todo, out, space_name=space.name, img_size=args.img_size,
                        num_classes=args.num_classes, limit=args.limit, progress=not args.no_progress, shard=shard)
    except (DeviceError, TableError, ProfilerUnavailable, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{res['path']}: measured {res['measured']} unit(s) in {res['seconds']:.1f} s, "
          f"{res['skipped']} already present, {res['remaining']} left")
    return 0
