"""Timing Core ML packages on an iPhone connected to a Mac, in one command, with coremltools' remote-device API.

coremltools 8.3 and later ship ``coremltools.models.ml_program.experimental``: ``remote_device`` lists the
devices that ``xcrun devicectl list devices`` sees, and ``Device.prepare_for_model_debugging`` builds Apple's
bundled model-runner Xcode project (``coremltools/modelrunner``, in the macOS wheels only) with ``xcodebuild``,
signs it with the user's development team, installs and launches it on the phone. ``perf_utils.MLModelBenchmarker``
then compiles each package on the Mac, sends it to the app and times it there: a load is ``MLModel(contentsOf:
configuration:)`` and a prediction is ``prediction(from:)``, each timed on the phone with ``mach_absolute_time``
and returned in ns (converted to ms by the benchmarker). Every request and reply travels as files copied by
``devicectl``, so one prediction takes about a second of wall time whatever the model: choose ``iterations``
accordingly (the times themselves are the phone's).

:func:`find_iphone` picks the phone and says in one line what is missing (not a Mac, no Xcode or ``devicectl``,
no phone, several phones, a phone that is locked, untrusted or without Developer Mode). :class:`RemoteIPhone`
builds and launches the app once (the build is cached in its working folder) and times every package with it:
:meth:`RemoteIPhone.benchmark` (per-run ms and the load time), :meth:`RemoteIPhone.compute_units` (the shares of
the Neural Engine, GPU and CPU from the phone's compute plan, iOS 17.4+) and :meth:`RemoteIPhone.measure` (both
on one load). A package the phone cannot load or run raises :class:`RemoteUnitError` naming it, and the phone
stays usable for the others. The library is asynchronous; every call here runs on one event loop kept for the
phone's session, because the library's remote model binds the loop it was loaded on.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from nas.core.errors import UserError
from profilers.runtimes import ProfilerUnavailable
from profilers.timing.protocol import LatencyStats, summarize_runs
from profilers.tables.table import user_cache_dir

__all__ = ["TEAM_ENV", "TEAM_FLAG", "IPHONE_FLAG", "CORE_ML_EXTRA", "RemoteUnitError", "RemoteTiming", "RemoteIPhone",
           "find_iphone", "resolve_team_id", "iphone_facts", "parse_measurement", "parse_operation_execution",
           "parse_devicectl_devices"]

#: environment variable holding the Apple development team id that signs the model-runner app
TEAM_ENV = "EFFV2_TEAM_ID"
#: command-line flag for the team id (the same value as :data:`TEAM_ENV`)
TEAM_FLAG = "--team-id"
#: command-line flag choosing one phone by name or UDID when several are connected
IPHONE_FLAG = "--iphone"
CORE_ML_EXTRA = 'pip install "effv2-nas[coreml]"'

#: compute devices of a Core ML compute plan (coremltools.models.compute_device), by class name
_UNIT_OF_CLASS = {"MLNeuralEngineComputeDevice": "neural_engine", "MLGPUComputeDevice": "gpu",
                  "MLCPUComputeDevice": "cpu"}
UNITS = ("neural_engine", "gpu", "cpu")
#: MLComputePlan needs iOS 17.4 on the phone
COMPUTE_PLAN_IOS = (17, 4)


class RemoteUnitError(RuntimeError):
    """One package could not be loaded (compiled) or run on the phone; the phone stays usable for the others.
    ``package`` is its path, ``stage`` ``"load"``, ``"predict"`` or ``"compute plan"``, ``detail`` the library's
    message."""

    def __init__(self, package: str | Path, stage: str, detail: str):
        self.package, self.stage, self.detail = str(package), stage, detail
        super().__init__(f"{Path(package).name}: the phone could not {stage} it ({detail})")


@dataclass(frozen=True)
class RemoteTiming:
    """What one package measured on the phone: per-run prediction times (ms), the load time (ms; the first
    load also compiles for the Neural Engine) and, when asked for, the compute-unit shares (summing to 1) and
    what they are shares of (``"estimated_cost"``: the compute plan's cost of each op; ``"op_count"``)."""
    samples_ms: tuple[float, ...]
    load_ms: float | None = None
    compute_units: dict | None = None
    compute_units_basis: str | None = None

    def stats(self, rounds: int = 5) -> LatencyStats:
        """The table's statistics of the per-run times (:func:`profilers.timing.protocol.summarize_runs`)."""
        return summarize_runs(self.samples_ms, rounds)


# -- pure parsers over the library's objects ---------------------------------------------------------------
def parse_measurement(measurement, what: str = "prediction", allow_zero: bool = False) -> list[float]:
    """Per-run times (ms) of a ``perf_utils.MLModelBenchmarker.Measurement`` (``samples``: a list of floats in
    ms; ``statistics`` is derived from them and ignored here). Raises ``ValueError`` for a missing, empty or
    non-finite sample list."""
    samples = getattr(measurement, "samples", None)
    if samples is None:
        raise ValueError(f"{what} measurement has no samples: {measurement!r}")
    out = [float(s) for s in samples]
    if not out:
        raise ValueError(f"{what} measurement has no samples")
    bad = [s for s in out if not math.isfinite(s) or s < 0 or (s == 0 and not allow_zero)]
    if bad:
        raise ValueError(f"{what} measurement has invalid samples {bad[:3]} (ms)")
    return out


def _unit_of(compute_device) -> str | None:
    for cls in type(compute_device).__mro__:
        if cls.__name__ in _UNIT_OF_CLASS:
            return _UNIT_OF_CLASS[cls.__name__]
    return None


def parse_operation_execution(infos: Iterable) -> tuple[dict[str, float], str]:
    """Compute-unit shares from ``MLModelBenchmarker.benchmark_operation_execution``'s list of
    ``OperationExecutionInfo`` (``compute_device_usage``: an ``MLComputePlanDeviceUsage`` or None, whose
    ``preferred_compute_device`` is an ``MLNeuralEngineComputeDevice``, ``MLGPUComputeDevice`` or
    ``MLCPUComputeDevice``; ``measurement.samples``: each prediction's time times the op's estimated cost, empty
    when the plan gives no cost).

    Returns ``({"neural_engine", "gpu", "cpu"}: share, basis)``: the shares of the summed median op times (so of
    the compute plan's estimated cost, ``basis="estimated_cost"``), or of the op count where no op has a cost
    (``"op_count"``). Ops without a device usage (constants) are left out. Raises ``ValueError`` when no op has
    one."""
    cost = dict.fromkeys(UNITS, 0.0)
    count = dict.fromkeys(UNITS, 0)
    for info in infos:
        usage = getattr(info, "compute_device_usage", None)
        if usage is None:
            continue
        unit = _unit_of(usage.preferred_compute_device)
        if unit is None:
            raise ValueError(f"unknown compute device {type(usage.preferred_compute_device).__name__}")
        count[unit] += 1
        samples = list(getattr(info.measurement, "samples", None) or [])
        if samples:
            cost[unit] += float(np.median(samples))
    total = sum(cost.values())
    if total > 0:
        return {u: cost[u] / total for u in UNITS}, "estimated_cost"
    n = sum(count.values())
    if n == 0:
        raise ValueError("the compute plan assigns no operation to a compute device")
    return {u: count[u] / n for u in UNITS}, "op_count"


def parse_devicectl_devices(data: Mapping) -> dict[str, dict]:
    """Facts per UDID from ``xcrun devicectl list devices --json-output FILE`` (``result.devices[]`` with
    ``hardwareProperties`` {udid, productType, marketingName, hardwareModel}, ``connectionProperties``
    {pairingState, tunnelState, transportType}): what coremltools' ``Device`` leaves out (the phone's model and
    whether it trusts this Mac)."""
    out: dict[str, dict] = {}
    devices = ((data or {}).get("result") or {}).get("devices") or []
    for d in devices:
        if not isinstance(d, Mapping):
            continue
        hw = d.get("hardwareProperties") or {}
        conn = d.get("connectionProperties") or {}
        udid = hw.get("udid")
        if not udid:
            continue
        out[udid] = {"product_type": hw.get("productType"), "marketing_name": hw.get("marketingName"),
                     "hardware_model": hw.get("hardwareModel"), "pairing_state": conn.get("pairingState"),
                     "tunnel_state": conn.get("tunnelState"), "transport": conn.get("transportType")}
    return out


def iphone_facts(device, details: Mapping | None = None, coremltools_version: str | None = None) -> dict:
    """The facts a table's metadata records about the phone: name, UDID, OS version and build, model (the
    product type such as ``iPhone13,2`` and its marketing name, from devicectl), developer mode, coremltools'
    version. ``device`` is a ``remote_device.Device`` (a frozen dataclass: name, type, identifier, udid,
    os_version, os_build_number, developer_mode_state, state, session)."""
    d = dict(details or {})
    return {"name": device.name, "udid": device.udid, "identifier": device.identifier,
            "model": d.get("product_type"), "marketing_name": d.get("marketing_name"),
            "hardware_model": d.get("hardware_model"), "os": "iOS", "os_version": device.os_version,
            "os_build": device.os_build_number, "developer_mode": device.developer_mode_state,
            "coremltools": coremltools_version,
            "transport": "coremltools remote device (model-runner app over devicectl)"}


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(text or ""))[:3])


