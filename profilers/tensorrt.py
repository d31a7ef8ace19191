"""TensorRT profiler: ONNX export, engine build and timing with ``trtexec``.

Each unit is exported to ONNX (:func:`profilers.formats.convert.export_onnx`, as for ONNX Runtime) and timed with
``trtexec --onnx=.. --shapes=input:1xCxHxW [--fp16] --noDataTransfers --useCudaGraph --useSpinWait``,
once per round. The table takes trtexec's **GPU Compute Time** summary line
(``min = .. ms, max = .., mean = .., median = .., percentile(90%) = .., ...``): the median of the round
medians, p90 as the median of the round p90s, the mean over all iterations; trtexec prints no p10 and no
std, so those stay empty. Needs ``trtexec`` on PATH (or ``--trtexec PATH``): it ships with TensorRT
(NVIDIA's tarball, container or ``pip install tensorrt`` from pypi.nvidia.com).

    python -m profilers.tensorrt --device a100
"""
from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.core.values import FLAG, setting

from profilers.formats.convert import OPSET, export_onnx
from profilers.plugin.base import Profiler, ProfilerUnavailable
from profilers.plugin.cli import main
from profilers.plugin.options import RuntimeOptions
from profilers.runtimes import register_runtime
from profilers.timing.protocol import LatencyStats

__all__ = ["TensorRTProfiler", "TensorRTOptions", "parse_trtexec", "TrtexecError", "trtexec_stats"]

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_METRIC_RE = re.compile(r"(GPU Compute Time|Latency|Enqueue Time|H2D Latency|D2H Latency):\s*(min\b.*)")
_ITEM_RE = re.compile(rf"(min|max|mean|median|percentile\(\d+(?:\.\d+)?%\))\s*=?\s*{_NUM}\s*ms")
_TOTAL_RE = re.compile(rf"Total GPU Compute Time:\s*{_NUM}\s*s")
_WALL_RE = re.compile(rf"Total Host Walltime:\s*{_NUM}\s*s")
_CV_RE = re.compile(rf"coefficient of variance\s*=\s*{_NUM}\s*%")
_THROUGHPUT_RE = re.compile(rf"Throughput:\s*{_NUM}\s*qps")


class TrtexecError(RuntimeError):
    """trtexec output without a performance summary (the message quotes its end)."""


def parse_trtexec(text: str) -> dict:
    """Parse trtexec's performance summary.

    Returns ``{"GPU Compute Time": {"min": .., "max": .., "mean": .., "median": .., "p90": .., "p95": ..,
    "p99": ..}, "Latency": {...}, ..., "total_gpu_compute_s", "total_host_walltime_s", "cv_pct",
    "throughput_qps"}`` (times in ms; percentile keys as ``p90`` etc.). The last summary wins.
    """
    out: dict = {}
    for m in _METRIC_RE.finditer(text):
        items = {}
        for k, v in _ITEM_RE.findall(m.group(2)):
            if k.startswith("percentile"):
                q = float(k[len("percentile("):-2])
                k = "p" + (str(int(q)) if q.is_integer() else str(q))
            items[k] = float(v)
        out[m.group(1)] = items
    for key, rx in (("total_gpu_compute_s", _TOTAL_RE), ("total_host_walltime_s", _WALL_RE),
                    ("cv_pct", _CV_RE), ("throughput_qps", _THROUGHPUT_RE)):
        found = rx.findall(text)
        out[key] = float(found[-1]) if found else None
    g = out.get("GPU Compute Time")
    if not g or "median" not in g or "mean" not in g:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise TrtexecError(f"trtexec printed no 'GPU Compute Time' summary; its output ended with:\n{tail}")
    return out


def trtexec_stats(parsed: list[dict]) -> LatencyStats:
    """Table statistics (ms) from one or more parsed trtexec runs (rounds)."""
    g = [p["GPU Compute Time"] for p in parsed]
    med = np.array([x["median"] for x in g])
    mean = np.array([x["mean"] for x in g])
    counts = np.array([max(1, round(p["total_gpu_compute_s"] * 1000.0 / x["mean"])) if p.get("total_gpu_compute_s")
                       else 1 for p, x in zip(parsed, g)], float)
    p90 = [x.get("p90") for x in g]
    p90_ms = float(np.median([v for v in p90 if v is not None])) if any(v is not None for v in p90) else float("nan")
    wmean = float((mean * counts).sum() / counts.sum())
    cvs = [p.get("cv_pct") for p in parsed]
    std = float(np.median([c / 100.0 * m for c, m in zip(cvs, mean) if c is not None])) \
        if any(c is not None for c in cvs) else float("nan")
    cv = float(np.std(med, ddof=1) / np.mean(med)) if len(med) > 1 else float("nan")
    return LatencyStats(float(np.median(med)), float("nan"), p90_ms, wmean, std, cv, int(counts.sum()))


