"""Latency units: the blocks a lookup table measures, enumerated from the search space.

Every network of the space is a sequence of units -- ``stem``, ``downsample`` (plain or dual-path
attention), ``attn`` (an Attention4D mixer with its residual and layer scale), ``ffn`` (a unified FFN
with its residual and layer scale) and ``head`` -- so a table holding every unit of a space prices every
architecture of it. Each :class:`BlockSpec` has a stable string key (the table's primary key) and an
analytic parameter and MAC count. This module is plain data (no torch): the unit as an ``nn.Module``,
built from the same modules as :class:`models.EfficientFormerV2`, is
:func:`nas.space.modules.build_unit`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Iterable

from models.configs import (ATTN_DOWNSAMPLE_STAGE, ATTN_HEADS, ATTN_KEY_DIM, ATTN_RATIO, DOWN_HEADS, DOWN_KEY_DIM,
                            DOWN_RATIO, STRIDE_ATTN_STAGE, BlockConfig, check_img_size, stage_resolutions)

from nas.space.arch import NUM_STAGES, Arch
from nas.space.spaces import SearchSpace

__all__ = ["BlockSpec", "arch_units", "space_units", "unit_grid", "probe_units", "KINDS"]

KINDS = ("stem", "downsample", "attn", "ffn", "head")


@dataclass(frozen=True)
class BlockSpec:
    """One latency unit. ``res`` is the input side; ``stride`` the unit's spatial stride (the stem's 4,
    a downsample's 2, 2 for stage-3 stride attention); ``hidden`` the FFN hidden width; ``attn`` whether a
    downsample has the attention path; ``classes`` the head's number of classes."""
    kind: str
    cin: int
    cout: int
    res: int
    stride: int = 1
    hidden: int = 0
    attn: bool = False
    classes: int = 0

    @property
    def key(self) -> str:
        k = self.kind
        if k == "stem":
            return f"stem_c{self.cin}-{self.cout}_r{self.res}"
        if k == "downsample":
            return f"{'downattn' if self.attn else 'down'}_c{self.cin}-{self.cout}_r{self.res}"
        if k == "ffn":
            return f"ffn_c{self.cin}_h{self.hidden}_r{self.res}"
        if k == "attn":
            return f"attn_c{self.cin}_r{self.res}_s{self.stride}"
        if k == "head":
            return f"head_c{self.cin}_n{self.classes}_r{self.res}"
        raise ValueError(f"unknown unit kind {k!r}")

    def to_dict(self) -> dict:
        return {"key": self.key, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "BlockSpec":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        spec = cls(**{k: (bool(v) if k == "attn" else str(v) if k == "kind" else int(v)) for k, v in kw.items()})
        return spec

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.cin, self.res, self.res)

    # -- analytic cost --------------------------------------------------------------------------
    @property
    def params(self) -> int:
        return _params(self)

    @property
    def macs(self) -> int:
        return _macs(self)


# ----------------------------------------------------------------------------------------------
# Enumeration
# ----------------------------------------------------------------------------------------------
def arch_units(arch: Arch, img_size: int = 224, num_classes: int = 1000) -> list[BlockSpec]:
    """The units of ``arch`` in network order (what its latency is the sum of)."""
    check_img_size(img_size)
    res = stage_resolutions(img_size)
    w = arch.widths
    units = [BlockSpec("stem", 3, w[0], img_size, stride=4)]
    for s in range(4):
        if s > 0:
            units.append(BlockSpec("downsample", w[s - 1], w[s], res[s - 1], stride=2,
                                   attn=(s == ATTN_DOWNSAMPLE_STAGE)))
        for b in arch.blocks[s]:
            if not b.keep:
                continue
            if b.attn:
                units.append(BlockSpec("attn", w[s], w[s], res[s], stride=2 if s == STRIDE_ATTN_STAGE else 1))
            units.append(BlockSpec("ffn", w[s], w[s], res[s], hidden=BlockConfig(b.ratio).hidden(w[s])))
    units.append(BlockSpec("head", w[3], num_classes, res[3], classes=num_classes))
    return units


