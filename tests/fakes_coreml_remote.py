"""A stand-in for coremltools' remote-device API (coremltools 9.0, ``coremltools.models.ml_program.experimental``)
at the boundary the iPhone transport uses: ``remote_device`` (``Device``, ``DeviceType``, ``DeviceState``,
``AppSigningCredentials``, ``_DeviceCtlError``), ``perf_utils.MLModelBenchmarker`` (async ``benchmark_load``,
``benchmark_predict``, ``benchmark_operation_execution`` returning ``Measurement``s and ``OperationExecutionInfo``s)
and the compute-plan device classes, plus the few names of ``coremltools`` itself that it needs (``__version__``,
``ComputeUnit``, ``models.MLModel``). Names, signatures, field names, sync/async nature and units follow the
installed package (tests/test_transport_coreml_remote.py checks them against it).

The numbers are invented test data (ms), never measurements; tests write only under tmp_path.
"""
from __future__ import annotations

import asyncio
import sys
import types
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

# invented per-run prediction times (ms) and load time (ms), as MLModelBenchmarker.Measurement.samples hold them
PREDICT_MS = [0.412, 0.405, 0.398, 0.431, 0.402, 0.407, 0.399, 0.415, 0.404, 0.401]
LOAD_MS = 812.5
# (op output name, estimated cost weight or None, preferred compute device) of a small compute plan
PLAN = [("conv_0", 0.5, "ne"), ("gelu_0", 0.2, "ne"), ("softmax_0", 0.2, "gpu"), ("reshape_0", 0.1, "cpu"),
        ("const_0", None, None)]
# what the model-runner app answers when Core ML cannot load a package (a JSON-RPC error -> _DeviceCtlError)
LOAD_ERROR = ("Error Domain=com.apple.CoreML Code=0 \"Failed to build the model execution plan using a model "
              "architecture file\"")


class DeviceType(Enum):
    MAC = "mac"
    IPHONE = "iphone"
    IPAD = "ipad"
    APPLETV = "apppletv"
    WATCH = "applewatch"
    HOMEPOD = "homepod"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value):
        return DeviceType.UNKNOWN


class DeviceState(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    DISCONNECTED = "disconnected"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value):
        return DeviceState.UNKNOWN


class ComputeUnit(Enum):
    ALL = 1
    CPU_AND_GPU = 2
    CPU_ONLY = 3
    CPU_AND_NE = 4


class _DeviceCtlError(Exception):
    def __init__(self, message, error_code=None):
        self.message = message
        self.error_code = error_code
        super().__init__(self.message)

    def __str__(self):
        return f"[Error Code {self.error_code}] {self.message}"


@dataclass(frozen=True)
class AppSigningCredentials:
    development_team: Optional[str] = ""
    provisioning_profile_uuid: Optional[str] = None
    bundle_identifier: Optional[str] = None


class FakeSession:
    """``_AppSession``: ``is_alive()`` and ``stop()`` are methods (remote_device.py:489-507)."""

    def __init__(self, phone: "FakePhone", working_directory: Path):
        self.phone, self.working_directory, self.stopped = phone, working_directory, False
        self.bundle_identifier = "com.coremltools.modelrunnerd"

    def stop(self):
        self.stopped = True

    def is_alive(self) -> bool:
        return not self.stopped and self.phone.app_alive


class MLCPUComputeDevice:
    def __init__(self, proxy):
        self.__proxy__ = proxy


class MLGPUComputeDevice:
    def __init__(self, proxy):
        self.__proxy__ = proxy


class MLNeuralEngineComputeDevice:
    def __init__(self, proxy):
        self.__proxy__ = proxy

    @property
    def total_core_count(self) -> int:
        return 16


@dataclass(frozen=True)
class MLComputePlanDeviceUsage:
    preferred_compute_device: Any
    supported_compute_devices: List[Any]


_DEVICE_CLASSES = {"ne": MLNeuralEngineComputeDevice, "gpu": MLGPUComputeDevice, "cpu": MLCPUComputeDevice}