@dataclass(frozen=True)
class TensorRTOptions(RuntimeOptions):
    """trtexec's timing flags (fp16 follows the device's precision)."""
    cuda_graph: bool = setting(True, FLAG, help="--useCudaGraph: launch the engine from a CUDA graph")
    spin_wait: bool = setting(True, FLAG, help="--useSpinWait: spin on the GPU's completion (steadier times)")
    data_transfers: bool = setting(False, FLAG, help="time the input and output copies too (no --noDataTransfers)")


@register_runtime
class TensorRTProfiler(Profiler):
    name = "tensorrt"
    aliases = ("trt",)
    suffix = ".onnx"
    Options = TensorRTOptions

    def __init__(self, *a, trtexec: str | None = None, **kw):
        super().__init__(*a, **kw)
        self.trtexec = trtexec or self.device.connection.get("trtexec", "trtexec")

    @classmethod
    def add_arguments(cls, ap):
        ap.add_argument("--trtexec", default=None, help="path to the trtexec binary (default: trtexec on PATH)")

    @classmethod
    def arguments(cls, args):
        return {"trtexec": args.trtexec}

    def _which(self) -> str | None:
        return shutil.which(self.trtexec) or (self.trtexec if Path(self.trtexec).is_file() else None)

    def check_ready(self) -> None:
        if self._which():
            return
        try:
            importlib.import_module("tensorrt")
            has_py = True
        except ImportError:
            has_py = False
        if has_py:
            raise ProfilerUnavailable(
                f"trtexec not found ({self.trtexec!r}); the tensorrt Python package is installed but this profiler "
                f"times engines with trtexec: put TensorRT's bin/ (which holds trtexec) on PATH or pass --trtexec PATH")
        raise ProfilerUnavailable(
            f"neither trtexec ({self.trtexec!r}) nor the tensorrt Python package is available: install TensorRT "
            f"on the GPU machine (NVIDIA's TensorRT tarball or container, which ship bin/trtexec, or "
            f"`pip install tensorrt` from pypi.nvidia.com) and put trtexec on PATH or pass --trtexec PATH")

    def runtime_version(self) -> str:
        exe = self._which()
        if not exe:
            return "unknown"
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
            m = re.search(r"TensorRT\.trtexec \[TensorRT v(\d+)\]|TensorRT version:?\s*([\d.]+)", out.stdout + out.stderr)
            return f"TensorRT {next(g for g in m.groups() if g)}" if m else "trtexec"
        except Exception:
            return "trtexec"

    def settings(self) -> dict:
        return {**super().settings(), "tool": "trtexec", "flags": self.flags(), "metric": "GPU Compute Time",
                "exporter": "torchscript", "opset": OPSET}

    def flags(self) -> list[str]:
        o = self.options
        f = (["--noDataTransfers"] if not o.data_transfers else []) + (["--useCudaGraph"] if o.cuda_graph else []) \
            + (["--useSpinWait"] if o.spin_wait else [])
        if str(self.device.precision).lower() in ("fp16", "float16"):
            f.insert(0, "--fp16")
        return f

    def export(self, module, input_shape, path):
        return export_onnx(module, input_shape, path, quiet=self.quiet)

    def command(self, path: Path, input_shape: tuple) -> list[str]:
        p = self.protocol
        shape = "x".join(str(int(s)) for s in input_shape)
        return [self._which() or self.trtexec, f"--onnx={path}", f"--shapes=input:{shape}", *self.flags(),
                f"--warmUp={max(200, 20 * p.warmup)}", f"--iterations={p.runs or 500}", "--duration=0"]

    def measure(self, path, input_shape) -> LatencyStats:
        self.check_ready()
        parsed = []
        for _ in range(max(1, self.protocol.rounds)):
            r = subprocess.run(self.command(path, input_shape), capture_output=True, text=True)
            if r.returncode != 0:
                raise TrtexecError(f"trtexec failed ({r.returncode}) on {path}:\n{(r.stdout + r.stderr)[-2000:]}")
            parsed.append(parse_trtexec(r.stdout + r.stderr))
        return trtexec_stats(parsed)


if __name__ == "__main__":
    raise SystemExit(main(TensorRTProfiler))
