"""Where a target's latency table lives, and whether it describes this host.

* :func:`resolve_table` turns a target (a device name or a table path) into a table path. A device with
  a ``local`` connection (``local-cpu``) is *this* machine: its tables live in this host's folder of the
  user cache (``profilers.table.host_tables_dir()``), measured here. Other devices (a phone, a reference
  machine) resolve to the shipped ``latency_tables/`` (or ``$EFFV2_TABLES``).
* :func:`verify_host` checks that a table of a ``local`` device was measured on this host: the recorded
  host fingerprint and runtime version must match, and, when asked, the probe units re-measured now must
  be within a tolerance of the recorded ones. A mismatch is a :class:`ForeignTableError` naming the
  command that profiles this host; ``allow_foreign`` (or ``EFFV2_ALLOW_FOREIGN_TABLE=1``) makes it a loud
  warning instead, for people who use another machine's table on purpose.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path

from nas.space.modules import build_unit
from nas.space.units import probe_units
from profilers import get_profiler
from profilers.batch import measure_modules
from profilers.devices import DeviceError, get_device
from profilers.host import differences, fingerprint
from profilers.probe import DEFAULT_TOLERANCE, ProbeCheck, check_probe
from profilers.stats import Protocol
from profilers.table import TableError, table_path, tables_dir

__all__ = ["resolve_table", "verify_host", "check_host", "measure_probe", "ForeignTableError", "ForeignTableWarning",
           "HostCheck", "is_local", "profile_command", "ALLOW_ENV"]

log = logging.getLogger(__name__)

ALLOW_ENV = "EFFV2_ALLOW_FOREIGN_TABLE"


class ForeignTableError(TableError):
    """A table of a ``local`` device that was measured on another host (or whose probe moved)."""


class ForeignTableWarning(UserWarning):
    """A table of another host used on purpose (``allow_foreign``)."""


def is_local(meta: dict) -> bool:
    """Whether the table with metadata ``meta`` is of a device measured where it runs (``local``)."""
    conn = ((meta.get("device_entry") or {}).get("connection") or {}).get("type")
    if conn:
        return conn == "local"
    try:
        return get_device(str(meta.get("device"))).connection_type == "local"
    except DeviceError:
        return False


def profile_command(meta: dict) -> str:
    """The command that measures this host's table for the same device, runtime and space."""
    dev, rt = meta.get("device", "local-cpu"), meta.get("runtime", "onnxruntime")
    extra = ""
    if meta.get("space") and meta.get("space") != "efficientformerv2":
        extra += f" --space {meta['space']}"
    if meta.get("img_size") and int(meta["img_size"]) != 224:
        extra += f" --img-size {meta['img_size']}"
    return f"python -m profilers.{rt} --device {dev}{extra} (then python -m nas.calibrate --target {dev})"


def resolve_table(path_or_device: str | Path, runtime: str | None = None, root=None) -> Path:
    """A table path from a path (``*.csv``) or a device name (and optional runtime, default the device's).

    A missing table is a :class:`profilers.table.TableError` naming the command that makes it.
    """
    p = Path(str(path_or_device))
    if p.suffix == ".csv":
        if not p.exists():
            raise TableError(f"latency table {p} does not exist")
        return p
    device = str(path_or_device)
    try:
        dev = get_device(device)
    except DeviceError as e:
        raise TableError(f"no latency table for {device!r}: {e}") from None
    rt = runtime or dev.runtime
    path = table_path(device, rt, root)
    if path.exists():
        return path
    if runtime is None:                                 # another runtime's table of the device, if only one
        found = sorted(Path(root or tables_dir(device)).glob(f"{device}.*.csv"))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(f.name.split(".")[1] for f in found)
            raise TableError(f"device {device!r} has tables for several runtimes ({names}); pass a runtime")
    where = "this host's table" if dev.connection_type == "local" else "a table"
    raise TableError(f"no latency table for device {device!r} at {path}. Make {where} with: "
                     f"python -m profilers.{rt} --device {device}"
                     + (" (python -m nas.search does it on first use)" if dev.connection_type == "local" else ""))