def _one_line(text) -> str:
    return " ".join(str(text).split())[:600]


# -- the library, the Mac and the phone -------------------------------------------------------------------
def _is_macos() -> bool:
    return sys.platform == "darwin"


def _library():
    """``(coremltools, remote_device, perf_utils)``, or :class:`ProfilerUnavailable` naming what to install."""
    try:
        import coremltools
    except ImportError:
        raise ProfilerUnavailable(f"coremltools is not installed; {CORE_ML_EXTRA}") from None
    try:
        from coremltools.models.ml_program.experimental import perf_utils, remote_device
    except ImportError as e:
        raise ProfilerUnavailable(
            f"coremltools {getattr(coremltools, '__version__', '?')} has no remote-device API "
            f"(coremltools.models.ml_program.experimental, from 8.3 on: {e}); {CORE_ML_EXTRA}") from None
    return coremltools, remote_device, perf_utils


def _check_mac() -> None:
    if not _is_macos():
        raise ProfilerUnavailable(
            f"timing an iPhone from here needs a Mac with Xcode (this is {sys.platform}); run it on the Mac the "
            f"phone is connected to, or write a bundle here (python -m profilers.coreml --device iphone12) and "
            f"import the phone's timings")


def _check_devicectl() -> None:
    """Xcode's ``devicectl``, and on PATH: coremltools looks it up there (``shutil.which("devicectl")``) although
    it runs it as ``xcrun devicectl``."""
    if shutil.which("devicectl"):
        return
    if not shutil.which("xcrun"):
        raise ProfilerUnavailable("Xcode is not installed (no `xcrun`): install Xcode 15 or later, open it once, "
                                  "then `sudo xcode-select -s /Applications/Xcode.app`")
    p = subprocess.run(["xcrun", "--find", "devicectl"], capture_output=True, text=True, timeout=60)
    found = p.stdout.strip()
    if p.returncode != 0 or not found:
        raise ProfilerUnavailable(
            "Xcode's `devicectl` is missing (`xcrun --find devicectl` found none): install Xcode 15 or later and "
            "select it with `sudo xcode-select -s /Applications/Xcode.app` (command-line tools alone lack it)")
    os.environ["PATH"] = str(Path(found).parent) + os.pathsep + os.environ.get("PATH", "")


