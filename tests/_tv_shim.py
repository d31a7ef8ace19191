"""Let PyPI's CUDA-linked torchvision import beside CPU-only torch (timm imports torchvision).

torchvision registers fake kernels for ``torchvision::nms``; with CPU torch that operator was never
defined, so importing torchvision raises. Defining the schemas first lets the import succeed; the
compiled ops (nms, roi_align) stay unavailable, which timm's model code does not need.
"""
import torch

try:
    torch.ops.torchvision.nms
except (AttributeError, RuntimeError):
    _lib = torch.library.Library("torchvision", "DEF")
    _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
