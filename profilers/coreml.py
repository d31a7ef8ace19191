"""Core ML profiler: mlprogram ``.mlpackage`` conversion (any OS), timing on a Mac or on the phone.

Conversion is :func:`profilers.formats.convert.export_coreml` (``torch.export``, then ``ct.convert(...,
convert_to="mlprogram", compute_precision=FLOAT16, compute_units=<device entry>,
minimum_deployment_target=iOS16)``) with an fp32 input named ``input`` and an output named ``output``.

* Device connection ``local`` on macOS: each package is timed with ``MLModel.predict`` and the shared
  protocol (this times the Mac, not a phone).
* Device connection ``bundle`` (``iphone12``), or any device off macOS: ``python -m profilers.coreml
  --device iphone12`` writes a *device bundle* to time on the device, and ``python -m profilers.coreml
  import --device iphone12 results.json`` reads the timings back (:mod:`profilers.transports.coreml_bundle`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from nas.core.cli import command
from nas.core.values import TEXT, one_of, setting

from profilers.devices import get_device
from profilers.formats.convert import export_coreml, import_coremltools
from profilers.plugin.base import Loaded, Profiler, ProfilerUnavailable
from profilers.plugin.cli import build_parser, run_cli, user_errors
from profilers.plugin.options import RuntimeOptions
from profilers.runtimes import register_runtime
from profilers.timing.protocol import LatencyStats
from profilers.transports.coreml_bundle import bundle_command, import_command

__all__ = ["CoreMLProfiler", "CoreMLOptions", "main"]

COMPUTE_UNITS = ("ALL", "CPU_AND_NE", "CPU_AND_GPU", "CPU_ONLY")


@dataclass(frozen=True)
class CoreMLOptions(RuntimeOptions):
    """Core ML's options: the compute units a model may run on and the deployment target it is built for."""
    compute_units: str = setting("ALL", one_of(COMPUTE_UNITS), help="Core ML compute units")
    minimum_deployment_target: str = setting("iOS16", TEXT, help="coremltools deployment target (e.g. iOS16)")


@register_runtime
class CoreMLProfiler(Profiler):
    name = "coreml"
    suffix = ".mlpackage"
    Options = CoreMLOptions

    @classmethod
    def how_to_measure(cls, device) -> str:
        if device.connection_type != "bundle":
            return super().how_to_measure(device) + " (on a Mac: Core ML predicts only on macOS)"
        return (f"python -m profilers.coreml --device {device.name} (writes a bundle of Core ML packages), time "
                f"them on the iPhone, then python -m profilers.coreml import --device {device.name} results.json")

    @property
    def compute_units(self) -> str:
        return self.options.compute_units

    def runtime_version(self) -> str:
        try:
            return f"coremltools {version('coremltools')}"
        except PackageNotFoundError:
            return "unknown"

    def settings(self) -> dict:
        return {**super().settings(), "converter": "coremltools (torch.export route)",
                "connection": self.device.connection_type}

    def check_ready(self) -> None:
        if self.device.connection_type == "bundle":
            raise ProfilerUnavailable(
                f"{self.device.name} is timed on the phone itself: write a bundle with python -m profilers.coreml "
                f"--device {self.device.name}, time it on the device, then python -m profilers.coreml import "
                f"--device {self.device.name} results.json")
        if sys.platform != "darwin":
            raise ProfilerUnavailable(
                f"Core ML prediction needs macOS (this is {sys.platform}); conversion works here: "
                f"python -m profilers.coreml --device {self.device.name} writes a device bundle to time elsewhere")

    def export(self, module, input_shape, path):
        return export_coreml(module, input_shape, path, self.compute_units, self.device.precision,
                             self.options.minimum_deployment_target, quiet=self.quiet)

    def profile_module(self, module, input_shape, name: str = "model") -> LatencyStats:
        self.check_ready()
        return super().profile_module(module, input_shape, name)

    def load(self, path, input_shape):                         # macOS only
        self.check_ready()
        ct = import_coremltools(self.quiet)
        m = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit[self.compute_units])
        feed = {"input": np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)}
        return Loaded(lambda: m.predict(feed),
                      lambda v: next(iter(m.predict({"input": np.asarray(v, np.float32)}).values())))


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def _drop_option(argv: list[str], opt: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == opt:
            skip = True
        elif not a.startswith(opt + "="):
            out.append(a)
    return out


@command
def main(argv=None) -> int:
    """``python -m profilers.coreml`` (bundle or Mac timing) and ``python -m profilers.coreml import``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "import":
        return import_command(argv[1:])
    ap = build_parser(CoreMLProfiler)
    ap.add_argument("--bundle", default=None, help="bundle folder (default: build/coreml/{device})")
    args, _ = ap.parse_known_args(argv)
    dev = get_device(args.device) if args.device else None
    if dev is None or args.list_devices or args.coverage or (dev.connection_type == "local" and sys.platform == "darwin"):
        return run_cli(CoreMLProfiler, _drop_option(argv, "--bundle"))
    args = ap.parse_args(argv)
    with user_errors():
        prof = CoreMLProfiler(dev, threads=args.threads, quiet=not args.verbose)
    return bundle_command(prof, args)


if __name__ == "__main__":
    raise SystemExit(main())
