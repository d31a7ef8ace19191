"""Timing units on Snapdragon phones hosted by Qualcomm AI Hub, through its Python client ``qai-hub`` (0.56).

Each unit (an ``.onnx``, ``.pt2`` or other model file that AI Hub compiles) becomes two jobs on the chosen
hosted device: a compile job (``Client.submit_compile_job``, with ``--target_runtime``) and, once it has
succeeded, an inference job with profiling on (``Client.submit_inference_job(..., profile=True)``, random
inputs; ``submit_profile_job`` is deprecated in 0.56 and only forwards to it). ``InferenceJob.download_profile()``
returns ``{"execution_summary": {...}, "execution_detail": [...]}``: the summary's ``all_inference_times`` are
the per-run times in microseconds (profile format 1.2 and later; older profiles have only
``estimated_inference_time``) and every layer of ``execution_detail`` names the ``compute_unit`` (NPU, GPU, CPU)
it ran on, with its ``execution_time`` where the runtime reports one. :func:`parse_profile` turns that into
per-run ms and compute-unit shares.

:func:`submit_all` runs many units at once, at most ``max_jobs`` in flight, polling their status under a
progress bar. Every job id is written to a ledger beside the table (``{device}.{runtime}.aihub-jobs.json``,
atomically) as soon as the job is submitted, so a killed run never pays for a job twice: a rerun collects the
jobs that finished meanwhile and waits for the others. A failed job is reported with its id and AI Hub's
message, and the other units go on. ``dry_run`` says how many jobs would be submitted, without a network call.
"""
from __future__ import annotations

import difflib
import json
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from tqdm import tqdm

from nas.core.errors import UserError
from nas.core.files import atomic_write_text
from profilers.runtimes import ProfilerUnavailable
from profilers.timing.protocol import LatencyStats, summarize_runs

__all__ = ["AIHUB_EXTRA", "TOKEN_COMMAND", "AIHubError", "AIHubDevice", "ProfileResult", "UnitOutcome", "AIHubRun",
           "JobLedger", "check_ready", "resolve_device", "submit_all", "parse_profile", "parse_device", "ledger_path",
           "table_meta", "client_version"]

AIHUB_EXTRA = 'pip install "effv2-nas[aihub]"'
TOKEN_COMMAND = "qai-hub configure --api_token TOKEN"
#: what ``--target_runtime`` of a compile job accepts (AI Hub's compile options)
TARGET_RUNTIMES = ("tflite", "qnn_dlc", "qnn_context_binary", "onnx", "precompiled_qnn_onnx")
#: compute units as ``download_profile`` names them (``api_pb.ComputeUnit`` without ``COMPUTE_UNIT_``)
UNITS = ("NPU", "GPU", "CPU")
LEDGER_SUFFIX = ".aihub-jobs.json"
LEDGER_VERSION = 1


class AIHubError(UserError, RuntimeError):
    """Bad input for an AI Hub run (an unknown device, a ledger written for another run); the message says
    what to do."""


# -- results -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileResult:
    """One unit's profile: per-run times (ms), whether they are per-run (False: the profile format has no
    per-run times and the one sample is AI Hub's ``estimated_inference_time``), the compute-unit shares
    (``{"NPU", "GPU", "CPU"}`` plus ``"UNSPECIFIED"`` when a layer has no unit; summing to 1) and their basis
    (``"execution_time"`` or ``"layer_count"``), the warm load time (ms) and a note on anything approximate."""
    samples_ms: tuple[float, ...]
    per_run: bool
    compute_units: dict
    compute_units_basis: str
    load_ms: float | None = None
    note: str | None = None

    def stats(self, rounds: int = 5) -> LatencyStats:
        """The table's statistics: :func:`profilers.timing.protocol.summarize_runs` of per-run times; for a single
        estimate, that value with p10/p90/std/cv unknown (NaN), as for tools without per-run times."""
        if self.per_run:
            return summarize_runs(self.samples_ms, rounds)
        x = float(self.samples_ms[0])
        nan = float("nan")
        return LatencyStats(x, nan, nan, x, nan, nan, 1)


