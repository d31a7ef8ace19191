"""The command line every runtime plugin shares: ``python -m profilers.<runtime> --device NAME [...]``.

A plugin module ends with ``raise SystemExit(main(MyProfiler))``; :func:`build_parser` gives it the shared
flags (device, space, resolution, protocol, sharding, output, plus :func:`nas.core.cli.add_common_args`)
and :meth:`profilers.plugin.base.Profiler.add_arguments` its own. Errors the user can fix exit with status 2
and one line on stderr (:func:`nas.core.cli.command`); the summary is logged at INFO (stdout).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator, Sequence

import torch

from nas.core.cli import ArgumentParser, add_common_args, command, nonnegative_int, positive_int
from nas.core.files import claim_output
from nas.core.errors import UserError
from nas.core.values import FLAG, add_setting
from nas.space.spaces import SearchSpace, get_space
from nas.space.units import probe_units, space_units

from profilers.devices import Device, DeviceError, get_device, list_devices
from profilers.plugin.options import OptionsError
from profilers.runtimes import UnknownRuntime, get_profiler, list_runtimes
from profilers.tables.runs import parse_shard, run_table, shard_specs
from profilers.tables.table import coverage_report, table_path
from profilers.timing.protocol import Protocol

__all__ = ["build_parser", "run_options", "default_out", "parse_cpus", "user_errors", "RunTarget", "run_target",
           "run_cli", "main", "dispatch", "format_devices"]

log = logging.getLogger(__name__)


def build_parser(profiler_cls, description: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser of ``python -m profilers.<runtime>``: the shared flags, the flags of the plugin's
    options that may change for one run (fields of :attr:`~profilers.plugin.base.Profiler.Options` with a
    ``flag``) and the plugin's own (:meth:`~profilers.plugin.base.Profiler.add_arguments`)."""
    runtime = profiler_cls.name
    ap = ArgumentParser(
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
    add_setting(ap, "--runs", Protocol, "runs")
    add_setting(ap, "--rounds", Protocol, "rounds", help="timed rounds per unit (default: %(default)s)")
    add_setting(ap, "--warmup", Protocol, "warmup", help="warm-up calls (default: %(default)s)")
    add_setting(ap, "--max-cv", Protocol, "max_cv",
                help="re-measure a unit whose round medians vary more than this (default: %(default)s)")
    add_setting(ap, "--common-mode", Protocol, "common_mode",
                help="divide each sweep over a batch by the host speed its units share (default: on)")
    ap.add_argument("--limit", type=nonnegative_int, default=None, help="measure at most N missing units")
    ap.add_argument("--coverage", action="store_true", help="report which units the table lacks and exit")
    ap.add_argument("--keep-exports", default=None, help="keep exported models in this folder")
    opts = ap.add_argument_group(f"{runtime} options (default: the device entry's; a change needs --out)")
    for f in dataclasses.fields(profiler_cls.Options):
        flag = f.metadata.get("flag")
        if flag:
            rule = f.metadata["rule"]
            kw = ({"action": argparse.BooleanOptionalAction} if rule is FLAG else {"type": rule, "metavar": f.name.upper()})
            opts.add_argument(flag, dest=f"option_{f.name}", default=None, help=f.metadata.get("help"), **kw)
    profiler_cls.add_arguments(ap)
    add_common_args(ap)                               # --debug, -v (also: show converter output), -q, --no-progress
    return ap


def run_options(profiler_cls, device: Device, args: argparse.Namespace):
    """The plugin's options for this run: the device entry's, with the option flags given. A change from
    the entry needs ``--out``: the device's own table keeps its entry's options (calibration and
    validation time whole networks with them)."""
    entry = profiler_cls.Options.from_entry(profiler_cls.check_device(device))
    changes = {f.name: getattr(args, f"option_{f.name}", None) for f in dataclasses.fields(profiler_cls.Options)}
    options = entry.replace(**changes)
    changed = [f"{f.metadata.get('flag')} {getattr(options, f.name)}" for f in dataclasses.fields(options)
               if getattr(options, f.name) != getattr(entry, f.name)]
    if changed and not args.out:
        raise OptionsError(f"{', '.join(changed)} differs from device {device.name!r}'s entry; its own table keeps the "
                           f"entry's settings (calibration and validation measure networks with them): write this "
                           f"run to another table with --out FILE, or add a device entry")
    return options


def default_out(device: str, runtime: str, shard) -> Path:
    """The table a run writes without ``--out``: the device's table, or its shard's under ``shards/``."""
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


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Inside a command: a ``ValueError`` or ``KeyError`` (a bad value or name given on the command line)
    becomes a :class:`~nas.core.errors.UserError` with the same message, so :func:`nas.core.cli.command`
    reports it in one line."""
    try:
        yield
    except UserError:
        raise
    except (ValueError, KeyError) as e:
        raise UserError(str(e)) from e


@dataclasses.dataclass(frozen=True)
class RunTarget:
    """What a command line asks a plugin to measure: the device, the space, this run's shard of its units
    and the table they go to."""
    device: Device
    space: SearchSpace
    shard: tuple | None
    specs: list
    out: Path

    @property
    def shard_specs(self) -> list:
        """The units of this run's shard."""
        return shard_specs(self.specs, self.shard)


def run_target(profiler_cls, ap: argparse.ArgumentParser, args: argparse.Namespace) -> RunTarget:
    """The device, space, shard, units and output table of ``args`` (parsed by ``ap``, from
    :func:`build_parser`); a reference device is refused. Call within :func:`user_errors`."""
    if not args.device:
        ap.error("--device is required (see --list-devices)")
    device = get_device(args.device)
    if device.connection_type == "reference":
        raise DeviceError(f"{device.name!r} is a reference device: its tables were measured on another machine "
                          f"and ship as they are. To measure this machine, use --device local-cpu")
    shard = parse_shard(args.shard)
    space = get_space(args.space)
    return RunTarget(device, space, shard, space_units(space, args.img_size, args.num_classes),
                     Path(args.out) if args.out else default_out(device.name, profiler_cls.name, shard))


def run_cli(profiler_cls, argv: Sequence[str]) -> int:
    """``python -m profilers.<runtime>`` without the error handling of :func:`main` (for commands that
    extend it, such as ``python -m profilers.coreml``)."""
    ap = build_parser(profiler_cls)
    args = ap.parse_args(argv)
    if args.list_devices:
        print(format_devices())
        return 0
    with user_errors():
        target = run_target(profiler_cls, ap, args)
        device, space, shard, out = target.device, target.space, target.shard, target.out
        if args.coverage:
            text, missing = coverage_report(out, space, args.img_size, args.num_classes)
            print(text)
            return 1 if missing else 0
        protocol = Protocol(warmup=args.warmup, rounds=args.rounds, runs=args.runs, max_cv=args.max_cv,
                            common_mode=args.common_mode)
        prof = profiler_cls(device, threads=args.threads, protocol=protocol, keep_exports=args.keep_exports,
                            quiet=not args.verbose, cpus=parse_cpus(args.cpus, device),
                            options=run_options(profiler_cls, device, args), **profiler_cls.arguments(args))
        claim_output(out)                          # every setting checked: now the outputs, before any work
        if args.keep_exports:
            claim_output(args.keep_exports, folder=True)
        torch.set_num_threads(max(1, prof.threads))
        res = run_table(prof, target.shard_specs, out, space_name=space.name, img_size=args.img_size,
                        num_classes=args.num_classes, limit=args.limit, progress=not args.no_progress, shard=shard,
                        probe_specs=probe_units() if device.local else None, space=space.to_dict())
    log.info("%s: measured %d unit(s) in %.1f s, %d already present, %d left", res.path, res.measured, res.seconds,
             res.skipped, res.remaining)
    if res.failed:
        log.warning("%d unit(s) the device could not run (rerun to try them again): %s", len(res.failed),
                    ", ".join(sorted(res.failed)))
    return 0


def format_devices() -> str:
    """The registry as a readable table (what ``--list-devices`` prints): each device's runtimes, precision,
    threads, the options its default runtime reads from its entry, its connection and description."""
    rows = []
    for d in list_devices().values():
        try:
            how = get_profiler(d.runtime).Options.from_entry(d).summary()
        except (UserError, ValueError) as e:
            how = f"(invalid: {e})"
        rows.append((d.name, "/".join(d.runtimes), d.precision, str(d.threads), how, d.connection_type,
                     d.description))
    head = ("device", "runtimes", "precision", "threads", "options", "connection", "description")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(6)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6]
    return "\n".join([fmt(head)] + [fmt(r) for r in rows])


