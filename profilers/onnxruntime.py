"""ONNX Runtime profiler: opset-20 ONNX export (:func:`profilers.formats.convert.export_onnx`), timed with
``InferenceSession.run``.

Sessions use ``intra_op_num_threads`` = the device's threads, ``inter_op`` 1, sequential execution and
``ORT_ENABLE_ALL``. The CPU provider is used unless the device entry asks for CUDA/TensorRT execution
providers (``h200-ort``, ``a100``), which must then be available: they come with ``pip install
onnxruntime-gpu`` (instead of ``onnxruntime``) on the machine with the GPU; a missing one is refused,
never replaced by the CPU. Timing covers ``sess.run`` (input copy and output allocation included, ~13 us
floor on this CPU; on a GPU provider also the copy of the input to the GPU and of the output back).

    python -m profilers.onnxruntime --device local-cpu
    python -m profilers.onnxruntime --device h200-ort        # CUDA execution provider, on the H200
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.core.values import STRINGS, one_of, setting

from profilers.formats.convert import OPSET, export_onnx
from profilers.plugin.base import Loaded, Profiler, ProfilerUnavailable
from profilers.plugin.cli import main
from profilers.plugin.options import RuntimeOptions
from profilers.runtimes import register_runtime

__all__ = ["OnnxRuntimeProfiler", "OnnxRuntimeOptions", "GPU_PROVIDERS"]

#: execution providers that run on an NVIDIA GPU and come with ``onnxruntime-gpu``
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


@dataclass(frozen=True)
class OnnxRuntimeOptions(RuntimeOptions):
    """ONNX Runtime's options: its execution providers and the ONNX exporter."""
    providers: tuple[str, ...] = setting(("CPUExecutionProvider",), STRINGS,
                                         help="execution providers, in order (CUDA/TensorRT ones need "
                                              "onnxruntime-gpu)")
    exporter: str = setting("torchscript", one_of(("torchscript", "dynamo")),
                            help="the ONNX exporter (opset 20 either way)")


@register_runtime
class OnnxRuntimeProfiler(Profiler):
    name = "onnxruntime"
    aliases = ("ort", "onnx")
    suffix = ".onnx"
    Options = OnnxRuntimeOptions

    def _ort(self):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ProfilerUnavailable("onnxruntime is not installed: pip install onnxruntime "
                                      "(pip install onnxruntime-gpu for the CUDA/TensorRT providers)") from None
        return ort

    def runtime_version(self) -> str:
        return self._ort().__version__

    def providers(self) -> list[str]:
        want = list(self.options.providers)
        avail = self._ort().get_available_providers()
        missing = [p for p in want if p not in avail]
        if missing:
            gpu = [p for p in missing if p in GPU_PROVIDERS]
            libs = "CUDA/TensorRT" if "TensorrtExecutionProvider" in gpu else "CUDA"
            how = (f"on the machine with the GPU, pip install onnxruntime-gpu (in place of the CPU-only package: "
                   f"pip uninstall onnxruntime first) with its {libs} libraries, or pick a CPU device such as "
                   f"local-cpu") if gpu else \
                "install an onnxruntime build with that provider, or pick a CPU device such as local-cpu"
            raise ProfilerUnavailable(
                f"device {self.device.name!r} asks for ONNX Runtime provider(s) {missing}, but this onnxruntime "
                f"has only {avail}; {how}")
        return want if "CPUExecutionProvider" in want else want + ["CPUExecutionProvider"]

    def check_ready(self) -> None:
        self.providers()

    def settings(self) -> dict:
        return {**super().settings(), "opset": OPSET, "intra_op_num_threads": self.threads,
                "inter_op_num_threads": 1, "execution_mode": "ORT_SEQUENTIAL",
                "graph_optimization_level": "ORT_ENABLE_ALL", "timed": "InferenceSession.run"}

    def export(self, module, input_shape, path):
        return export_onnx(module, input_shape, path, dynamo=self.options.exporter == "dynamo", quiet=self.quiet)

    def session(self, path: Path):
        ort = self._ort()
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(self.threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        return ort.InferenceSession(str(path), so, providers=self.providers())

    def load(self, path, input_shape):
        sess = self.session(path)
        name = sess.get_inputs()[0].name
        x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
        feed = {name: x}
        run = sess.run
        return Loaded(lambda: run(None, feed), lambda v: run(None, {name: np.asarray(v, np.float32)})[0])


if __name__ == "__main__":
    raise SystemExit(main(OnnxRuntimeProfiler))
