"""The profiler plugin contract: what a runtime plugin implements and what it inherits.

A runtime plugin is one module (``profilers/onnxruntime.py``, ``tflite.py``, ... or a module of your own
package) holding a :class:`Profiler` subclass decorated with
:func:`~profilers.runtimes.register_runtime`. It sets :attr:`Profiler.name` and :attr:`Profiler.suffix`,
declares its options (:attr:`Profiler.Options`, a :class:`~profilers.plugin.options.RuntimeOptions`
read from the device entry), converts a module to its format (:meth:`Profiler.export`, with the converters
of :mod:`profilers.formats.convert`) and runs the result: :meth:`Profiler.load` for a model it runs in
this process (timed by the shared protocol, and used by the export checks to compare outputs), or
:meth:`Profiler.measure` for an external tool. It inherits end-to-end profiling of a module
(:meth:`Profiler.profile_module`), the probe (:meth:`Profiler.measure_probe`), CPU pinning and the table
metadata (:meth:`Profiler.table_meta`). Table runs are :func:`profilers.tables.runs.run_table`; the shared
command line is :func:`profilers.plugin.cli.main`.
"""
from __future__ import annotations

import abc
import argparse
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from nas.core.version import TOOL, __version__
from nas.space.modules import build_unit, unit_builders
from nas.space.units import probe_units

from profilers.devices import Device, get_device
from profilers.plugin.options import OptionsError, RuntimeOptions
from profilers.runtimes import ProfilerUnavailable, UnitFailed
from profilers.tables.meta import TableMeta
from profilers.timing.batch import measure_modules
from profilers.timing.host import fingerprint, pinned
from profilers.timing.protocol import LatencyStats, Protocol, Timer

__all__ = ["Profiler", "ProfilerUnavailable", "UnitFailed", "Loaded", "software_info"]


def software_info() -> dict:
    """Versions beside the runtime's that a measurement depends on."""
    return {"python": platform.python_version(), "torch": torch.__version__}


@dataclass(frozen=True)
class Loaded:
    """An exported model loaded in this process: ``run()`` runs it once on a fixed input (what is timed),
    ``predict(x)`` returns its output for ``x`` (what the export checks compare; None where this runtime
    cannot return outputs)."""
    run: Callable[[], object]
    predict: Callable[[np.ndarray], np.ndarray] | None = None