@dataclass(frozen=True)
class UnitOutcome:
    """What became of one unit: its job ids and either a :class:`ProfileResult` or an ``error`` (AI Hub's
    message) with the stage that failed (``"compile"``, ``"profile"`` or ``"submit"``)."""
    key: str
    compile_job_id: str | None = None
    profile_job_id: str | None = None
    result: ProfileResult | None = None
    error: str | None = None
    failed_stage: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def failed_job_id(self) -> str | None:
        return self.compile_job_id if self.failed_stage == "compile" else \
            self.profile_job_id if self.failed_stage == "profile" else None


@dataclass
class AIHubRun:
    """What :func:`submit_all` did: per unit an outcome (empty in a dry run), and the plan (how many compile
    and profile jobs were or would be submitted, how many earlier jobs were collected, failures kept)."""
    outcomes: dict[str, UnitOutcome] = field(default_factory=dict)
    plan: dict = field(default_factory=dict)
    dry_run: bool = False

    @property
    def failures(self) -> dict[str, UnitOutcome]:
        return {k: o for k, o in self.outcomes.items() if not o.ok}

    @property
    def results(self) -> dict[str, ProfileResult]:
        return {k: o.result for k, o in self.outcomes.items() if o.ok}


@dataclass(frozen=True)
class AIHubDevice:
    """A hosted device: the ``qai_hub.Device`` to submit to (``name``, ``os``: ``""`` lets AI Hub pick the latest
    OS) and the facts of the matching entry of ``get_devices()`` (``attributes`` and its ``os_version``)."""
    name: str
    os: str
    attributes: tuple[str, ...]
    hub_device: object = field(compare=False, repr=False, default=None)
    os_version: str = ""

    @property
    def chipset(self) -> str | None:
        return next((a.split(":", 1)[1] for a in self.attributes if a.startswith("chipset:")), None)


# -- pure parsers -----------------------------------------------------------------------------------------
def _positive_numbers(values, what: str) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{what} holds {v!r}, not a positive time in microseconds")
        out.append(float(v))
    return out


def parse_profile(profile: Mapping) -> ProfileResult:
    """A :class:`ProfileResult` from ``InferenceJob.download_profile()``'s dict: ``execution_summary`` with
    ``estimated_inference_time`` (int, µs), ``warm_load_time`` (µs) and, from profile format 1.2,
    ``all_inference_times`` (list of int, µs, one per profiled run); ``execution_detail``: one dict per layer with
    ``name``, ``type``, ``compute_unit`` (``"NPU"``, ``"GPU"``, ``"CPU"``, ``"UNSPECIFIED"``) and, where reported,
    ``execution_time`` and ``execution_cycles``. Shares are weighted by ``execution_time`` when every layer has
    one (a ratio, so its unit does not matter), else by layer count. Raises ``ValueError`` for another shape."""
    if not isinstance(profile, Mapping) or not isinstance(profile.get("execution_summary"), Mapping):
        raise ValueError("an AI Hub profile has an 'execution_summary' object; got "
                         f"{sorted(profile) if isinstance(profile, Mapping) else type(profile).__name__}")
    summary = profile["execution_summary"]
    runs = summary.get("all_inference_times")
    note = None
    if runs:
        samples = [us / 1000.0 for us in _positive_numbers(runs, "all_inference_times")]
        per_run = True
    else:
        est = summary.get("estimated_inference_time")
        if est is None:
            raise ValueError("the profile's execution_summary has neither all_inference_times nor "
                             "estimated_inference_time")
        samples = [us / 1000.0 for us in _positive_numbers([est], "estimated_inference_time")]
        per_run = False
        note = ("profile format without per-run times (before 1.2): one sample, AI Hub's "
                "estimated_inference_time; p10/p90/std unknown")
    layers = profile.get("execution_detail") or []
    if not isinstance(layers, list) or not all(isinstance(layer, Mapping) for layer in layers):
        raise ValueError("the profile's execution_detail is a list of per-layer objects")
    shares, basis = _unit_shares(layers)
    load = summary.get("warm_load_time")
    load_ms = float(load) / 1000.0 if isinstance(load, (int, float)) and not isinstance(load, bool) and load > 0 \
        else None
    return ProfileResult(tuple(samples), per_run, shares, basis, load_ms, note)