def main(profiler_cls, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m profilers.<runtime>``: ``raise SystemExit(main(MyProfiler))``."""
    return command(lambda a: run_cli(profiler_cls, a))(argv)


#: ``effv2-profile`` subcommands besides the runtimes: the module whose ``main(argv)`` runs them.
TOOLS = {"coverage": "profilers.coverage", "merge": "profilers.merge"}


def _usage() -> str:
    return ("usage: effv2-profile <runtime> --device NAME [args]   (= python -m profilers.<runtime>)\n"
            f"       effv2-profile {{{','.join(TOOLS)}}} [args]\n\nruntimes: {', '.join(list_runtimes())}\n"
            "effv2-profile <runtime> --help shows its arguments; --list-devices the known devices.")


def dispatch(argv: Sequence[str] | None = None) -> int:
    """``effv2-profile <runtime|coverage|merge> [args]``: the console script over ``python -m profilers.*``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name in TOOLS:
        return importlib.import_module(TOOLS[name]).main(rest)
    try:
        cls = get_profiler(name)
    except UnknownRuntime as e:
        print(f"error: {e}\n\n{_usage()}", file=sys.stderr)
        return 2
    own = getattr(importlib.import_module(cls.__module__), "main", None)
    if own is not None and own is not main:        # a plugin with its own command (profilers.coreml)
        return own(rest)
    return main(cls, rest)