class Profiler(abc.ABC):
    """Exports an ``nn.Module`` to one runtime's format and measures it with the shared protocol.

    Subclasses set :attr:`name` (the runtime), :attr:`suffix` (the exported file's extension),
    :attr:`Options` and :attr:`aliases`, and implement :meth:`export` and :meth:`load` (or :meth:`measure`).
    ``threads`` overrides the device's thread count; ``cpus`` the cores the measurements run on
    (``"device"``: the device entry's); ``options`` the options the device entry gives.
    """
    name: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    #: other names the runtime answers to (``python -m profilers.X``'s X is always :attr:`name`)
    aliases: ClassVar[tuple[str, ...]] = ()
    #: the runtime's own options, read from the device entry
    Options: ClassVar[type[RuntimeOptions]] = RuntimeOptions
    #: times a round of calls (``timer(fn, runs)`` -> ms per call); None: the protocol's perf_counter timer
    timer: ClassVar[Timer | None] = None

    def __init__(self, device: Device | str, threads: int | None = None, protocol: Protocol | None = None,
                 keep_exports: str | Path | None = None, quiet: bool = True,
                 cpus: Sequence[int] | None | str = "device", options: RuntimeOptions | None = None):
        dev = self.check_device(get_device(device))
        self.device = dev.with_threads(threads)
        self.threads = self.device.threads
        self.options = options if options is not None else self.Options.from_entry(dev)
        if not isinstance(self.options, self.Options):
            raise TypeError(f"{type(self).__name__} takes {self.Options.__name__}, not {type(self.options).__name__}")
        self.protocol = protocol or Protocol()
        self.keep_exports = Path(keep_exports) if keep_exports else None
        self.quiet = quiet
        #: cores the measurements run on (the device entry's by default; None: wherever the OS puts them)
        self.cpus = (list(self.device.cpus) if self.device.cpus is not None else None) if cpus == "device" \
            else (list(cpus) if cpus is not None else None)

    @classmethod
    def check_device(cls, dev: Device) -> Device:
        """``dev``, when this runtime profiles it (OptionsError naming the runtime that does otherwise)."""
        if cls.name not in dev.runtimes:
            raise OptionsError(f"device {dev.name!r} is profiled with {'/'.join(dev.runtimes)}, not {cls.name}; "
                               f"use python -m profilers.{dev.runtime} --device {dev.name}")
        return dev

    @classmethod
    def for_table(cls, meta: TableMeta, threads: int | None = None) -> "Profiler":
        """This plugin set up the way the table with metadata ``meta`` was measured: its device (as the table
        recorded it), threads, protocol and options (also for a table written with command-line overrides),
        so whole networks are timed like its units."""
        return cls(meta.device, threads=threads or meta.threads, protocol=meta.protocol,
                   options=cls.Options.from_settings(meta.settings, f"table of {meta.device.name}"))

    # -- to implement -------------------------------------------------------------------------------
    @abc.abstractmethod
    def export(self, module: nn.Module, input_shape: tuple, path: Path) -> Path:
        """Write ``module`` (eval mode, batch-1 ``input_shape``) in this runtime's format to ``path``."""

    def load(self, path: Path, input_shape: tuple) -> Loaded | None:
        """The exported model at ``path`` loaded in this process (:class:`Loaded`: a timed call, and the
        model's outputs for an input), or ``None`` when timing happens in an external tool (a phone's
        ``benchmark_model``, ``trtexec``). Loaded models are timed interleaved
        (:meth:`profilers.timing.protocol.Protocol.measure_many`)."""
        return None

    def measure(self, path: Path, input_shape: tuple) -> LatencyStats:
        """Time the exported model at ``path`` with :attr:`protocol` on :attr:`device`. Plugins whose
        :meth:`load` gives None override this."""
        loaded = self.load(path, input_shape)
        if loaded is None:
            raise NotImplementedError(f"{type(self).__name__} implements neither load() nor measure()")
        return self.protocol.measure(loaded.run, self.timer)

    def measure_batch(self, paths: Mapping[str, tuple[Path, tuple]]) -> tuple[dict[str, LatencyStats], dict[str, str]]:
        """Time a batch of exported models that :meth:`load` cannot run here: ``(stats by name, failures)``, a
        failure being a model the device could not run (:class:`UnitFailed`: name -> why; the others are
        still measured). One after another by default; a plugin whose device takes many at once (a hosted
        device) overrides it."""
        stats, failures = {}, {}
        for name, (path, shape) in paths.items():
            try:
                stats[name] = self.measure(path, shape)
            except UnitFailed as e:
                failures[name] = str(e)
        return stats, failures

    def writes_to(self, path: Path) -> None:
        """Note the file the measurements go to (a table, a journal of networks): a plugin that keeps state
        beside it (a job ledger) keeps it there."""

    #: models a device takes at once (a hosted device: many jobs in flight); None: the callers' batches
    batch_size: int | None = None

    def runtime_version(self) -> str:
        """Version of the runtime that measures (recorded in the table metadata)."""
        return "unknown"

    def check_ready(self) -> None:
        """Raise :class:`ProfilerUnavailable` (before any work) when a tool or device is missing."""

    def settings(self) -> dict:
        """What the table records of how it was measured: the options (which :meth:`for_table` reads back)
        and, in plugins, descriptions of the rest (exporter, what is timed ...)."""
        return self.options.to_dict()

    @classmethod
    def how_to_measure(cls, device: Device) -> str:
        """What a user runs, and needs, to measure ``device``'s table with this runtime (one sentence, for
        the message of a missing table)."""
        where = "" if not device.local or device.name == "local-cpu" else " on that machine"
        return f"python -m profilers.{cls.name} --device {device.name}{where}"

    @classmethod
    def add_arguments(cls, ap: argparse.ArgumentParser) -> None:
        """Flags of this runtime's tools that are not options (a binary's path, a phone's serial), added to
        the shared parser of :mod:`profilers.plugin.cli` (option overrides are added from :attr:`Options`)."""

    @classmethod
    def arguments(cls, args: argparse.Namespace) -> dict:
        """Constructor keyword arguments taken from the flags :meth:`add_arguments` added."""
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

    def measure_probe(self, progress: bool = False) -> Mapping[str, LatencyStats]:
        """The probe units (:func:`nas.space.units.probe_units`) measured now, on their own: ``{key: stats}``
        (what a table's probe reference is compared with)."""
        self.check_ready()
        return measure_modules(self, unit_builders(probe_units()), progress=progress, desc="probe")

    def software(self) -> dict:
        """Versions beside the runtime's recorded with a table (:func:`software_info`)."""
        return software_info()

    def table_meta(self, space_name: str, img_size: int, num_classes: int) -> TableMeta:
        """The metadata of a table this profiler measures (joined with an existing table's by
        :meth:`profilers.tables.meta.TableMeta.joined`)."""
        return TableMeta(device=self.device, runtime=self.name, runtime_version=self.runtime_version(),
                         precision=self.device.precision, threads=self.threads, settings=self.settings(),
                         space=space_name, img_size=img_size, num_classes=num_classes, protocol=self.protocol,
                         tool=TOOL, tool_version=__version__, host=fingerprint(), software=self.software())