def unit_grid(space: SearchSpace, img_size: int = 224, num_classes: int = 1000) -> dict[tuple, BlockSpec]:
    """Every unit of ``space`` by its position in the space's choices: ``("stem", w)``, ``("head", w)``,
    ``("down", stage, w_prev, w)``, ``("attn", stage, w)``, ``("ffn", stage, w, r)``, where ``w`` and ``r``
    index ``space.widths[stage]`` and ``space.ratios`` (the predictor's lookup arrays follow it)."""
    check_img_size(img_size)
    res = stage_resolutions(img_size)
    W = space.widths
    grid: dict[tuple, BlockSpec] = {}
    for i, w in enumerate(W[0]):
        grid[("stem", i)] = BlockSpec("stem", 3, w, img_size, stride=4)
    for s in range(NUM_STAGES):
        for i, w in enumerate(W[s]):
            if s > 0:
                for ip, wp in enumerate(W[s - 1]):
                    grid[("down", s, ip, i)] = BlockSpec("downsample", wp, w, res[s - 1], stride=2,
                                                         attn=(s == ATTN_DOWNSAMPLE_STAGE))
            if s in space.attn_stages:
                grid[("attn", s, i)] = BlockSpec("attn", w, w, res[s], stride=2 if s == STRIDE_ATTN_STAGE else 1)
            for ir, r in enumerate(space.ratios):
                grid[("ffn", s, i, ir)] = BlockSpec("ffn", w, w, res[s], hidden=BlockConfig(r).hidden(w))
    for i, w in enumerate(W[3]):
        grid[("head", i)] = BlockSpec("head", w, num_classes, res[3], classes=num_classes)
    return grid


def space_units(space: SearchSpace, img_size: int = 224, num_classes: int = 1000) -> list[BlockSpec]:
    """Every distinct unit any architecture of ``space`` can contain, sorted by kind then key."""
    out: dict[str, BlockSpec] = {}
    for spec in unit_grid(space, img_size, num_classes).values():
        out.setdefault(spec.key, spec)
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(out.values(), key=lambda b: (order[b.kind], b.key))


def probe_units() -> list[BlockSpec]:
    """The probe: three fixed units, independent of any space or resolution, whose latencies are recorded
    with every table and re-measured in seconds to tell whether (and by how much) a host differs from the
    one the table was measured on (see :mod:`profilers.timing.probe`). One of each kind of work: an FFN (1x1 and
    depth-wise convolutions), an attention unit (matrix products, softmax, the bias gather) and a stem
    at 224 px (strided 3x3 convolutions over large activations), since machines differ non-uniformly."""
    return [BlockSpec("ffn", 96, 96, 14, hidden=384), BlockSpec("attn", 128, 128, 7),
            BlockSpec("stem", 3, 32, 224, stride=4)]


# ----------------------------------------------------------------------------------------------
# Analytic cost (parameters include BN and layer scale, as nn.Module.parameters() counts them;
# MACs count convolutions, linear layers and the attention matrix products; BN is fused at deploy)
# ----------------------------------------------------------------------------------------------
def _cn_params(cin, cout, k=1, groups=1):
    return cin // groups * cout * k * k + cout + 2 * cout


