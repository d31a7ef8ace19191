"""Profilers: one plugin per runtime, writing per-unit latency tables (``latency_tables/``).

    python -m profilers.onnxruntime --device local-cpu      # ONNX Runtime, measured here
    python -m profilers.tflite --device local-cpu           # LiteRT (XNNPACK), measured here
    python -m profilers.tflite --device pixel6              # benchmark_model over adb
    python -m profilers.coreml --device iphone12            # Core ML bundle for the phone (or a Mac)
    python -m profilers.tensorrt --device a100              # trtexec
    python -m profilers.torch --device local-cpu            # PyTorch eager, measured here
    python -m profilers.torch --device h200                 # PyTorch CUDA graphs, on the H200 itself

``get_profiler("onnxruntime")`` returns the plugin class; ``cls(device).profile_module(module,
input_shape)`` exports and measures any module (a unit or a whole network) with the shared protocol.

The folder: the runtime plugins (``onnxruntime.py``, ``tflite.py``, ``coreml.py``, ``tensorrt.py``,
``torch.py``) and the table tools (``coverage.py``, ``merge.py``) are the modules the commands run; the
device registry is ``devices.py`` / ``devices.json``; what they share lives in subpackages:
``runtimes.py`` (which runtimes exist: the registry), ``plugin/`` (the plugin contract, runtime options, the shared command line), ``tables/``
(latency tables and their metadata, table runs), ``timing/`` (the timing protocol, interleaved batches,
the probe, the host), ``formats/`` (converters to each runtime's format) and ``transports/`` (ways to
reach a device: adb, Core ML bundles). Importing this package imports no runtime and no torch.
"""
from __future__ import annotations

from nas.core.moved import moved

from profilers.devices import Device, DeviceError, get_device, list_devices
from profilers.runtimes import UnknownRuntime, get_profiler, list_runtimes, register_runtime
from profilers.timing.protocol import LatencyStats, Protocol

__all__ = ["get_profiler", "list_runtimes", "register_runtime", "UnknownRuntime", "Device", "DeviceError",
           "get_device", "list_devices", "LatencyStats", "Protocol"]

# where the shared modules lived before they moved into subpackages: the old import paths keep working
moved({"profilers.base": "profilers.plugin.base", "profilers.cli": "profilers.plugin.cli",
       "profilers.stats": "profilers.timing.protocol", "profilers.batch": "profilers.timing.batch",
       "profilers.probe": "profilers.timing.probe", "profilers.host": "profilers.timing.host",
       "profilers.table": "profilers.tables.table", "profilers.runner": "profilers.tables.runs",
       "profilers.adb": "profilers.transports.adb", "profilers.coreml_bundle": "profilers.transports.coreml_bundle",
       "profilers.convert": "profilers.formats.convert"})