def _unit_shares(layers: list) -> tuple[dict, str]:
    if not layers:
        return {}, "none"
    timed = all(isinstance(layer.get("execution_time"), (int, float)) and not isinstance(layer.get("execution_time"),
                                                                                         bool)
                for layer in layers)
    weights: dict[str, float] = dict.fromkeys(UNITS, 0.0)
    for layer in layers:
        unit = str(layer.get("compute_unit") or "UNSPECIFIED").upper()
        weights[unit] = weights.get(unit, 0.0) + (float(layer["execution_time"]) if timed else 1.0)
    total = sum(weights.values())
    if timed and total <= 0:                     # every layer reported 0: fall back to counting them
        return _unit_shares([{k: v for k, v in layer.items() if k != "execution_time"} for layer in layers])
    return {u: w / total for u, w in weights.items() if u in UNITS or w > 0}, \
        ("execution_time" if timed else "layer_count")


def parse_device(device) -> dict:
    """Facts of a ``qai_hub.Device`` (a dataclass: ``name``, ``os``, ``attributes`` such as
    ``"chipset:qualcomm-snapdragon-8gen2"``, ``"os:android"``, ``"framework:tflite"``, ``"format:phone"``,
    ``"vendor:samsung"``) for the table metadata."""
    attrs = [device.attributes] if isinstance(device.attributes, str) else list(device.attributes or [])

    def values(prefix):
        return [a.split(":", 1)[1] for a in attrs if a.startswith(prefix + ":")]

    return {"aihub_device": device.name, "os_version": device.os or None,
            "os": (values("os") or [None])[0], "chipset": (values("chipset") or [None])[0],
            "vendor": (values("vendor") or [None])[0], "form": (values("format") or [None])[0],
            "frameworks": values("framework"), "attributes": attrs}


def _one_line(text) -> str:
    """AI Hub's messages draw boxes (``┌─┐ | … | └─┘``) around their advice: keep the words, on one line."""
    s = re.sub(r"[┌┐└┘─│]", " ", str(text))
    s = re.sub(r"(^|\n)\s*\|\s?|\s?\|\s*(\n|$)", " ", s)
    return " ".join(s.split())[:800]


def _version_key(v: str):
    return tuple(int(p) for p in re.findall(r"\d+", v or ""))


# -- the client ---------------------------------------------------------------------------------------------
def _qai_hub():
    try:
        import qai_hub
    except ImportError:
        raise ProfilerUnavailable(f"Qualcomm AI Hub needs its client, qai-hub: {AIHUB_EXTRA}, then "
                                  f"`{TOKEN_COMMAND}`") from None
    return qai_hub


def _token_error(e: Exception) -> ProfilerUnavailable:
    return ProfilerUnavailable(f"Qualcomm AI Hub refused the API token or found none ({_one_line(e)}); run "
                               f"`{TOKEN_COMMAND}` with the token from your AI Hub account page")


def _is_token_error(hub, e: Exception) -> bool:
    msg = str(e)
    return isinstance(e, hub.UserError) and ("configuration file" in msg or "authenticate" in msg
                                              or "API token" in msg)


def check_ready(client=None):
    """The ``qai_hub.Client`` to use (``client``, else a new one), quiet (``set_verbose(False)``: its prints
    would break the progress bar). Reads its configuration (``~/.qai_hub/client.ini``, or ``$QAIHUB_CLIENT_INI``)
    without a network call. Raises :class:`ProfilerUnavailable` naming the extra to install when qai-hub is
    missing, and ``qai-hub configure --api_token TOKEN`` when no token is configured (qai-hub raises its
    ``UserError`` "Failed to load client configuration file." on the first use of the client)."""
    hub = _qai_hub()
    client = client if client is not None else hub.Client()
    try:
        client.config
        client.set_verbose(False)
    except hub.UserError as e:
        raise _token_error(e) from None
    return client


