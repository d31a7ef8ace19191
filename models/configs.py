"""EfficientFormerV2's configurations as plain data: the published variants, the fixed attention
hyper-parameters, and the block and network configurations every network is built from.

Nothing here needs torch, so the search-space description (:mod:`nas.space`) and the latency predictor
read the variants and configurations without loading it; :mod:`models.efficientformer_v2` builds the
networks from them (and re-exports every name below).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "VARIANTS", "ATTN_KEY_DIM", "ATTN_HEADS", "ATTN_RATIO", "DOWN_KEY_DIM", "DOWN_HEADS", "DOWN_RATIO",
    "ATTN_STAGES", "STRIDE_ATTN_STAGE", "ATTN_DOWNSAMPLE_STAGE", "BlockConfig", "NetConfig", "variant_config",
    "stage_resolutions", "check_img_size", "attention_resolution",
]

# ----------------------------------------------------------------------------------------------
# Variants as data (official configs, snap-research/EfficientFormer models/efficientformer_v2.py)
# ----------------------------------------------------------------------------------------------
VARIANTS: dict[str, dict] = {
    "s0": dict(widths=(32, 48, 96, 176), depths=(2, 2, 6, 4), vit_num=2, drop_path_rate=0.0,
               ratios=((4, 4), (4, 4), (4, 3, 3, 3, 4, 4), (4, 3, 3, 4))),
    "s1": dict(widths=(32, 48, 120, 224), depths=(3, 3, 9, 6), vit_num=2, drop_path_rate=0.0,
               ratios=((4, 4, 4), (4, 4, 4), (4, 4, 3, 3, 3, 3, 4, 4, 4), (4, 4, 3, 3, 4, 4))),
    "s2": dict(widths=(32, 64, 144, 288), depths=(4, 4, 12, 8), vit_num=4, drop_path_rate=0.02,
               ratios=((4,) * 4, (4,) * 4, (4, 4, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4),
                       (4, 4, 3, 3, 3, 3, 4, 4))),
    "l": dict(widths=(40, 80, 192, 384), depths=(5, 5, 15, 10), vit_num=6, drop_path_rate=0.1,
              ratios=((4,) * 5, (4,) * 5, (4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4),
                      (4, 4, 4, 3, 3, 3, 3, 4, 4, 4))),
}

# Fixed attention hyper-parameters (identical in every variant).
ATTN_KEY_DIM, ATTN_HEADS, ATTN_RATIO = 32, 8, 4
DOWN_KEY_DIM, DOWN_HEADS, DOWN_RATIO = 16, 8, 4
ATTN_STAGES = (2, 3)          # stages (0-based) whose blocks may carry attention
STRIDE_ATTN_STAGE = 2         # stage whose attention runs on a stride-2 grid
ATTN_DOWNSAMPLE_STAGE = 3     # stage whose downsample is dual-path (conv + attention)


@dataclass(frozen=True)
class BlockConfig:
    """One block: a unified FFN with expansion ``ratio``; ``attn`` adds an Attention4D mixer first."""
    ratio: float = 4.0
    attn: bool = False

    def hidden(self, width: int) -> int:
        return int(width * self.ratio)


@dataclass(frozen=True)
class NetConfig:
    """A concrete network: four stage widths and the blocks of each stage (dropped blocks absent)."""
    widths: tuple[int, ...]
    blocks: tuple[tuple[BlockConfig, ...], ...]
    num_classes: int = 1000
    in_chans: int = 3
    distillation: bool = True

    def __post_init__(self):
        if len(self.widths) != 4 or len(self.blocks) != 4:
            raise ValueError(f"EfficientFormerV2 has 4 stages; got {len(self.widths)} widths and "
                             f"{len(self.blocks)} block lists")
        for s, blocks in enumerate(self.blocks):
            for b in blocks:
                if b.attn and s not in ATTN_STAGES:
                    raise ValueError(f"stage {s + 1} cannot carry attention (only stages 3 and 4 can)")

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(b) for b in self.blocks)


def variant_config(name: str, num_classes: int = 1000, **kw) -> NetConfig:
    """The :class:`NetConfig` of a published variant (``s0``, ``s1``, ``s2``, ``l``)."""
    key = name.lower().replace("efficientformerv2_", "")
    if key not in VARIANTS:
        raise KeyError(f"unknown EfficientFormerV2 variant {name!r}; choose from {sorted(VARIANTS)}")
    v = VARIANTS[key]
    blocks = []
    for s, (depth, ratios) in enumerate(zip(v["depths"], v["ratios"])):
        blocks.append(tuple(
            BlockConfig(float(r), attn=(s in ATTN_STAGES and j >= depth - v["vit_num"]))
            for j, r in enumerate(ratios)))
    return NetConfig(tuple(v["widths"]), tuple(blocks), num_classes=num_classes, **kw)


def stage_resolutions(img_size: int) -> tuple[int, int, int, int]:
    """Feature-map side of each stage for a square input (the stem divides by 4, then /2 per stage)."""
    r = math.ceil(img_size / 4)
    out = [r]
    for _ in range(3):
        r = math.ceil(r / 2)
        out.append(r)
    return tuple(out)


def check_img_size(img_size: int) -> int:
    """Stride attention halves then doubles the stage-3 grid, so that grid needs an even side."""
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 32 or img_size % 32:
        raise ValueError(f"img_size must be a positive multiple of 32 (64, 128, 224, ...), got {img_size!r}")
    return img_size


def attention_resolution(res: int, stride: int | None) -> int:
    return math.ceil(res / stride) if stride else res
