"""TFLite / LiteRT profiler: litert-torch conversion (:func:`profilers.formats.convert.export_tflite`), timed
locally with the LiteRT interpreter (XNNPACK) or on an Android phone with ``benchmark_model`` over adb.

Local timing (device connection ``local``): ``ai_edge_litert.interpreter.Interpreter(num_threads=...)``
with XNNPACK; the input is set once and ``invoke()`` is timed, as ``benchmark_model`` does.
Phone timing (connection ``adb``): see :mod:`profilers.transports.adb`.

    python -m profilers.tflite --device local-cpu
    python -m profilers.tflite --device pixel6 --benchmark-model ./benchmark_model   # phone over adb
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from nas.core.values import one_of, setting

from profilers.formats.convert import export_tflite, quiet_output
from profilers.plugin.base import Loaded, Profiler, ProfilerUnavailable
from profilers.plugin.cli import main
from profilers.plugin.options import RuntimeOptions
from profilers.runtimes import register_runtime
from profilers.timing.protocol import LatencyStats
from profilers.transports.adb import AdbBenchmark, delegate_flags

__all__ = ["TFLiteProfiler", "TFLiteOptions"]


@dataclass(frozen=True)
class TFLiteOptions(RuntimeOptions):
    """LiteRT's options: the delegate (``xnnpack`` and ``cpu`` run here; ``gpu`` and ``nnapi`` on a phone)."""
    delegate: str = setting("xnnpack", one_of(("xnnpack", "cpu", "gpu", "nnapi")), help="the LiteRT delegate")


@register_runtime
class TFLiteProfiler(Profiler):
    name = "tflite"
    aliases = ("litert",)
    suffix = ".tflite"
    Options = TFLiteOptions

    def __init__(self, *a, adb_serial: str | None = None, benchmark_model: str | None = None, **kw):
        super().__init__(*a, **kw)
        conn = self.device.connection
        self.remote = self.device.connection_type == "adb"
        self.adb = None
        if self.remote:
            self.adb = AdbBenchmark(serial=adb_serial or conn.get("serial"),
                                    benchmark_model=conn.get("benchmark_model"),
                                    local_benchmark_model=benchmark_model or os.environ.get("BENCHMARK_MODEL"),
                                    workdir=conn.get("workdir", "/data/local/tmp/effv2_nas"),
                                    taskset=conn.get("taskset"), adb=conn.get("adb", "adb"))

    @classmethod
    def how_to_measure(cls, device) -> str:
        if device.connection_type != "adb":
            return super().how_to_measure(device)
        return (f"python -m profilers.tflite --device {device.name} --benchmark-model PATH, with the phone "
                f"connected over adb (USB debugging on; see adb devices) and PATH LiteRT's benchmark_model binary "
                f"for Android arm64")

    @classmethod
    def add_arguments(cls, ap):
        ap.add_argument("--adb-serial", default=None, help="adb serial of the phone (when several are attached)")
        ap.add_argument("--benchmark-model", default=None,
                        help="local android_aarch64 benchmark_model binary to push to the phone")

    @classmethod
    def arguments(cls, args):
        return {"adb_serial": args.adb_serial, "benchmark_model": args.benchmark_model}

    def runtime_version(self) -> str:
        if self.remote:
            return "benchmark_model (on device)"
        try:
            import ai_edge_litert
            return f"ai-edge-litert {getattr(ai_edge_litert, '__version__', 'unknown')}"
        except ImportError:
            return "unknown"

    def settings(self) -> dict:
        d = {**super().settings(), "converter": "litert-torch", "connection": self.device.connection_type}
        try:
            d["converter_version"] = version("litert-torch")
        except PackageNotFoundError:
            pass
        if self.remote:
            d["benchmark_model_flags"] = delegate_flags(self.options.delegate, self.device.precision)
            d["taskset"] = self.adb.taskset
            d["timed"] = "benchmark_model timed runs (avg per round)"
        else:
            d["timed"] = "Interpreter.invoke"
        return d

    def check_ready(self) -> None:
        if self.remote:
            self.adb.check()
            return
        if self.options.delegate not in ("xnnpack", "cpu"):
            raise ProfilerUnavailable(f"device {self.device.name!r} uses the {self.options.delegate} delegate, which "
                                      f"the local LiteRT interpreter does not provide; it is measured over adb")
        try:
            importlib.import_module("ai_edge_litert.interpreter")
        except ImportError:
            raise ProfilerUnavailable("ai-edge-litert is not installed: pip install ai-edge-litert==2.3.0") from None

    def export(self, module, input_shape, path):
        return export_tflite(module, input_shape, path, quiet=self.quiet)

    def profile_module(self, module, input_shape, name: str = "model") -> LatencyStats:
        self.check_ready()                           # fail before a conversion that cannot be measured
        return super().profile_module(module, input_shape, name)

    def measure(self, path, input_shape) -> LatencyStats:
        if self.remote:
            p = self.protocol
            runs = p.runs or 50
            st, _ = self.adb.benchmark(path, self.threads, p.warmup, runs, p.rounds,
                                       delegate_flags(self.options.delegate, self.device.precision))
            return st
        return super().measure(path, input_shape)

    def load(self, path, input_shape):
        if self.remote:                              # timed by benchmark_model on the phone
            return None
        self.check_ready()
        from ai_edge_litert.interpreter import Interpreter
        with quiet_output(self.quiet):
            it = Interpreter(model_path=str(path), num_threads=int(self.threads))
            it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        x = np.random.default_rng(0).standard_normal(tuple(inp["shape"])).astype(inp["dtype"])
        it.set_tensor(inp["index"], x)

        def predict(v):
            it.set_tensor(inp["index"], np.asarray(v).astype(inp["dtype"]))
            it.invoke()
            return it.get_tensor(out["index"])

        return Loaded(it.invoke, predict)


if __name__ == "__main__":
    raise SystemExit(main(TFLiteProfiler))