def _devicectl_details() -> dict[str, dict]:
    """:func:`parse_devicectl_devices` of a fresh ``xcrun devicectl list devices``; empty when that fails (the
    facts are extras)."""
    with tempfile.TemporaryDirectory(prefix="effv2-devicectl-") as d:
        out = Path(d) / "devices.json"
        try:
            subprocess.run(["xcrun", "devicectl", "list", "devices", "--json-output", str(out)],
                           capture_output=True, text=True, timeout=120)
            return parse_devicectl_devices(json.loads(out.read_text()))
        except (OSError, ValueError, subprocess.SubprocessError):
            return {}


def _describe(device, details: Mapping | None = None) -> str:
    d = details or {}
    model = d.get("marketing_name") or d.get("product_type")
    return f"'{device.name}' ({device.udid}{', ' + model if model else ''}, iOS {device.os_version})"


def _not_ready(device, state_connected, details: Mapping | None) -> str | None:
    """Why a listed phone cannot be used, or None."""
    d = details or {}
    why = []
    if d.get("pairing_state") and d["pairing_state"] != "paired":
        why.append(f"not paired with this Mac (pairing state {d['pairing_state']!r}): unlock it and tap Trust")
    if device.state != state_connected:
        state = getattr(device.state, "value", device.state)
        why.append(f"devicectl state {state!r}: connect it with a cable, unlock it and tap Trust This Computer")
    dev_mode = str(device.developer_mode_state or "")
    if dev_mode and dev_mode.lower() != "enabled":
        why.append(f"Developer Mode {dev_mode!r}: turn it on in Settings > Privacy & Security > Developer Mode")
    return "; ".join(why) or None