def resolve_device(name: str, os: str = "", client=None) -> AIHubDevice:
    """The hosted device called ``name`` (exact, else case-insensitive) among ``client.get_devices()``, with
    the OS ``os`` (``""``: the latest AI Hub has). An unknown name is an :class:`AIHubError` listing the closest
    names (difflib)."""
    hub = _qai_hub()
    client = check_ready(client)
    try:
        devices = list(client.get_devices())
    except hub.UserError as e:
        if _is_token_error(hub, e):
            raise _token_error(e) from None
        raise
    named = [d for d in devices if d.name == name] or [d for d in devices if d.name.lower() == str(name).lower()]
    if not named:
        names = sorted({d.name for d in devices})
        lower = {n.lower(): n for n in names}
        close = [lower[n] for n in difflib.get_close_matches(str(name).lower(), list(lower), n=5, cutoff=0.5)]
        if not close:
            close = [n for n in names if any(w in n.lower() for w in str(name).lower().split() if len(w) > 2)][:5]
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise AIHubError(f"Qualcomm AI Hub has no device {name!r}{hint} (`qai-hub list-devices` lists all "
                         f"{len(names)})")
    if os:
        chosen = [d for d in named if d.os == os]
        if not chosen:
            raise AIHubError(f"Qualcomm AI Hub has {named[0].name!r} with OS {sorted({d.os for d in named})}, "
                             f"not {os!r}")
    else:
        chosen = sorted(named, key=lambda d: _version_key(d.os))[-1:]
    d = chosen[0]
    attrs = [d.attributes] if isinstance(d.attributes, str) else list(d.attributes or [])
    return AIHubDevice(d.name, os, tuple(attrs), hub.Device(name=d.name, os=os), os_version=d.os)


# -- the ledger ---------------------------------------------------------------------------------------------
def ledger_path(table: str | Path) -> Path:
    """The job ledger beside a table: ``{device}.{runtime}.csv`` -> ``{device}.{runtime}.aihub-jobs.json``."""
    table = Path(table)
    return table.with_name(table.stem + LEDGER_SUFFIX) if table.suffix == ".csv" else \
        table.with_name(table.name + LEDGER_SUFFIX)


class JobLedger:
    """``{unit key: {compile_job_id, profile_job_id, status, message}}`` in a JSON file, rewritten atomically at
    every change (each submission first of all). ``header`` (device, OS, target runtime, options) must match the
    file's: jobs run elsewhere or otherwise are not this table's."""

    def __init__(self, path: str | Path, header: Mapping):
        self.path = Path(path)
        self.header = dict(header)
        self._lock = threading.Lock()
        self.units: dict[str, dict] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError) as e:
                raise AIHubError(f"job ledger {self.path} is unreadable ({e}); move it away to start over "
                                 f"(its jobs would be submitted again)") from None
            old = data.get("header", {})
            diff = {k: (old.get(k), v) for k, v in self.header.items() if old.get(k) != v}
            if diff:
                raise AIHubError(f"job ledger {self.path} holds jobs for other settings "
                                 f"({', '.join(f'{k}: {a!r} there, {b!r} here' for k, (a, b) in diff.items())}); "
                                 f"write another table, or move the ledger away")
            self.units = {str(k): dict(v) for k, v in (data.get("units") or {}).items()}

    def get(self, key: str) -> dict:
        with self._lock:
            return dict(self.units.get(key, {}))

    def record(self, key: str, **fields) -> None:
        with self._lock:
            self.units.setdefault(key, {}).update(fields)
            self._write()

    def forget(self, key: str) -> None:
        with self._lock:
            if self.units.pop(key, None) is not None:
                self._write()

    def _write(self) -> None:
        data = {"version": LEDGER_VERSION, "header": self.header, "units": self.units}
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")


# -- submitting ---------------------------------------------------------------------------------------------
def _plan(keys, ledger: JobLedger, retry_failed: bool) -> dict:
    plan = {"units": len(keys), "compile_jobs": 0, "profile_jobs": 0, "collect": 0, "failed_kept": 0}
    for k in keys:
        e = ledger.get(k)
        if e.get("status") == "failed" and not retry_failed:
            plan["failed_kept"] += 1
        elif e.get("status") == "failed" or not e.get("compile_job_id"):
            plan["compile_jobs"] += 1
            plan["profile_jobs"] += 1
        elif not e.get("profile_job_id"):
            plan["profile_jobs"] += 1
            plan["collect"] += 1
        else:
            plan["collect"] += 1
    return plan


class _Stopped(Exception):
    """The run is stopping (interrupted, or another unit hit an error that ends it): submit nothing more."""


