"""A stand-in for the ``qai_hub`` package (0.56) at the boundary the AI Hub transport uses: ``Client`` (config,
set_verbose, get_devices, get_job, submit_compile_job, submit_inference_job), ``Device``, ``JobStatus``, the
compile and inference jobs and the ``Error``/``UserError``/``InternalError`` exceptions, with the names,
signatures and return shapes of ``qai_hub/client.py`` (checked against the real package by
tests/test_transport_aihub.py). Jobs finish after a set number of status polls; no network.

The profiles below are what qai-hub 0.56's own ``_profile_pb_to_python_dict`` (client.py:98-189) returns for a
``ProfileDetail`` message of format 1.2 and 1.1, built with invented numbers: they are test data, never
measurements, and must never reach a table outside a test's tmp_path.
"""
from __future__ import annotations

import copy
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from enum import Enum

from packaging.version import Version

# qai_hub.client._profile_pb_to_python_dict of ProfileDetail(major_version=1, minor_version=2, ...): invented numbers
PROFILE_1_2 = {
    "execution_summary": {
        "estimated_inference_time": 301, "estimated_inference_peak_memory": 4194304, "first_load_time": 250000,
        "first_load_peak_memory": 0, "warm_load_time": 41000, "warm_load_peak_memory": 0, "compile_time": 0,
        "compile_peak_memory": 0, "compile_memory_increase_range": None, "compile_memory_peak_range": None,
        "first_load_memory_increase_range": None, "first_load_memory_peak_range": None,
        "warm_load_memory_increase_range": None, "warm_load_memory_peak_range": None,
        "inference_memory_increase_range": (0, 1048576), "inference_memory_peak_range": (2097152, 4194304),
        "all_compile_times": [], "all_first_load_times": [250000], "all_warm_load_times": [41000, 40500],
        "all_inference_times": [305, 301, 299, 310, 298, 302]},
    "execution_detail": [
        {"name": "/conv/Conv", "type": "CONV_2D", "compute_unit": "NPU", "execution_time": 180,
         "execution_cycles": 90000},
        {"name": "/act/Gelu", "type": "GELU", "compute_unit": "NPU", "execution_time": 40},
        {"name": "/attn/Softmax", "type": "SOFTMAX", "compute_unit": "GPU", "execution_time": 60},
        {"name": "/reshape", "type": "RESHAPE", "compute_unit": "CPU", "execution_time": 20}]}

# the same for a format 1.1 profile: no all_* times, no per-layer execution_time
PROFILE_1_1 = {
    "execution_summary": {
        "estimated_inference_time": 1234, "estimated_inference_peak_memory": 1, "first_load_time": 2,
        "first_load_peak_memory": 0, "warm_load_time": 3, "warm_load_peak_memory": 0, "compile_time": 4,
        "compile_peak_memory": 0, "compile_memory_increase_range": None, "compile_memory_peak_range": None,
        "first_load_memory_increase_range": None, "first_load_memory_peak_range": None,
        "warm_load_memory_increase_range": None, "warm_load_memory_peak_range": None,
        "inference_memory_increase_range": None, "inference_memory_peak_range": None},
    "execution_detail": [
        {"name": "/conv/Conv", "type": "CONV_2D", "compute_unit": "NPU"},
        {"name": "/act/Gelu", "type": "GELU", "compute_unit": "NPU"},
        {"name": "/x", "type": "RESHAPE", "compute_unit": "CPU"}]}

# get_devices() entries: Device(name, os, attributes) as the client builds them (client.py:3471-3475)
DEVICES = [
    ("Samsung Galaxy S24 (Family)", "14", ["chipset:qualcomm-snapdragon-8gen3", "format:phone", "framework:onnx",
                                            "framework:qnn", "framework:tflite", "os:android", "vendor:samsung"]),
    ("Samsung Galaxy S24 (Family)", "15", ["chipset:qualcomm-snapdragon-8gen3", "format:phone", "framework:onnx",
                                            "framework:qnn", "framework:tflite", "os:android", "vendor:samsung"]),
    ("Samsung Galaxy S23 (Family)", "13", ["chipset:qualcomm-snapdragon-8gen2", "format:phone", "framework:tflite",
                                            "os:android", "vendor:samsung"]),
    ("Snapdragon X Elite CRD", "11", ["chipset:qualcomm-snapdragon-x-elite", "format:compute", "os:windows",
                                      "vendor:qualcomm"]),
    ("QCS8550 (Proxy)", "12", ["chipset:qualcomm-qcs8550-proxy", "format:iot", "os:android", "vendor:qualcomm"]),
]