def find_iphone(name_or_udid: str | None = None, details: Mapping[str, dict] | None = None):
    """The connected iPhone to time on: the ``remote_device.Device`` that ``Device.get_connected_devices(
    DeviceType.IPHONE)`` would list (state CONNECTED, type IPHONE), chosen by name (case-insensitive), UDID or
    devicectl identifier when given. Raises :class:`ProfilerUnavailable` in one line: not macOS, coremltools too
    old, Xcode or ``devicectl`` missing, no phone (naming what devicectl sees), a phone that is locked,
    untrusted or without Developer Mode, several phones and none chosen (listing them). ``details`` (from
    :func:`parse_devicectl_devices`; read from devicectl when None) adds the phone's model and pairing state."""
    _check_mac()
    _, rd, _ = _library()
    _check_devicectl()
    try:
        devices = list(rd.Device.get_devices())
    except Exception as e:                  # noqa: BLE001  (the library raises its own _DeviceCtlError)
        raise ProfilerUnavailable(f"`xcrun devicectl list devices` failed: {_one_line(e)}") from None
    details = _devicectl_details() if details is None else details
    phones = [d for d in devices if d.type == rd.DeviceType.IPHONE]
    if name_or_udid:
        want = str(name_or_udid).strip()
        chosen = [d for d in phones if want in (d.udid, d.identifier) or d.name.lower() == want.lower()]
        if not chosen:
            seen = ", ".join(_describe(d, details.get(d.udid)) for d in phones) or "none"
            raise ProfilerUnavailable(f"no iPhone named or with UDID {want!r}; iPhones devicectl sees: {seen}")
        phones = chosen
    if not phones:
        others = ", ".join(f"'{d.name}' ({getattr(d.type, 'value', d.type)})" for d in devices) or "no device at all"
        raise ProfilerUnavailable(f"no iPhone is connected (devicectl sees {others}): connect it with a cable, "
                                  f"unlock it and tap Trust This Computer")
    ready = [d for d in phones if _not_ready(d, rd.DeviceState.CONNECTED, details.get(d.udid)) is None]
    if not ready:
        p = phones[0]
        raise ProfilerUnavailable(f"iPhone {_describe(p, details.get(p.udid))} is not ready: "
                                  f"{_not_ready(p, rd.DeviceState.CONNECTED, details.get(p.udid))}")
    if len(ready) > 1:
        listed = ", ".join(_describe(d, details.get(d.udid)) for d in ready)
        raise ProfilerUnavailable(f"several iPhones are connected ({listed}); choose one with {IPHONE_FLAG} "
                                  f"NAME_OR_UDID")
    return ready[0]


def resolve_team_id(team_id: str | None = None) -> str:
    """The Apple development team id that signs the model-runner app: ``team_id``, else ``$EFFV2_TEAM_ID``.
    It goes into an ``xcodebuild`` command line that the library runs through a shell, so only a team id's
    shape (10 letters or digits) is accepted."""
    team = (team_id or os.environ.get(TEAM_ENV) or "").strip()
    if not team:
        raise ProfilerUnavailable(
            f"building Apple's model-runner app for the iPhone needs your Apple development team id: pass "
            f"{TEAM_FLAG} TEAMID or set {TEAM_ENV}=TEAMID (Xcode > Settings > Accounts shows it; a free personal "
            f"team works)")
    if not re.fullmatch(r"[A-Za-z0-9]{10}", team):
        raise ProfilerUnavailable(f"{team!r} is not an Apple development team id (10 letters or digits, e.g. "
                                  f"ABCDE12345); pass {TEAM_FLAG} TEAMID or set {TEAM_ENV}")
    return team.upper()


