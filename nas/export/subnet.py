"""Export a searched architecture: a standalone PyTorch model holding the supernet's weights, and ONNX,
TFLite and Core ML files made from it, each loaded back and checked.

    from nas.export.subnet import export_subnet, load_exported
    report = export_subnet(supernet, arch, "runs/search/out/export", calib_batches=evaluator.calib)
    model = load_exported("runs/search/out/export/model.pt")      # an EfficientFormerV2, eval mode

Checks: the reloaded PyTorch model and the ONNX file (run by ONNX Runtime) and the TFLite file (run by
the LiteRT interpreter) must reproduce the exported model's logits on a fixed random input; the Core ML
package is loaded and its input/output description checked everywhere, and its prediction compared
only where Core ML can predict (macOS).
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from models.efficientformer_v2 import EfficientFormerV2
from nas.core.files import atomic_write_text
from profilers.devices import Device
from profilers.formats.convert import export_coreml, export_onnx, export_tflite
from profilers.plugin.base import ProfilerUnavailable
from profilers.runtimes import get_profiler
from nas.supernet.checkpoint import safe_load
from nas.supernet.evaluate import recalibrate_bn
from nas.space.arch import Arch
from nas.supernet.supernet import SlimmableSupernet

__all__ = ["FORMATS", "export_subnet", "load_exported", "ExportError"]

FORMATS = ("pytorch", "onnx", "tflite", "coreml")


class ExportError(RuntimeError):
    pass


def extract_subnet(supernet: SlimmableSupernet, arch: Arch, calib_batches: Iterable[torch.Tensor] | None = None
                   ) -> EfficientFormerV2:
    """A standalone network for ``arch``; its BatchNorms recalibrated on ``calib_batches`` first (as the
    search evaluated it) when given."""
    supernet.set_active(arch)
    if calib_batches is not None:
        recalibrate_bn(supernet, calib_batches)
    return supernet.extract(arch).eval()


def save_pytorch(model: EfficientFormerV2, arch: Arch, path: str | Path, **meta) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": arch.to_dict(), "img_size": model.img_size, "num_classes": model.num_classes,
                "distillation": model.head_dist is not None, "state_dict": model.state_dict(), **meta}, path)
    return path


def load_exported(path: str | Path) -> EfficientFormerV2:
    """The model written by :func:`export_subnet` (``model.pt``), rebuilt from its arch and weights."""
    ck = safe_load(path, "exported model")
    arch = Arch.from_dict(ck["arch"])
    net = EfficientFormerV2(arch.net_config(ck["num_classes"], ck.get("distillation", True)), img_size=ck["img_size"])
    net.load_state_dict(ck["state_dict"])
    return net.eval()


def _diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def _check_by(runtime: str, device: Device | str = "local-cpu"):
    """An export check that runs the file with ``runtime``'s plugin on ``device`` (this machine's CPU):
    the one place that loads and runs a runtime's files, for the profilers and for these checks alike."""
    def check(path: Path, x: np.ndarray, ref: np.ndarray) -> dict:
        prof = get_profiler(runtime)(device)
        out = prof.load(path, tuple(x.shape)).predict(x)
        return {"runtime": f"{runtime} {prof.runtime_version()}", "max_abs_diff": _diff(out, ref)}
    return check


#: Core ML predicts only on macOS: there, a Mac's CPU, GPU and Neural Engine run the package
THIS_MAC = Device("this-mac", ("coreml",), precision="fp16")


def _check_coreml(path: Path, x: np.ndarray, ref: np.ndarray) -> dict:
    import coremltools as ct
    spec = ct.utils.load_spec(str(path))
    inputs = {i.name: list(i.type.multiArrayType.shape) for i in spec.description.input}
    outputs = [o.name for o in spec.description.output]
    if list(inputs.values()) != [list(x.shape)] or len(outputs) != 1:
        raise ExportError(f"Core ML package {path} has inputs {inputs} and outputs {outputs}; expected one "
                          f"input of shape {list(x.shape)} and one output")
    info = {"runtime": f"coremltools {ct.__version__}", "inputs": inputs, "outputs": outputs}
    if platform.system() == "Darwin":
        info.update(_check_by("coreml", THIS_MAC)(path, x, ref))
    else:
        info["note"] = "loaded and described; Core ML prediction needs macOS, so outputs were not compared here"
    return info


def export_subnet(supernet: SlimmableSupernet, arch: Arch, out_dir: str | Path,
                  calib_batches: Iterable[torch.Tensor] | None = None, formats: Sequence[str] = FORMATS,
                  check: bool = True, seed: int = 0, quiet: bool = True) -> dict:
    """Write ``model.pt`` (always) and the requested formats of ``arch`` to ``out_dir``; load each back
    and compare it with the PyTorch model on one fixed random input. Returns (and writes as
    ``export.json``) a report per format: file, size, and the check (max |Δlogit|, or an error).

    Tolerances: 1e-4 for the PyTorch reload and ONNX Runtime, 5e-3 relative to the logit range for
    LiteRT (XNNPACK reorders float sums); a format whose converter is not installed is reported with the
    error and the install hint, and the others still run.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown export format(s) {bad}; choose from {list(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = extract_subnet(supernet, arch, calib_batches)
    shape = (1, 3, model.img_size, model.img_size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        ref = model(x).numpy()
    xn = x.numpy()
    scale = float(np.max(np.abs(ref))) or 1.0
    report: dict = {"arch": arch.to_dict(), "input_shape": list(shape), "formats": {}}

    def record(fmt, path, checker, tol):
        entry = {"file": str(path), "bytes": Path(path).stat().st_size if Path(path).is_file()
                 else sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())}
        if check:
            entry.update(checker(Path(path), xn, ref))
            if "max_abs_diff" in entry:
                entry["ok"] = entry["max_abs_diff"] <= tol
                if not entry["ok"]:
                    raise ExportError(f"{fmt} export {path} differs from PyTorch by {entry['max_abs_diff']:.3g} "
                                      f"(tolerance {tol:.3g})")
        report["formats"][fmt] = entry

    pt = save_pytorch(model, arch, out / "model.pt")

    def check_pt(path, xn, ref):
        with torch.inference_mode():
            return {"runtime": f"torch {torch.__version__}",
                    "max_abs_diff": _diff(load_exported(path)(torch.from_numpy(xn)).numpy(), ref)}

    record("pytorch", pt, check_pt, 1e-4 * max(1.0, scale))
    for fmt in formats:
        if fmt == "pytorch":
            continue
        try:
            if fmt == "onnx":
                path = export_onnx(model, shape, out / "model.onnx")
                record(fmt, path, _check_by("onnxruntime"), 1e-4 * max(1.0, scale))
            elif fmt == "tflite":
                path = export_tflite(model, shape, out / "model.tflite", quiet=quiet)
                record(fmt, path, _check_by("tflite"), 5e-3 * scale)
            elif fmt == "coreml":
                path = export_coreml(model, shape, out / "model.mlpackage", quiet=quiet)
                record(fmt, path, _check_coreml, 5e-2 * scale)      # fp16 compute
        except (ImportError, ProfilerUnavailable) as e:
            report["formats"][fmt] = {"error": f"{e} (install the extras: pip install -e '.[all]')"}
    atomic_write_text(out / "export.json", json.dumps(report, indent=1))
    return report