# the client's message for a missing ~/.qai_hub/client.ini (client.py:3369-3373, api_utils.py:160-165)
NO_CONFIG = ("Failed to load client configuration file.\n\n┌" + "─" * 68 + "┐\n| ~/.qai_hub/client.ini not found. Please "
             "request      |\n| access at https://aihub.qualcomm.com/. If you have access, please  |\n└" + "─" * 68
             + "┘")


class Error(Exception):
    def __init__(self, message):
        super().__init__(message)


class InternalError(Error):
    def __init__(self, message):
        super().__init__(message)


class UserError(Error):
    def __init__(self, message):
        super().__init__(message)


@dataclass
class Device:
    name: str = ""
    os: str = ""
    attributes: "str | list[str]" = field(default_factory=list)


class _State(Enum):
    SUCCESS = 3
    FAILED = 4
    CREATED = 1
    UNSPECIFIED = 0
    OPTIMIZING_MODEL = 2
    PROVISIONING_DEVICE = 5
    MEASURING_PERFORMANCE = 6
    RUNNING_INFERENCE = 7
    QUANTIZING_MODEL = 8
    LINKING_MODELS = 9


@dataclass(unsafe_hash=True)
class JobStatus:
    State = _State
    state: _State
    message: "str | None" = None

    @property
    def code(self) -> str:
        return self.state.name

    @property
    def success(self) -> bool:
        return self.state == _State.SUCCESS

    @property
    def failure(self) -> bool:
        return self.state == _State.FAILED

    @property
    def finished(self) -> bool:
        return self.state in (_State.SUCCESS, _State.FAILED)

    @property
    def running(self) -> bool:
        return self.state not in (_State.SUCCESS, _State.FAILED, _State.CREATED)

    @property
    def pending(self) -> bool:
        return self.state == _State.CREATED


class Model:
    def __init__(self, model_id: str, name: str):
        self.model_id, self.name = model_id, name


class _Job:
    _running = _State.OPTIMIZING_MODEL

    def __init__(self, hub: "Hub", job_id: str, unit: str, polls: int, fail: "str | None"):
        self._hub, self.job_id, self.name, self._unit = hub, job_id, f"effv2-{unit}", unit
        self._polls_left, self._fail = polls, fail
        self._final: "JobStatus | None" = None

    def get_status(self) -> JobStatus:
        with self._hub.lock:
            self._hub.status_calls += 1
            if self._final is not None:
                return self._final
            if not self._hub.gate.is_set() or self._polls_left > 0:     # running until the gate opens, then
                if self._hub.gate.is_set():                            # for ``polls`` more polls
                    self._polls_left -= 1
                return JobStatus(self._running)
            self._final = JobStatus(_State.FAILED, self._fail) if self._fail else JobStatus(_State.SUCCESS)
            self._hub.in_flight -= 1
            return self._final

    def wait(self, timeout: "int | None" = None) -> JobStatus:
        while not self.get_status().finished:
            time.sleep(0.001)
        return self.get_status()


class CompileJob(_Job):
    def get_target_model(self) -> "Model | None":
        if not self.get_status().finished:
            self.wait()
        return Model(f"m{self.job_id[1:]}", self.name) if self.get_status().success else None


class InferenceJob(_Job):
    _running = _State.MEASURING_PERFORMANCE

    def download_profile(self, filename: "str | None" = None) -> "dict | str":
        status = self.wait()
        return copy.deepcopy(self._hub.profiles.get(self._unit, PROFILE_1_2)) if status.success else {}