class _Runner:
    def __init__(self, client, device: AIHubDevice, ledger: JobLedger, compile_options: str, profile_options: str,
                 poll_s: float, timeout_s: float | None, name_prefix: str, sleep: Callable[[float], None] | None):
        self.client, self.device, self.ledger = client, device, ledger
        self.compile_options, self.profile_options = compile_options, profile_options
        self.poll_s, self.timeout_s, self.name_prefix = poll_s, timeout_s, name_prefix
        self.stop = threading.Event()
        self.sleep = sleep or self.stop.wait            # wakes at once when the run stops
        self.hub = _qai_hub()

    def check(self) -> None:
        if self.stop.is_set():
            raise _Stopped()

    def wait(self, job):
        t0 = time.monotonic()
        while True:
            self.check()
            status = job.get_status()
            if status.finished:
                return status
            if self.timeout_s is not None and time.monotonic() - t0 > self.timeout_s:
                raise TimeoutError(f"job {job.job_id} still {status.code} after {self.timeout_s:.0f} s; rerun to "
                                   f"collect it (it stays in the ledger)")
            self.sleep(self.poll_s)

    def fail(self, key, stage, message) -> UnitOutcome:
        e = self.ledger.get(key)
        return UnitOutcome(key, e.get("compile_job_id"), e.get("profile_job_id"), None, _one_line(message), stage)

    def job_failed(self, key, stage, status) -> UnitOutcome:
        """A job that ended without success: kept as failed in the ledger, reported with AI Hub's message."""
        message = status.message or status.code
        self.ledger.record(key, status="failed", failed_stage=stage, message=_one_line(message))
        return self.fail(key, stage, message)

    def run(self, key: str, model: Path, input_specs) -> UnitOutcome:
        e = self.ledger.get(key)
        stage = "submit"
        try:
            if e.get("status") == "failed":
                return UnitOutcome(key, e.get("compile_job_id"), e.get("profile_job_id"), None,
                                   e.get("message") or "failed in an earlier run", e.get("failed_stage"))
            if e.get("profile_job_id"):
                pjob = self.client.get_job(e["profile_job_id"])
            else:
                if e.get("compile_job_id"):
                    cjob = self.client.get_job(e["compile_job_id"])
                else:
                    self.check()
                    cjob = self.client.submit_compile_job(model=str(model), device=self.device.hub_device,
                                                          name=f"{self.name_prefix}{key}", input_specs=input_specs,
                                                          options=self.compile_options)
                    self.ledger.record(key, compile_job_id=cjob.job_id, status="compiling")
                stage = "compile"
                st = self.wait(cjob)
                if not st.success:
                    return self.job_failed(key, "compile", st)
                target = cjob.get_target_model()
                stage = "submit"
                self.check()
                pjob = self.client.submit_inference_job(model=target, device=self.device.hub_device,
                                                        name=f"{self.name_prefix}{key}", options=self.profile_options,
                                                        profile=True)
                self.ledger.record(key, profile_job_id=pjob.job_id, status="profiling")
            stage = "profile"
            st = self.wait(pjob)
            if not st.success:
                return self.job_failed(key, "profile", st)
            result = parse_profile(pjob.download_profile())
            self.ledger.record(key, status="done")
            e = self.ledger.get(key)
            return UnitOutcome(key, e.get("compile_job_id"), e.get("profile_job_id"), result)
        except self.hub.UserError as err:
            if _is_token_error(self.hub, err):
                raise _token_error(err) from None
            return self.fail(key, stage, err)
        except (TimeoutError, ValueError, self.hub.Error) as err:
            return self.fail(key, stage, err)


