"""Conversion of a PyTorch module to each runtime's format, one function per format.

* :func:`export_onnx`: ONNX, TorchScript exporter at opset 20 (:data:`OPSET`), which writes GELU as one
  ``Gelu`` op (the dynamo exporter's default opset 18 leaves Erf that ONNX Runtime does not fuse, ~20%
  slower FFNs) and is 10-50x faster than the dynamo exporter. Used for ONNX Runtime and TensorRT.
* :func:`export_tflite`: a ``.tflite`` flatbuffer with litert-torch (fp32, NCHW in and out as in torch).
* :func:`export_coreml`: an mlprogram ``.mlpackage`` with coremltools through ``torch.export``.

Every file has one input named ``input`` (fp32, batch 1) and one output named ``output``. The converters'
packages are imported when a conversion first needs them; a missing one is a
:class:`~profilers.runtimes.ProfilerUnavailable` that names what to install. :func:`quiet_output` silences
what converters print from C++.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from profilers.runtimes import ProfilerUnavailable

__all__ = ["OPSET", "export_onnx", "export_tflite", "export_coreml", "import_coremltools", "import_litert_torch",
           "quiet_output"]

log = logging.getLogger(__name__)

#: the ONNX opset of every ONNX export
OPSET = 20


@contextlib.contextmanager
def quiet_output(enabled: bool = True):
    """Silence stdout/stderr at the file-descriptor level (converters print from C++); on error, the end
    of the captured text is logged as a warning so nothing is lost."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if not ok:
                tmp.seek(0)
                tail = tmp.read()[-4000:].decode(errors="replace")
                if tail.strip():
                    log.warning("converter output before the error:\n%s", tail.rstrip())


# ----------------------------------------------------------------------------------------------
# ONNX
# ----------------------------------------------------------------------------------------------
def export_onnx(module: torch.nn.Module, input_shape: tuple, path: Path, opset: int = OPSET,
                dynamo: bool = False, quiet: bool = True) -> Path:
    """Export ``module`` to ONNX with one input ``input`` and one output ``output``."""
    x = torch.randn(*input_shape)
    path = Path(path)
    try:
        with warnings.catch_warnings(), quiet_output(quiet), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (x,), str(path), dynamo=dynamo, opset_version=opset,
                              input_names=["input"], output_names=["output"])
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in ("onnx", "onnxscript"):
            raise ProfilerUnavailable(f"{e.name} is not installed, which the ONNX export needs: "
                                      f"pip install onnx onnxscript") from e
        raise
    return path


# ----------------------------------------------------------------------------------------------
# TFLite / LiteRT
# ----------------------------------------------------------------------------------------------
def import_litert_torch(quiet: bool = True):
    """The ``litert_torch`` module, with its progress output turned off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with quiet_output(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import litert_torch
            from litert_torch import _config
    except ImportError:
        raise ProfilerUnavailable("litert-torch is not installed: pip install 'effv2-nas[tflite-convert]' "
                                  "(litert-torch==0.10.0)") from None
    try:
        _config.config.show_progress = False
    except Exception:                               # pragma: no cover - older/newer litert-torch
        pass
    return litert_torch


def export_tflite(module: torch.nn.Module, input_shape: tuple, path: Path, quiet: bool = True) -> Path:
    """Convert ``module`` to a ``.tflite`` flatbuffer with litert-torch (fp32)."""
    lt = import_litert_torch(quiet)
    x = torch.randn(*input_shape)
    with quiet_output(quiet), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        lt.convert(module.eval(), (x,)).export(str(path))
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Core ML
# ----------------------------------------------------------------------------------------------
def import_coremltools(quiet: bool = True):
    """The ``coremltools`` module."""
    try:
        with quiet_output(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import coremltools as ct
    except ImportError:
        raise ProfilerUnavailable("coremltools is not installed: pip install 'effv2-nas[coreml]' "
                                  "(coremltools==9.0, numpy<2.4)") from None
    return ct


def export_coreml(module: torch.nn.Module, input_shape: tuple, path: Path, compute_units: str = "ALL",
                  precision: str = "fp16", target: str = "iOS16", quiet: bool = True) -> Path:
    """Convert ``module`` to an mlprogram package at ``path`` (input ``input`` fp32, output ``output``):
    ``ct.convert(exported_program, convert_to="mlprogram", compute_precision=<precision>,
    compute_units=<compute_units>, minimum_deployment_target=<target>)``."""
    ct = import_coremltools(quiet)
    x = torch.randn(*input_shape)
    prec = ct.precision.FLOAT16 if str(precision).lower() in ("fp16", "float16") else ct.precision.FLOAT32
    with quiet_output(quiet), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        ep = torch.export.export(module.eval(), (x,)).run_decompositions({})
        ml = ct.convert(ep, convert_to="mlprogram", compute_precision=prec,
                        compute_units=ct.ComputeUnit[compute_units],
                        minimum_deployment_target=getattr(ct.target, target),
                        inputs=[ct.TensorType(name="input", shape=tuple(input_shape), dtype=np.float32)],
                        outputs=[ct.TensorType(name="output", dtype=np.float32)])
        ml.save(str(path))
    return Path(path)
