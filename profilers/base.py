"""The profiler plugin contract: what a runtime plugin implements and what it inherits.

A runtime plugin (``profilers/onnxruntime.py``, ``tflite.py``, ``coreml.py``, ``tensorrt.py``) is one module
holding a :class:`Profiler` subclass: it sets :attr:`Profiler.name` and :attr:`Profiler.suffix`, converts a
module to its format (:meth:`Profiler.export`, with the converters of :mod:`profilers.convert`) and times
the result (:meth:`Profiler.runner` for in-process timing, or :meth:`Profiler.measure` for an external
tool). It inherits end-to-end profiling of a module (:meth:`Profiler.profile_module`), CPU pinning and
the table metadata (:meth:`Profiler.table_meta`). Table runs are :func:`profilers.runner.run_table`; the
shared command line is :func:`profilers.cli.main`; :func:`profilers.get_profiler` is the registry.
"""
from __future__ import annotations

import abc
import argparse
import platform
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn

from nas.core.errors import UserError
from nas.core.version import TOOL, __version__
from nas.space.modules import build_unit

from profilers.devices import Device, get_device
from profilers.host import fingerprint, pinned
from profilers.stats import LatencyStats, Protocol

__all__ = ["Profiler", "ProfilerUnavailable", "software_info"]


class ProfilerUnavailable(UserError, RuntimeError):
    """A runtime, tool or device that this profiler needs is missing (the message says what to install
    or connect)."""


def software_info() -> dict:
    """Versions beside the runtime's that a measurement depends on."""
    return {"python": platform.python_version(), "torch": torch.__version__}


class Profiler(abc.ABC):
    """Exports an ``nn.Module`` to one runtime's format and measures it with the shared protocol.

    Subclasses set :attr:`name` (the runtime) and :attr:`suffix` (the exported file's extension) and
    implement :meth:`export` and :meth:`runner` (or :meth:`measure`). ``threads`` overrides the device's
    thread count; ``cpus`` the cores the measurements run on (``"device"``: the device entry's).
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
        ``benchmark_model``, ``trtexec``). With a runner, entries are timed interleaved
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
        """Runtime-specific command-line flags (added to the shared parser of :mod:`profilers.cli`)."""

    @classmethod
    def options_from_args(cls, args: argparse.Namespace) -> dict:
        """Constructor keyword arguments taken from the runtime-specific flags."""
        return {}

    @classmethod
    def options_from_settings(cls, settings: dict) -> dict:
        """Constructor keyword arguments that reproduce a table's recorded :meth:`settings` (what
        calibration and validation need to time whole networks the way the table's blocks were timed,
        also for a table written with command-line overrides)."""
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
        """Build a :class:`nas.space.units.BlockSpec` (seeded weights) and profile it."""
        torch.manual_seed(0)
        module, shape = build_unit(spec)
        return self.profile_module(module, shape, name=spec.key)

    def software(self) -> dict:
        """Versions beside the runtime's recorded with a table (:func:`software_info`)."""
        return software_info()

    def table_meta(self, space_name: str, img_size: int, num_classes: int) -> dict:
        """The metadata of a table this profiler measures (merged into an existing table's with
        :func:`profilers.table.merge_meta`)."""
        return {"device": self.device.name, "runtime": self.name, "runtime_version": self.runtime_version(),
                "precision": self.device.precision, "threads": self.threads, "settings": self.settings(),
                "space": space_name, "img_size": img_size, "num_classes": num_classes,
                "protocol": self.protocol.to_dict(), "tool": TOOL, "tool_version": __version__,
                "host": fingerprint(), "software": self.software(), "device_entry": self.device.to_dict()}