def measure_probe(device: str, runtime: str, threads: int | None = None, protocol: dict | None = None,
                  progress: bool = False) -> dict:
    """The probe units (``nas.space.units.probe_units()``) measured now on ``device``'s ``runtime``, with the
    timing ``protocol`` a table recorded (its probe was measured with it): ``{key: LatencyStats}``."""
    known = {f.name for f in fields(Protocol)} - {"attempts"}
    proto = Protocol(**{k: v for k, v in (protocol or {}).items() if k in known})
    prof = get_profiler(runtime)(device, threads=threads, protocol=proto)
    prof.check_ready()
    return measure_modules(prof, [(s.key, partial(build_unit, s)) for s in probe_units()], None, progress=progress,
                           desc="probe")


@dataclass
class HostCheck:
    """What :func:`verify_host` found: fingerprint differences, runtime version, probe comparison."""
    local: bool
    differences: list[str] = field(default_factory=list)
    probe: ProbeCheck | None = None

    @property
    def ok(self) -> bool:
        return not self.differences and (self.probe is None or self.probe.ok)


def _installed_runtime_version(meta: dict) -> str | None:
    try:
        return get_profiler(meta.get("runtime", ""))(meta.get("device", "local-cpu")).runtime_version()
    except Exception:                                   # runtime not installed, unknown: nothing to compare
        return None


def check_host(path: str | Path, meta: dict, *, probe: bool = False,
               tolerance: float = DEFAULT_TOLERANCE) -> HostCheck:
    """What differs between the host the table at ``path`` (metadata ``meta``) was measured on and this
    one; with ``probe``, the probe units are re-measured (only when nothing else differs). Tables of
    devices that are not ``local`` (a phone, a reference machine) are not checked."""
    if not is_local(meta):
        return HostCheck(local=False)
    check = HostCheck(local=True)
    host = meta.get("host") or {}
    if not host:
        check.differences.append("the table records no host fingerprint")
    check.differences += differences(host, fingerprint())
    rv, now = meta.get("runtime_version"), _installed_runtime_version(meta)
    if rv and now and rv != now:
        check.differences.append(f"{meta.get('runtime')} {rv} there, {now} here")
    ref = (meta.get("probe") or {}).get("p50_ms")
    if probe and not check.differences:
        if not ref:
            check.differences.append("the table records no probe to compare this host with")
        else:
            check.probe = check_probe(ref, lambda: measure_probe(
                meta.get("device", "local-cpu"), meta.get("runtime", "onnxruntime"), meta.get("threads"),
                meta.get("protocol")), tolerance)
            log.info("%s: %s", path, check.probe.describe())
    return check


def verify_host(path: str | Path, meta: dict, *, probe: bool = False, tolerance: float = DEFAULT_TOLERANCE,
                allow_foreign: bool | None = None) -> HostCheck:
    """:func:`check_host`, raising :class:`ForeignTableError` (or, with ``allow_foreign``, warning loudly)
    when the table does not describe this host."""
    check = check_host(path, meta, probe=probe, tolerance=tolerance)
    if check.ok:
        return check
    why = "; ".join(check.differences + ([check.probe.describe()] if check.probe and not check.probe.ok else []))
    msg = (f"latency table {path} does not describe this host ({why}). Its latencies are another machine's: "
           f"profile this host with {profile_command(meta)}")
    if allow_foreign is None:
        allow_foreign = os.environ.get(ALLOW_ENV, "") not in ("", "0")
    if allow_foreign:
        warnings.warn("USING ANOTHER MACHINE'S TABLE ON PURPOSE: " + msg, ForeignTableWarning, stacklevel=3)
        log.warning("using another machine's table on purpose: %s", msg)
        return check
    raise ForeignTableError(msg + f"; or, to use it anyway, pass allow_foreign=True / --allow-foreign-table "
                                  f"(or set {ALLOW_ENV}=1)")
