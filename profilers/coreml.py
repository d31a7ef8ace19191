"""Core ML profiler: mlprogram ``.mlpackage`` conversion (any OS), timing on an iPhone, a Mac, or by your own app.

Conversion is :func:`profilers.formats.convert.export_coreml` (``torch.export``, then ``ct.convert(...,
convert_to="mlprogram", compute_precision=FLOAT16, compute_units=<device entry>,
minimum_deployment_target=<device entry>)``) with an fp32 input named ``input`` and an output named ``output``.

* **An iPhone in one command** (device connection ``iphone``, e.g. ``iphone12``), on a Mac with Xcode and the
  phone connected: ``python -m profilers.coreml --device iphone12 --team-id TEAMID`` builds, signs and
  launches Apple's model-runner app on the phone once (coremltools' remote-device API,
  :mod:`profilers.transports.coreml_remote`) and times every unit there: the protocol's warm-up, then
  ``rounds`` x ``runs`` (default 5) timed predictions per unit, summarised like local runs; with iOS 17.4+
  the compute plan's share of each unit's work on the Neural Engine, GPU and CPU goes into the table's
  ``compute_units`` column. ``--iphone NAME_OR_UDID`` picks one of several phones; ``EFFV2_TEAM_ID`` can
  stand for ``--team-id`` (also for ``nas.calibrate`` / ``nas.validate``, which time whole networks the same
  way). Resumable: a rerun times only what the table lacks.
* **Without Xcode signing** (no team id): ``python -m profilers.coreml --device iphone12`` writes a *device
  bundle* to time on the device with an app of your own, and ``python -m profilers.coreml import --device
  iphone12 results.json`` reads the timings back (:mod:`profilers.transports.coreml_bundle`).
* Device connection ``local`` on macOS: each package is timed with ``MLModel.predict`` and the shared
  protocol (this times the Mac, not a phone).
"""
from __future__ import annotations

import os
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
from profilers.runtimes import UnitFailed, register_runtime
from profilers.timing.protocol import LatencyStats
from profilers.transports.coreml_bundle import bundle_command, import_command
from profilers.transports.coreml_remote import IPHONE_FLAG, TEAM_ENV, TEAM_FLAG, RemoteIPhone, RemoteUnitError

__all__ = ["CoreMLProfiler", "CoreMLOptions", "main"]

COMPUTE_UNITS = ("ALL", "CPU_AND_NE", "CPU_AND_GPU", "CPU_ONLY")
#: connections of an iPhone: ``iphone`` (and ``bundle``, what its entries said before the remote-device path)
PHONE = ("iphone", "bundle")
#: timed predictions per protocol round on the phone, when the protocol does not fix ``runs``
PHONE_RUNS_PER_ROUND = 5


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

    def __init__(self, *a, team_id: str | None = None, iphone: str | None = None, **kw):
        super().__init__(*a, **kw)
        self.team_id = team_id or os.environ.get(TEAM_ENV) or None
        self.iphone = iphone
        self._phone: RemoteIPhone | None = None

    @classmethod
    def how_to_measure(cls, device) -> str:
        if device.connection_type not in PHONE:
            return super().how_to_measure(device) + " (on a Mac: Core ML predicts only on macOS)"
        return (f"python -m profilers.coreml --device {device.name} {TEAM_FLAG} TEAMID on a Mac with Xcode and the "
                f"iPhone connected (or, without signing: python -m profilers.coreml --device {device.name} writes a "
                f"bundle of Core ML packages to time on the phone, then python -m profilers.coreml import --device "
                f"{device.name} results.json)")

    @classmethod
    def add_arguments(cls, ap):
        ap.add_argument(TEAM_FLAG, dest="team_id", default=None,
                        help=f"Apple development team id that signs the model-runner app (or {TEAM_ENV}): times an "
                             f"iPhone connected to this Mac in one command")
        ap.add_argument(IPHONE_FLAG, dest="iphone", default=None, help="name or UDID of the iPhone, when several "
                                                                       "are connected")

    @classmethod
    def arguments(cls, args):
        return {"team_id": args.team_id, "iphone": args.iphone}

    @property
    def on_phone(self) -> bool:
        """Whether units are timed on an iPhone through the remote-device API (an iPhone entry and a team id)."""
        return self.device.connection_type in PHONE and bool(self.team_id)

    def phone(self) -> RemoteIPhone:
        """The iPhone, found and its model-runner app prepared (once)."""
        if self._phone is None:
            self._phone = RemoteIPhone(self.iphone, self.team_id, compute_units=self.compute_units)
        return self._phone

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
        if self.device.connection_type in PHONE:
            if not self.team_id:
                raise ProfilerUnavailable(
                    f"{self.device.name} is an iPhone: on a Mac with Xcode and the phone connected, give your Apple "
                    f"development team with {TEAM_FLAG} TEAMID (or {TEAM_ENV}=TEAMID) to time it in one command; "
                    f"without signing, write a bundle with python -m profilers.coreml --device {self.device.name}, "
                    f"time it on the phone, then python -m profilers.coreml import --device {self.device.name} "
                    f"results.json")
            self.phone().prepare()
            return
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

    def measure(self, path, input_shape) -> LatencyStats:
        if not self.on_phone:
            return super().measure(path, input_shape)
        p = self.protocol
        try:
            t = self.phone().measure(path, iterations=p.rounds * (p.runs or PHONE_RUNS_PER_ROUND), warmup=p.warmup)
        except RemoteUnitError as e:            # this package only: the phone goes on with the others
            raise UnitFailed(str(e)) from None
        return t.stats(p.rounds).with_compute(t.compute_units)

    def table_meta(self, space_name: str, img_size: int, num_classes: int):
        meta = super().table_meta(space_name, img_size, num_classes)
        if not self.on_phone:
            return meta
        facts = {k: v for k, v in self.phone().meta().items() if k != "team_id"}
        return meta.replace(runtime_version=f"Core ML on iOS {facts.get('os_version')} ({self.runtime_version()})",
                            host=facts)

    def load(self, path, input_shape):                         # a Mac timing itself: macOS only
        if self.device.connection_type in PHONE:
            return None
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
    on_phone = dev is not None and dev.connection_type in PHONE and bool(args.team_id or os.environ.get(TEAM_ENV))
    if dev is None or args.list_devices or args.coverage or on_phone or (dev.local and sys.platform == "darwin"):
        return run_cli(CoreMLProfiler, _drop_option(argv, "--bundle"))
    args = ap.parse_args(argv)
    with user_errors():
        prof = CoreMLProfiler(dev, threads=args.threads, quiet=not args.verbose)
    return bundle_command(prof, args)


if __name__ == "__main__":
    raise SystemExit(main())
