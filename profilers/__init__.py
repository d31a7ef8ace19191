"""Profilers: one plugin per runtime, writing per-unit latency tables (``latency_tables/``).

    python -m profilers.onnxruntime --device local-cpu      # ONNX Runtime, measured here
    python -m profilers.tflite --device local-cpu           # LiteRT (XNNPACK), measured here
    python -m profilers.tflite --device pixel6              # benchmark_model over adb
    python -m profilers.coreml --device iphone12            # Core ML bundle for the phone (or a Mac)
    python -m profilers.tensorrt --device a100              # trtexec
    python -m profilers.torch --device local-cpu            # PyTorch eager, measured here
    python -m profilers.torch --device h200                 # PyTorch CUDA graphs, on the H200 itself

``get_profiler("onnxruntime")`` returns the plugin class; ``cls(device, threads=1).profile_module(module,
input_shape)`` exports and measures any module (a unit or a whole network) with the shared protocol.

A plugin is one module, ``profilers/<runtime>.py``: a :class:`profilers.base.Profiler` subclass (convert
with :mod:`profilers.convert`, time in process or with an external tool) ending with
``raise SystemExit(profilers.cli.main(MyProfiler))``; it is registered in ``_CLASSES`` below and in
``profilers.devices.RUNTIMES``. Table runs are :mod:`profilers.runner`, tables :mod:`profilers.table`.
"""
from __future__ import annotations

import importlib

from profilers.devices import RUNTIMES, Device, DeviceError, get_device, list_devices
from profilers.stats import LatencyStats, Protocol

__all__ = ["get_profiler", "RUNTIMES", "Device", "DeviceError", "get_device", "list_devices", "LatencyStats",
           "Protocol"]

_CLASSES = {"onnxruntime": ("onnxruntime", "OnnxRuntimeProfiler"), "tflite": ("tflite", "TFLiteProfiler"),
            "coreml": ("coreml", "CoreMLProfiler"), "tensorrt": ("tensorrt", "TensorRTProfiler"),
            "torch": ("torch", "TorchProfiler")}
_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "litert": "tflite", "trt": "tensorrt", "pytorch": "torch"}


def get_profiler(runtime_name: str):
    """The :class:`profilers.base.Profiler` subclass for ``runtime_name`` (onnxruntime, tflite, coreml, tensorrt,
    torch)."""
    name = _ALIASES.get(runtime_name, runtime_name)
    if name not in _CLASSES:
        raise KeyError(f"unknown runtime {runtime_name!r}; choose from {list(RUNTIMES)}")
    mod, cls = _CLASSES[name]
    return getattr(importlib.import_module(f"{__name__}.{mod}"), cls)