def _cn_macs(cin, cout, out_side, k=1, groups=1):
    return out_side * out_side * cout * k * k * (cin // groups)


def _params(b: BlockSpec) -> int:
    if b.kind == "stem":
        return _cn_params(b.cin, b.cout // 2, 3) + _cn_params(b.cout // 2, b.cout, 3)
    if b.kind == "ffn":
        h = b.hidden
        return _cn_params(b.cin, h) + _cn_params(h, h, 3, h) + _cn_params(h, b.cin) + b.cin
    if b.kind == "attn":
        w, kh, dh = b.cin, ATTN_KEY_DIM * ATTN_HEADS, ATTN_KEY_DIM * ATTN_RATIO * ATTN_HEADS
        n = math.ceil(b.res / b.stride) ** 2
        p = 2 * _cn_params(w, kh) + _cn_params(w, dh) + _cn_params(dh, dh, 3, dh) + _cn_params(dh, w)
        p += 2 * (ATTN_HEADS * ATTN_HEADS + ATTN_HEADS) + ATTN_HEADS * n + w
        if b.stride > 1:
            p += _cn_params(w, w, 3, w)
        return p
    if b.kind == "downsample":
        p = _cn_params(b.cin, b.cout, 3)
        if b.attn:
            kh, dh = DOWN_KEY_DIM * DOWN_HEADS, DOWN_KEY_DIM * DOWN_RATIO * DOWN_HEADS
            p += b.cin * 9 + b.cin + _cn_params(b.cin, kh)                      # local-global query
            p += _cn_params(b.cin, kh) + _cn_params(b.cin, dh) + _cn_params(dh, dh, 3, dh) + _cn_params(dh, b.cout)
            p += DOWN_HEADS * b.res * b.res
        return p
    if b.kind == "head":
        return 2 * b.cin + 2 * (b.cin * b.classes + b.classes)
    raise ValueError(b.kind)


def _macs(b: BlockSpec) -> int:
    if b.kind == "stem":
        r1 = math.ceil(b.res / 2)
        r2 = math.ceil(r1 / 2)
        return _cn_macs(b.cin, b.cout // 2, r1, 3) + _cn_macs(b.cout // 2, b.cout, r2, 3)
    if b.kind == "ffn":
        r, h, w = b.res, b.hidden, b.cin
        return _cn_macs(w, h, r) + _cn_macs(h, h, r, 3, h) + _cn_macs(h, w, r)
    if b.kind == "attn":
        w, r = b.cin, b.res
        ra = math.ceil(r / b.stride)
        n = ra * ra
        kh, d = ATTN_KEY_DIM * ATTN_HEADS, ATTN_KEY_DIM * ATTN_RATIO
        dh = d * ATTN_HEADS
        m = 2 * _cn_macs(w, kh, ra) + _cn_macs(w, dh, ra) + _cn_macs(dh, dh, ra, 3, dh)
        m += n * n * ATTN_KEY_DIM * ATTN_HEADS + n * n * d * ATTN_HEADS     # q @ k, attn @ v
        m += 2 * n * n * ATTN_HEADS * ATTN_HEADS                            # talking heads
        m += _cn_macs(dh, w, ra * b.stride)                                 # projection after upsample
        if b.stride > 1:
            m += _cn_macs(w, w, ra, 3, w)
        return m
    if b.kind == "downsample":
        r2 = math.ceil(b.res / 2)
        m = _cn_macs(b.cin, b.cout, r2, 3)
        if b.attn:
            kh, d = DOWN_KEY_DIM * DOWN_HEADS, DOWN_KEY_DIM * DOWN_RATIO
            dh = d * DOWN_HEADS
            n, n2 = b.res * b.res, r2 * r2
            m += _cn_macs(b.cin, b.cin, r2, 3, b.cin) + _cn_macs(b.cin, kh, r2)     # query
            m += _cn_macs(b.cin, kh, b.res) + _cn_macs(b.cin, dh, b.res) + _cn_macs(dh, dh, r2, 3, dh)
            m += n2 * n * DOWN_KEY_DIM * DOWN_HEADS + n2 * n * d * DOWN_HEADS
            m += _cn_macs(dh, b.cout, r2)
        return m
    if b.kind == "head":
        return 2 * b.cin * b.classes
    raise ValueError(b.kind)


def total(units: Iterable[BlockSpec], what: str) -> int:
    return sum(getattr(u, what) for u in units)
