"""ImageNet-style image transforms written with PIL and torch alone.

Per image (run in the data-loader workers): :class:`TrainTransform` (random-resized crop, horizontal
flip, optional :class:`RandAugment`) and :class:`EvalTransform` (resize, centre crop), both from a PIL
image to a ``uint8`` 3 x S x S tensor. Every random choice comes from a :class:`random.Random` handed in
by the caller, so an image's augmentation is a function of where it falls in the training order.

Per batch (in the training process): :func:`normalize` (``uint8`` to the network's float input) and
:class:`Mixup` (mixup / cutmix with mixed one-hot targets, as in the EfficientFormerV2 recipe).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

from nas.data.datasets import MEAN, STD

__all__ = ["TrainTransform", "EvalTransform", "RandAugment", "Mixup", "normalize", "to_uint8_tensor",
           "random_resized_crop_box", "RANDAUG_OPS", "CROP_PCT"]

CROP_PCT = 0.95          # EfficientFormerV2's evaluation crop (timm's default_cfg)
FILL = (128, 128, 128)   # the normalisation mean: what geometric ops fill with


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a ``uint8`` 3 x H x W tensor."""
    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


def normalize(x: torch.Tensor) -> torch.Tensor:
    """``uint8`` B x 3 x H x W (on any device) -> the float input :func:`~nas.data.datasets.to_input` makes."""
    return x.float().mul_(1.0 / (255.0 * STD)).sub_(MEAN / STD)


def random_resized_crop_box(width: int, height: int, rng: random.Random, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of a crop covering ``scale`` of the area at an aspect ratio in
    ``ratio`` (log-uniform); ten tries, then the largest centred crop within ``ratio``."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = rng.randint(0, height - h)
            left = rng.randint(0, width - w)
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


# -- RandAugment ---------------------------------------------------------------------------------------
def _signed(v: float, rng: random.Random) -> float:
    return -v if rng.random() < 0.5 else v


def _affine(img, coeffs):
    return img.transform(img.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=FILL)


def _solarize_add(img, m, rng):
    add = int(m / 10 * 110)
    lut = [min(255, i + add) if i < 128 else i for i in range(256)] * len(img.getbands())
    return img.point(lut)


# name -> f(img, magnitude in [0, 10], rng): timm's "increasing" RandAugment set (rand-mX-mstdY-inc1)
RANDAUG_OPS = {
    "AutoContrast": lambda img, m, rng: ImageOps.autocontrast(img),
    "Equalize": lambda img, m, rng: ImageOps.equalize(img),
    "Invert": lambda img, m, rng: ImageOps.invert(img),
    "Rotate": lambda img, m, rng: img.rotate(_signed(m / 10 * 30, rng), resample=Image.BILINEAR, fillcolor=FILL),
    "Posterize": lambda img, m, rng: ImageOps.posterize(img, max(1, 4 - int(m / 10 * 4))),
    "Solarize": lambda img, m, rng: ImageOps.solarize(img, 256 - int(m / 10 * 256)),
    "SolarizeAdd": _solarize_add,
    "Color": lambda img, m, rng: ImageEnhance.Color(img).enhance(1 + _signed(m / 10 * 0.9, rng)),
    "Contrast": lambda img, m, rng: ImageEnhance.Contrast(img).enhance(1 + _signed(m / 10 * 0.9, rng)),
    "Brightness": lambda img, m, rng: ImageEnhance.Brightness(img).enhance(1 + _signed(m / 10 * 0.9, rng)),
    "Sharpness": lambda img, m, rng: ImageEnhance.Sharpness(img).enhance(1 + _signed(m / 10 * 0.9, rng)),
    "ShearX": lambda img, m, rng: _affine(img, (1, _signed(m / 10 * 0.3, rng), 0, 0, 1, 0)),
    "ShearY": lambda img, m, rng: _affine(img, (1, 0, 0, _signed(m / 10 * 0.3, rng), 1, 0)),
    "TranslateX": lambda img, m, rng: _affine(img, (1, 0, _signed(m / 10 * 0.45, rng) * img.size[0], 0, 1, 0)),
    "TranslateY": lambda img, m, rng: _affine(img, (1, 0, 0, 0, 1, _signed(m / 10 * 0.45, rng) * img.size[1])),
}


@dataclass(frozen=True)
class RandAugment:
    """``num_ops`` operations drawn (with replacement) from :data:`RANDAUG_OPS`, each applied with
    probability ``prob`` at magnitude ``N(magnitude, magnitude_std)`` clipped to [0, 10]: the
    ``rand-m9-mstd0.5-inc1`` policy of the EfficientFormerV2 recipe is ``RandAugment(9)``."""
    magnitude: float = 9
    num_ops: int = 2
    magnitude_std: float = 0.5
    prob: float = 0.5

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        names = list(RANDAUG_OPS)
        for _ in range(self.num_ops):
            name = rng.choice(names)
            if rng.random() > self.prob:
                continue
            m = self.magnitude
            if self.magnitude_std > 0:
                m = rng.gauss(m, self.magnitude_std)
            img = RANDAUG_OPS[name](img, min(10.0, max(0.0, m)), rng)
        return img


# -- per-image transforms --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainTransform:
    """Random-resized crop to ``size`` (area ``scale``, aspect ``ratio``), horizontal flip with
    probability ``hflip``, then ``randaug`` if given; PIL image -> ``uint8`` 3 x size x size."""
    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    randaug: RandAugment | None = None

    def __call__(self, img: Image.Image, rng: random.Random) -> torch.Tensor:
        box = random_resized_crop_box(img.width, img.height, rng, self.scale, self.ratio)
        img = img.resize((self.size, self.size), Image.BILINEAR, box=box)
        if rng.random() < self.hflip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if self.randaug is not None:
            img = self.randaug(img, rng)
        return to_uint8_tensor(img)


@dataclass(frozen=True)
class EvalTransform:
    """Resize the shorter side to ``size / crop_pct`` and take the centre ``size`` x ``size`` (done as
    one resampling of the matching box of the original); PIL image -> ``uint8`` 3 x size x size."""
    size: int
    crop_pct: float = CROP_PCT

    def __call__(self, img: Image.Image, rng: random.Random | None = None) -> torch.Tensor:
        w, h = img.size
        side = min(w, h) * self.crop_pct          # the part of the shorter side the crop keeps
        left, top = (w - side) / 2, (h - side) / 2
        img = img.resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + side, top + side))
        return to_uint8_tensor(img)