class Hub:
    """The state behind one fake ``qai_hub`` module: what jobs exist, how each unit behaves, what was called.

    ``polls``: status polls before a job finishes; ``compile_fail`` / ``profile_fail``: {unit: AI Hub's failure
    message}; ``profiles``: {unit: profile dict}; ``gate_at``: jobs stay running until this many are in flight at
    once (or ``gate_timeout_s`` passes), so a test can see whether jobs really run side by side."""

    def __init__(self, devices=DEVICES, polls: int = 2, compile_fail=None, profile_fail=None, profiles=None,
                 configured: bool = True, gate_at: int = 0, gate_timeout_s: float = 2.0):
        self.devices = [Device(n, o, list(a)) for n, o, a in devices]
        self.polls, self.compile_fail, self.profile_fail = polls, dict(compile_fail or {}), dict(profile_fail or {})
        self.profiles = dict(profiles or {})
        self.configured = configured
        self.lock = threading.Lock()
        self.jobs: dict[str, _Job] = {}
        self.submitted: list[tuple[str, str, dict]] = []        # (kind, unit, kwargs)
        self.status_calls = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.gate = threading.Event()
        self.gate_at = gate_at
        if gate_at <= 1:
            self.gate.set()
        else:
            timer = threading.Timer(gate_timeout_s, self.gate.set)
            timer.daemon = True
            timer.start()
        self.verbose_set: list[bool] = []

    def _new(self, cls, prefix: str, unit: str, fail):
        with self.lock:
            job_id = f"{prefix}{len(self.jobs) + 1:07d}"
            job = cls(self, job_id, unit, self.polls, fail)
            self.jobs[job_id] = job
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            if self.gate_at and self.in_flight >= self.gate_at:
                self.gate.set()
            return job

    def module(self) -> types.ModuleType:
        hub = self

        class Client:
            def __init__(self, config=None, profile=None, default_project_id=None, client_mode="library"):
                self._config = None

            @property
            def config(self):
                if not hub.configured:
                    raise UserError(NO_CONFIG)
                return types.SimpleNamespace(api_token="t", verbose=True)

            def set_verbose(self, verbose=True):
                hub.verbose_set.append(verbose)

            def get_devices(self, name="", os="", attributes=None):
                self.config
                return [copy.deepcopy(d) for d in hub.devices]

            def get_job(self, job_id, job_type=None):
                self.config
                if job_id not in hub.jobs:
                    raise UserError(f"Job {job_id} not found.")
                return hub.jobs[job_id]

            def submit_compile_job(self, model, device, name=None, input_specs=None, options="", single_compile=True,
                                   calibration_data=None, retry=True, project=None):
                self.config
                unit = name.removeprefix("effv2-")
                hub.submitted.append(("compile", unit, {"model": model, "device": device, "options": options,
                                                        "input_specs": input_specs}))
                return hub._new(CompileJob, "jc", unit, hub.compile_fail.get(unit))

            def submit_inference_job(self, model, device, inputs=None, name=None, options="", retry=True,
                                     profile=True, project=None):
                self.config
                unit = name.removeprefix("effv2-")
                assert isinstance(model, Model), "inference jobs take the compile job's target model"
                hub.submitted.append(("profile", unit, {"model": model, "device": device, "options": options,
                                                        "profile": profile, "inputs": inputs}))
                return hub._new(InferenceJob, "jp", unit, hub.profile_fail.get(unit))

        mod = types.ModuleType("qai_hub")
        mod.__version__ = Version("0.56.0")              # qai_hub/_version.py: a packaging Version
        mod.Client = Client
        mod.Device = Device
        mod.JobStatus = JobStatus
        mod.CompileJob = CompileJob
        mod.InferenceJob = InferenceJob
        mod.Error, mod.UserError, mod.InternalError = Error, UserError, InternalError
        mod.__file__ = __file__
        return mod

    def install(self, monkeypatch) -> types.ModuleType:
        mod = self.module()
        monkeypatch.setitem(sys.modules, "qai_hub", mod)
        return mod


def without_qai_hub(monkeypatch) -> None:
    """Make ``import qai_hub`` fail as it does where the package is not installed."""
    monkeypatch.setitem(sys.modules, "qai_hub", None)
