"""ONNX Runtime profiler: opset-20 ONNX export (:func:`profilers.convert.export_onnx`), timed with
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

from pathlib import Path

import numpy as np

from profilers.base import Profiler, ProfilerUnavailable
from profilers.cli import main
from profilers.convert import OPSET, export_onnx

__all__ = ["OnnxRuntimeProfiler", "GPU_PROVIDERS"]

#: execution providers that run on an NVIDIA GPU and come with ``onnxruntime-gpu``
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


class OnnxRuntimeProfiler(Profiler):
    name = "onnxruntime"
    suffix = ".onnx"

    @classmethod
    def options_from_settings(cls, settings: dict) -> dict:
        return {"dynamo": True} if settings.get("exporter") == "dynamo" else {}

    def __init__(self, *a, dynamo: bool = False, **kw):
        super().__init__(*a, **kw)
        self.dynamo = dynamo

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
        want = list(self.device.providers) or ["CPUExecutionProvider"]
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
        return {"providers": list(self.device.providers) or ["CPUExecutionProvider"],
                "exporter": "dynamo" if self.dynamo else "torchscript", "opset": OPSET,
                "intra_op_num_threads": self.threads, "inter_op_num_threads": 1,
                "execution_mode": "ORT_SEQUENTIAL", "graph_optimization_level": "ORT_ENABLE_ALL",
                "timed": "InferenceSession.run"}

    def export(self, module, input_shape, path):
        return export_onnx(module, input_shape, path, dynamo=self.dynamo, quiet=self.quiet)

    def session(self, path: Path):
        ort = self._ort()
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(self.threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        return ort.InferenceSession(str(path), so, providers=self.providers())

    def runner(self, path, input_shape):
        sess = self.session(path)
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
        feed = {inp.name: x}
        run = sess.run
        return lambda: run(None, feed)


if __name__ == "__main__":
    raise SystemExit(main(OnnxRuntimeProfiler))