class RemoteIPhone:
    """One iPhone timed through coremltools' model-runner app: :meth:`prepare` builds, signs, installs and
    launches the app once (lazily, at the first measurement), and every package is then sent to it.

    ``device``: a name or UDID (:func:`find_iphone`), a ``remote_device.Device``, or None for the only connected
    iPhone. ``team_id``: see :func:`resolve_team_id`. ``compute_units``: a ``coremltools.ComputeUnit`` name
    (``ALL``, ``CPU_AND_NE``, ``CPU_AND_GPU``, ``CPU_ONLY``). ``working_dir``: where the app is built and the
    requests are exchanged (default: the user cache, so the build is reused by later runs).
    """

    def __init__(self, device=None, team_id: str | None = None, *, compute_units: str = "ALL",
                 working_dir: str | Path | None = None, clean_build: bool = False,
                 details: Mapping[str, dict] | None = None):
        _check_mac()
        self._ct, self._rd, self._pu = _library()
        self.team_id = resolve_team_id(team_id)
        try:
            self._compute_units = self._ct.ComputeUnit[str(compute_units).upper()]
        except KeyError:
            names = [u.name for u in self._ct.ComputeUnit]
            raise UserError(f"unknown Core ML compute units {compute_units!r}; use one of {names}") from None
        self._details = details
        if device is None or isinstance(device, str):
            device = find_iphone(device, details)
        self.device = device
        self.working_dir = Path(working_dir) if working_dir else user_cache_dir() / "coreml-modelrunner"
        self.clean_build = clean_build
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prepared = False
        self._benchmarkers: dict[str, object] = {}

    # -- plumbing ---------------------------------------------------------------------------------
    def _run(self, coro):
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def _session_alive(self) -> bool:
        session = getattr(self.device, "session", None)
        return session is not None and bool(session.is_alive())

    def _runner_project(self) -> Path:
        return Path(self._ct.__file__).resolve().parent / "modelrunner" / "ModelRunner.xcworkspace"

    def prepare(self) -> None:
        """Build, sign, install and launch the model-runner app (once; the build is cached in
        :attr:`working_dir`). Raises :class:`ProfilerUnavailable` in one line when it cannot."""
        if self._prepared:
            return
        if not shutil.which("xcodebuild"):
            raise ProfilerUnavailable("`xcodebuild` is not on PATH: install Xcode 15 or later and select it with "
                                      "`sudo xcode-select -s /Applications/Xcode.app`")
        project = self._runner_project()
        if not project.is_dir():
            raise ProfilerUnavailable(
                f"coremltools {self._ct.__version__} has no model-runner Xcode project at {project} (only its "
                f"macOS wheels ship one); reinstall it on this Mac: {CORE_ML_EXTRA}")
        self.working_dir.mkdir(parents=True, exist_ok=True)
        credentials = self._rd.AppSigningCredentials(development_team=self.team_id)
        try:
            prepared = self._run(self.device.prepare_for_model_debugging(
                credentials=credentials, working_directory=self.working_dir, clean=self.clean_build))
        except Exception as e:              # noqa: BLE001  (xcodebuild, signing and devicectl failures)
            raise ProfilerUnavailable(
                f"could not build, sign or launch the model-runner app on {_describe(self.device)} with team "
                f"{self.team_id}: {_one_line(e)}. The library drops xcodebuild's log: open {project} in Xcode, "
                f"sign in with that team's Apple ID and run it on the phone once to see why; then trust the "
                f"developer in Settings > General > VPN & Device Management") from None
        self.device = prepared               # a new Device carrying the app session (the old one has none)
        self._prepared = True

    def _benchmarker(self, package: Path):
        key = str(package)
        if key not in self._benchmarkers:
            model = self._ct.models.MLModel(str(package), compute_units=self._compute_units, skip_model_load=True)
            self._benchmarkers[key] = self._pu.MLModelBenchmarker(model, device=self.device)
        return self._benchmarkers[key]

    def _fail(self, package: Path, stage: str, e: Exception):
        if self._prepared and not self._session_alive():
            raise ProfilerUnavailable(f"the model-runner app on {_describe(self.device)} stopped (at {stage} of "
                                      f"{package.name}: {_one_line(e)}); unlock the phone and rerun") from None
        raise RemoteUnitError(package, stage, _one_line(e)) from None

    def _check_package(self, package) -> Path:
        package = Path(package)
        if not package.exists():
            raise UserError(f"Core ML package {package} does not exist")
        return package

    def _load(self, package: Path) -> float | None:
        bm = self._benchmarker(package)
        if getattr(bm, "_loaded_model", None) is not None:
            return None
        try:
            m = self._run(bm.benchmark_load(iterations=1))     # keeps the loaded model for the predictions
        except Exception as e:              # noqa: BLE001
            self._fail(package, "load", e)
        return parse_measurement(m, "load", allow_zero=True)[0]

    # -- measuring --------------------------------------------------------------------------------
    def benchmark(self, package: str | Path, iterations: int = 100, warmup: int = 10) -> RemoteTiming:
        """Load ``package`` (an ``.mlpackage``) on the phone, run ``warmup`` predictions (discarded), then
        ``iterations`` timed ones (random inputs of the model's input types, drawn once); per-run ms and the
        load time. :class:`RemoteUnitError` when the phone cannot load or run it."""
        package = self._check_package(package)
        if iterations < 1:
            raise UserError(f"iterations must be at least 1, not {iterations}")
        self.prepare()
        load_ms = self._load(package)
        bm = self._benchmarker(package)
        try:
            if warmup > 0:
                self._run(bm.benchmark_predict(iterations=int(warmup)))
            m = self._run(bm.benchmark_predict(iterations=int(iterations)))
        except Exception as e:              # noqa: BLE001
            self._fail(package, "predict", e)
        return RemoteTiming(tuple(parse_measurement(m)), load_ms)

    def compute_units(self, package: str | Path) -> dict[str, float]:
        """``{"neural_engine", "gpu", "cpu"}``: the shares (summing to 1) of the package's estimated cost that
        the phone's compute plan puts on each unit (:func:`parse_operation_execution`; needs iOS 17.4+)."""
        return self._compute_units_of(self._check_package(package))[0]

    def _compute_units_of(self, package: Path) -> tuple[dict[str, float], str]:
        if _version_tuple(self.device.os_version) < COMPUTE_PLAN_IOS:
            raise ProfilerUnavailable(f"compute-unit shares need a compute plan, iOS 17.4 or later; "
                                      f"{_describe(self.device)} runs iOS {self.device.os_version}")
        self.prepare()
        self._load(package)
        bm = self._benchmarker(package)
        try:
            infos = self._run(bm.benchmark_operation_execution(iterations=1))
        except Exception as e:              # noqa: BLE001
            self._fail(package, "compute plan", e)
        try:
            return parse_operation_execution(infos)
        except ValueError as e:
            raise RemoteUnitError(package, "compute plan", str(e)) from None

    def measure(self, package: str | Path, iterations: int = 100, warmup: int = 10,
                compute_units: bool = True) -> RemoteTiming:
        """:meth:`benchmark` and (when ``compute_units`` and the phone runs iOS 17.4+) :meth:`compute_units` on
        one load, then unload the package from the app."""
        package = self._check_package(package)
        try:
            t = self.benchmark(package, iterations, warmup)
            if compute_units and _version_tuple(self.device.os_version) >= COMPUTE_PLAN_IOS:
                shares, basis = self._compute_units_of(package)
                t = RemoteTiming(t.samples_ms, t.load_ms, shares, basis)
            return t
        finally:
            self.unload(package)

    def measure_all(self, packages: Mapping[str, str | Path], iterations: int = 100, warmup: int = 10,
                    compute_units: bool = True) -> tuple[dict[str, RemoteTiming], dict[str, RemoteUnitError]]:
        """:meth:`measure` every ``{key: package}``; a package the phone cannot load or run goes to the failures
        and the others are still measured. ``(timings, failures)``."""
        done, failed = {}, {}
        for key, package in packages.items():
            try:
                done[key] = self.measure(package, iterations, warmup, compute_units)
            except RemoteUnitError as e:
                failed[key] = e
        return done, failed

    def unload(self, package: str | Path) -> None:
        """Unload ``package`` from the app (the library's own clean-up of a dropped model never runs) and forget
        it."""
        bm = self._benchmarkers.pop(str(Path(package)), None)
        loaded = getattr(bm, "_loaded_model", None) if bm is not None else None
        if loaded is not None and self._session_alive():
            try:
                self._run(loaded.unload())
            except Exception:               # noqa: BLE001  (best effort: the app frees it when it stops)
                pass

    def meta(self) -> dict:
        """The phone's facts for the table metadata (:func:`iphone_facts`), compute units and team."""
        details = self._details if self._details is not None else _devicectl_details()
        facts = iphone_facts(self.device, details.get(self.device.udid), self._ct.__version__)
        facts.update({"compute_units": self._compute_units.name, "team_id": self.team_id})
        return facts

    def close(self) -> None:
        """Unload every package, stop the app's console session and close the event loop."""
        for key in list(self._benchmarkers):
            self.unload(key)
        session = getattr(self.device, "session", None)
        if session is not None:
            try:
                session.stop()
            except Exception:               # noqa: BLE001
                pass
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def __enter__(self) -> "RemoteIPhone":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