# -- per-batch ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mixup:
    """Batch-level mixup (``mixup`` = Beta alpha) and cutmix (``cutmix`` = Beta alpha); with both on, each
    batch uses one of them (cutmix with probability ``switch_prob``). Images are mixed with the batch
    reversed, targets become the mixed one-hot distributions (label smoothing is left to the loss).
    The EfficientFormerV2 recipe: ``Mixup(0.8, 1.0)``. ``rng`` makes the draw reproducible."""
    mixup: float = 0.0
    cutmix: float = 0.0
    switch_prob: float = 0.5

    @property
    def active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: float B x C x H x W, ``y``: int64 B -> mixed ``x`` (new tensor) and float B x num_classes."""
        onehot = F.one_hot(y, num_classes).to(x.dtype if x.is_floating_point() else torch.float32)
        if not self.active:
            return x, onehot
        use_cutmix = self.cutmix > 0 and (self.mixup <= 0 or rng.random() < self.switch_prob)
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(rng.beta(alpha, alpha))
        other = x.flip(0)
        if use_cutmix:
            H, W = x.shape[-2:]
            cut = math.sqrt(1.0 - lam)
            ch, cw = int(H * cut), int(W * cut)
            cy, cx = int(rng.integers(0, H)), int(rng.integers(0, W))
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, H)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, W)
            x = x.clone()
            x[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)
        else:
            x = x * lam + other * (1.0 - lam)
        return x, onehot * lam + onehot.flip(0) * (1.0 - lam)
