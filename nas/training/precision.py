"""Numeric precision and memory layout of training steps.

``precision``: ``fp32``; ``bf16`` (autocast to bfloat16: on GPUs from Ampere on, and on CPUs with native
bf16 instructions, AVX-512 BF16 or AMX; elsewhere it runs, slower); ``fp16`` (autocast to float16 with
a gradient scaler, CUDA only); ``auto`` = bf16 on a CUDA device that supports it, fp32 otherwise.
Losses are always computed in float32.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from nas.core.errors import UserError

__all__ = ["PRECISIONS", "Precision", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """How a step computes: ``dtype`` None is plain fp32; ``scaler`` is True for fp16 (loss scaling)."""
    name: str
    device_type: str
    dtype: torch.dtype | None = None

    @property
    def scaler(self) -> bool:
        return self.dtype is torch.float16

    def autocast(self):
        """The autocast context of a forward pass (a no-op context in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> "torch.amp.GradScaler":
        return torch.amp.GradScaler(self.device_type, enabled=self.scaler)


def resolve_precision(precision: str, device: torch.device | str) -> Precision:
    """The :class:`Precision` that ``precision`` means on ``device``; :class:`UserError` if it cannot run
    there."""
    device = torch.device(device)
    kind = device.type
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        precision = "bf16" if kind == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return Precision("fp32", kind)
    if precision == "fp16" and kind != "cuda":
        raise UserError("fp16 training needs a CUDA device (loss scaling); use --precision bf16 or fp32 on a CPU")
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("this GPU has no bfloat16 support; use --precision fp16 or fp32")
    return Precision(precision, kind, torch.bfloat16 if precision == "bf16" else torch.float16)