def submit_all(units: Mapping[str, str | Path], device: AIHubDevice | str, ledger: str | Path, *,
               max_jobs: int = 4, target_runtime: str = "tflite", compile_options: str = "",
               profile_options: str = "", input_specs: Mapping[str, Mapping] | None = None, dry_run: bool = False,
               retry_failed: bool = False, poll_s: float = 10.0, timeout_s: float | None = None, client=None,
               progress: bool = True, name_prefix: str = "effv2-",
               sleep: Callable[[float], None] | None = None) -> AIHubRun:
    """Compile and profile every ``{key: model file}`` on ``device`` (an :class:`AIHubDevice` or a name for
    :func:`resolve_device`), at most ``max_jobs`` units in flight, each unit's jobs recorded in the ledger
    ``ledger`` (see :func:`ledger_path`) as soon as they are submitted; jobs already there are collected, not
    resubmitted (a unit that failed before is reported again unless ``retry_failed``). ``target_runtime`` goes to
    the compile job (``--target_runtime``), ``profile_options`` to the profiling job (e.g.
    ``--max_profiler_iterations 100``, ``--compute_unit npu``); ``input_specs[key]`` to the compile job where given.
    A failure (AI Hub's message and the job's id) does not stop the other units; a missing or refused API token
    does (:class:`ProfilerUnavailable`). Each job's status is read every ``poll_s`` seconds (qai-hub's own
    ``Job.wait`` polls every 10 s). ``dry_run``: no network call, only :attr:`AIHubRun.plan`."""
    if target_runtime not in TARGET_RUNTIMES:
        raise AIHubError(f"unknown AI Hub target runtime {target_runtime!r}; use one of {list(TARGET_RUNTIMES)}")
    if max_jobs < 1:
        raise AIHubError(f"max_jobs must be at least 1, not {max_jobs}")
    if re.search(r"--target_runtime\b", compile_options):
        raise AIHubError("give the target runtime with target_runtime, not in compile_options")
    dev_name = device.name if isinstance(device, AIHubDevice) else str(device)
    dev_os = device.os if isinstance(device, AIHubDevice) else ""
    compile_opts = f"--target_runtime {target_runtime} {compile_options}".strip()
    header = {"device": dev_name, "os": dev_os, "target_runtime": target_runtime, "compile_options": compile_opts,
              "profile_options": profile_options.strip()}
    book = JobLedger(ledger, header)
    keys = list(units)
    plan = _plan(keys, book, retry_failed)
    if dry_run:
        return AIHubRun({}, plan, dry_run=True)
    missing = [k for k in keys if not book.get(k).get("compile_job_id") and not Path(units[k]).exists()]
    if missing:
        raise UserError(f"model file(s) to submit do not exist: {[str(units[k]) for k in missing[:3]]}")
    client = check_ready(client)
    if not isinstance(device, AIHubDevice):
        device = resolve_device(dev_name, client=client)
    if retry_failed:
        for k in keys:
            if book.get(k).get("status") == "failed":
                book.forget(k)
    runner = _Runner(client, device, book, compile_opts, profile_options.strip(), poll_s, timeout_s, name_prefix,
                     sleep)
    outcomes: dict[str, UnitOutcome] = {}
    bar = tqdm(total=len(keys), desc=f"AI Hub {device.name}", unit="unit", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=int(max_jobs), thread_name_prefix="aihub")
    try:
        futures = {pool.submit(runner.run, k, Path(units[k]), (input_specs or {}).get(k)): k for k in keys}
        for fut in as_completed(futures):
            o = fut.result()
            outcomes[o.key] = o
            bar.update(1)
            bar.set_postfix(ok=sum(x.ok for x in outcomes.values()), failed=sum(not x.ok for x in outcomes.values()))
    except BaseException:
        runner.stop.set()               # Ctrl-C, a refused token...: the other units submit nothing more
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return AIHubRun({k: outcomes[k] for k in keys}, plan)


def client_version() -> str:
    """qai-hub's version as text (``qai_hub.__version__`` is a ``packaging.version.Version``)."""
    return str(_qai_hub().__version__)


def table_meta(device: AIHubDevice, target_runtime: str, run: AIHubRun | None = None, client_version: str | None = None,
               ledger: str | Path | None = None) -> dict:
    """The metadata a table of AI Hub timings records: the device's facts (:func:`parse_device`: AI Hub name, OS,
    chipset...), the target runtime, qai-hub's version and every job id (per unit: compile and profile, and the
    failures' messages)."""
    meta = parse_device(device)
    meta.update({"os_version": device.os_version or device.os or None, "os_requested": device.os or "latest",
                 "target_runtime": target_runtime, "qai_hub": client_version,
                 "transport": "Qualcomm AI Hub (hosted device)"})
    if ledger is not None:
        meta["job_ledger"] = str(ledger)
    if run is not None:
        meta["jobs"] = {k: {"compile_job_id": o.compile_job_id, "profile_job_id": o.profile_job_id,
                            **({"error": o.error, "failed_stage": o.failed_stage} if not o.ok else {}),
                            **({"per_run": o.result.per_run, "compute_units": o.result.compute_units,
                                "compute_units_basis": o.result.compute_units_basis} if o.ok else {})}
                        for k, o in run.outcomes.items()}
    return meta