class FakePhone:
    """The state behind one fake library: the devices devicectl lists, how the phone behaves, what was called.

    ``devices``: ``(name, type, udid, os_version, developer_mode, state)`` tuples; ``fail_load``: package names
    the phone cannot load; ``prepare_error``: an exception ``prepare_for_model_debugging`` raises;
    ``die_on_predict``: the app stops at the first prediction."""

    def __init__(self, tmp_path: Path, devices=None, fail_load=(), prepare_error: Exception | None = None,
                 die_on_predict: bool = False, ship_modelrunner: bool = True):
        self.tmp_path = Path(tmp_path)
        self.devices = devices if devices is not None else [
            ("Ada's iPhone", "iphone", "00008101-000A1B2C3D4E5F60", "17.5", "enabled", "connected")]
        self.fail_load, self.prepare_error, self.die_on_predict = set(fail_load), prepare_error, die_on_predict
        self.app_alive = True
        self.prepare_calls: list[dict] = []
        self.loads: list[str] = []
        self.unloads: list[str] = []
        self.predictions = 0
        self.models: list[dict] = []
        self.package_root = self.tmp_path / "site" / "coremltools"
        self.package_root.mkdir(parents=True, exist_ok=True)
        if ship_modelrunner:
            (self.package_root / "modelrunner" / "ModelRunner.xcworkspace").mkdir(parents=True, exist_ok=True)

    # -- the modules ----------------------------------------------------------------------------------
    def remote_device(self) -> types.ModuleType:
        phone = self

        @dataclass(frozen=True)
        class Device:
            name: str
            type: DeviceType
            identifier: str
            udid: str
            os_version: str
            os_build_number: str
            developer_mode_state: str
            state: DeviceState
            session: Optional[Any]

            @staticmethod
            def get_devices() -> List[Any]:
                return [Device(name=n, type=DeviceType(t), identifier=f"ID-{u}", udid=u, os_version=os_v,
                               os_build_number="21F79", developer_mode_state=dev, state=DeviceState(st), session=None)
                        for n, t, u, os_v, dev, st in phone.devices]

            @staticmethod
            def get_connected_devices(device_type: DeviceType) -> List[Any]:
                return [d for d in Device.get_devices() if d.state == DeviceState.CONNECTED and d.type == device_type]

            async def prepare_for_model_debugging(self, credentials: Optional[AppSigningCredentials] = None,
                                                  working_directory: Optional[Path] = None, clean: bool = False):
                phone.prepare_calls.append({"credentials": credentials, "working_directory": working_directory,
                                            "clean": clean, "udid": self.udid})
                if self.state != DeviceState.CONNECTED:
                    raise ValueError("The device cannot be used for model debugging. "
                                     f"Current state: {self.state}. Required: State must be CONNECTED.")
                if phone.prepare_error is not None:
                    raise phone.prepare_error
                return Device(name=self.name, type=self.type, identifier=self.identifier, udid=self.udid,
                              state=self.state, os_version=self.os_version, os_build_number=self.os_build_number,
                              developer_mode_state=self.developer_mode_state,
                              session=FakeSession(phone, Path(working_directory)))

        mod = types.ModuleType("coremltools.models.ml_program.experimental.remote_device")
        mod.Device, mod.DeviceType, mod.DeviceState = Device, DeviceType, DeviceState
        mod.AppSigningCredentials, mod._DeviceCtlError = AppSigningCredentials, _DeviceCtlError
        return mod

    def perf_utils(self) -> types.ModuleType:
        phone = self

        class _LoadedModel:
            def __init__(self, name: str):
                self.name, self.loop = name, asyncio.get_running_loop()
                self.load_duration_in_nano_seconds = int(LOAD_MS * 1e6)

            def check_loop(self):           # the real remote service is bound to the loop it was loaded on
                assert asyncio.get_running_loop() is self.loop, "the model was loaded on another event loop"

            async def unload(self):
                self.check_loop()
                phone.unloads.append(self.name)

        class MLModelBenchmarker:
            @dataclass(frozen=True)
            class Statistics:
                minimum: float
                maximum: float
                average: float
                std_dev: float
                median: float

                @staticmethod
                def from_values(values: List[float]):
                    if len(values) == 0:
                        return None
                    return MLModelBenchmarker.Statistics(float(np.min(values)), float(np.max(values)),
                                                         float(np.mean(values)), float(np.std(values)),
                                                         float(np.median(values)))

            @dataclass(frozen=True)
            class Measurement:
                statistics: Optional[Any]
                samples: List[float]

                @staticmethod
                def from_samples(samples: List[float]):
                    return MLModelBenchmarker.Measurement(MLModelBenchmarker.Statistics.from_values(samples), samples)

                @property
                def sort_key(self):
                    return (self.statistics is not None,
                            self.statistics.median if self.statistics is not None else None)

            @dataclass
            class OperationExecutionInfo:
                spec: Any
                path: Any
                compute_device_usage: Optional[MLComputePlanDeviceUsage]
                measurement: Any

            def __init__(self, model, device=None) -> None:
                self.model, self.model_spec, self.device = model, None, device
                self._loaded_model = None

            def _name(self) -> str:
                return Path(self.model.path).name

            async def benchmark_load(self, iterations: int = 1):
                if self.device is None or self.device.session is None:
                    raise ValueError("Device is not prepared for debugging. Please call "
                                     "`prepare_for_model_debugging()` on the device before attempting to load "
                                     "the model.")
                phone.loads.append(self._name())
                if self._name() in phone.fail_load:
                    raise _DeviceCtlError(error_code=-32603, message=LOAD_ERROR)
                self._loaded_model = _LoadedModel(self._name())
                return MLModelBenchmarker.Measurement.from_samples([LOAD_MS] * iterations)

            async def benchmark_predict(self, inputs: Optional[Dict[str, Any]] = None, iterations: int = 1,
                                        warmup: bool = False):
                if self._loaded_model is None:
                    await self.benchmark_load()
                self._loaded_model.check_loop()
                if phone.die_on_predict:
                    phone.app_alive = False
                    raise _DeviceCtlError(error_code=1, message="ERROR: The app is not running.")
                phone.predictions += iterations + (1 if warmup else 0)
                return MLModelBenchmarker.Measurement.from_samples(
                    [PREDICT_MS[i % len(PREDICT_MS)] for i in range(iterations)])

            async def benchmark_operation_execution(self, inputs: Optional[Dict[str, Any]] = None,
                                                    iterations: int = 1, warmup: bool = False):
                predicted = await self.benchmark_predict(inputs=inputs, iterations=iterations, warmup=warmup)
                out = []
                for name, weight, unit in PLAN:
                    usage = None if unit is None else MLComputePlanDeviceUsage(
                        _DEVICE_CLASSES[unit](proxy=None), [MLCPUComputeDevice(proxy=None)])
                    samples = [] if weight is None else [s * weight for s in predicted.samples]
                    out.append(MLModelBenchmarker.OperationExecutionInfo(
                        spec=name, path=name, compute_device_usage=usage,
                        measurement=MLModelBenchmarker.Measurement.from_samples(samples)))
                return sorted(out, key=lambda v: v.measurement.sort_key, reverse=True)

        mod = types.ModuleType("coremltools.models.ml_program.experimental.perf_utils")
        mod.MLModelBenchmarker = MLModelBenchmarker
        return mod

    def coremltools(self) -> types.ModuleType:
        phone = self

        class MLModel:
            def __init__(self, model, is_temp_package=False, mil_program=None, skip_model_load=False,
                         compute_units=ComputeUnit.ALL, weights_dir=None, function_name=None,
                         optimization_hints: Optional[dict] = None) -> None:
                self.path, self.compute_unit, self.skip_model_load = model, compute_units, skip_model_load
                phone.models.append({"path": model, "compute_units": compute_units,
                                     "skip_model_load": skip_model_load})

        ct = types.ModuleType("coremltools")
        ct.__version__ = "9.0"
        ct.__file__ = str(self.package_root / "__init__.py")
        ct.ComputeUnit = ComputeUnit
        ct.models = types.SimpleNamespace(MLModel=MLModel)
        return ct

    def install(self, monkeypatch, coreml_remote) -> None:
        """Put the fake library where ``coreml_remote`` imports it, and make this a Mac with Xcode."""
        exp = types.ModuleType("coremltools.models.ml_program.experimental")
        exp.remote_device, exp.perf_utils = self.remote_device(), self.perf_utils()
        monkeypatch.setitem(sys.modules, "coremltools", self.coremltools())
        monkeypatch.setitem(sys.modules, "coremltools.models.ml_program.experimental", exp)
        monkeypatch.setattr(coreml_remote, "_is_macos", lambda: True)
        real_which = coreml_remote.shutil.which
        monkeypatch.setattr(coreml_remote.shutil, "which",
                            lambda cmd, *a, **k: f"/usr/bin/{cmd}" if cmd in ("devicectl", "xcrun", "xcodebuild")
                            else real_which(cmd, *a, **k))


def package(tmp_path: Path, name: str) -> Path:
    """An ``.mlpackage`` folder to hand to the transport (its content is never read: the library is fake)."""
    p = Path(tmp_path) / f"{name}.mlpackage"
    (p / "Data").mkdir(parents=True, exist_ok=True)
    return p
