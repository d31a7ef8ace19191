"""Elastic operations: layers whose shared weights serve every width of a slimmable supernet.

* :class:`DynamicConv2d`, :class:`DynamicLinear`, :class:`DynamicLayerScale2d` use the first ``k``
  channels of their weights (slimmable);
* :class:`SwitchableBatchNorm2d` keeps one private BatchNorm per switch (a width, or a pair of widths);
* :class:`SuperBlock` is a block slot that can be skipped (elastic depth) and whose attention mixer can
  be switched off.
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from models.efficientformer_v2 import Block, LayerScale2d

__all__ = ["DynamicConv2d", "DynamicLinear", "DynamicLayerScale2d", "SwitchableBatchNorm2d", "SuperBlock"]


class DynamicConv2d(nn.Conv2d):
    """Conv2d that reads its input width from the input and uses the first ``active_out`` filters.
    Depthwise convolutions (``groups == in_channels``) follow the input width."""

    active_out: int | None = None

    @classmethod
    def from_module(cls, conv: nn.Conv2d) -> "DynamicConv2d":
        new = cls.__new__(cls)
        new.__dict__.update(conv.__dict__)
        new.active_out = None
        return new

    def forward(self, x):
        cin = x.shape[1]
        if self.groups > 1:                       # depthwise: channels follow the input
            w, b, groups = self.weight[:cin], self.bias[:cin], cin
            if self._centre_only(x):
                # a 1x1 map under "same" padding meets only the kernel's centre tap: the same numbers as
                # F.conv2d, without PyTorch's CPU depthwise backward (tens of ms on a 1x1 map)
                k = self.kernel_size[0] // 2
                y = x * w[:, 0, k, k].view(1, cin, 1, 1)
                return y if b is None else y + b.view(1, cin, 1, 1)
        else:
            out = self.active_out or self.out_channels
            w, b, groups = self.weight[:out, :cin], self.bias[:out], 1
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, groups)

    def _centre_only(self, x) -> bool:
        k = self.kernel_size
        return (x.shape[-2:] == (1, 1) and k[0] == k[1] and k[0] % 2 == 1
                and self.padding == (k[0] // 2, k[0] // 2) and self.dilation == (1, 1))


class DynamicLinear(nn.Linear):
    """Linear layer that reads its input width from the input."""

    @classmethod
    def from_module(cls, lin: nn.Linear) -> "DynamicLinear":
        new = cls.__new__(cls)
        new.__dict__.update(lin.__dict__)
        return new

    def forward(self, x):
        return F.linear(x, self.weight[:, :x.shape[1]], self.bias)


class DynamicLayerScale2d(LayerScale2d):
    @classmethod
    def from_module(cls, ls: LayerScale2d) -> "DynamicLayerScale2d":
        new = cls.__new__(cls)
        new.__dict__.update(ls.__dict__)
        return new

    def forward(self, x):
        return x * self.gamma[:x.shape[1]].view(1, -1, 1, 1)


class SwitchableBatchNorm2d(nn.Module):
    """One private BatchNorm per switch key, each over the layer's largest width and used on the
    first ``C`` channels of the input."""

    def __init__(self, bn: nn.BatchNorm2d, keys: list[str]):
        super().__init__()
        if not keys:
            raise ValueError("a switchable BatchNorm needs at least one key")
        self.bns = nn.ModuleDict()
        for k in keys:
            b = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum)
            b.load_state_dict(bn.state_dict())
            self.bns[k] = b
        self.active = keys[-1]

    def forward(self, x):
        bn, c = self.bns[self.active], x.shape[1]
        factor = 0.0
        if self.training:
            bn.num_batches_tracked.add_(1)
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                            self.training, factor, bn.eps)

    def active_bn(self) -> nn.BatchNorm2d:
        return self.bns[self.active]


class SuperBlock(Block):
    """A :class:`Block` slot that can be skipped and whose attention mixer can be switched off."""

    keep: bool = True
    use_attn: bool = True

    @classmethod
    def from_module(cls, blk: Block) -> "SuperBlock":
        new = cls.__new__(cls)
        new.__dict__.update(blk.__dict__)
        new.keep, new.use_attn = True, blk.token_mixer is not None
        return new

    def forward(self, x):
        if not self.keep:
            return x
        if self.use_attn:
            x = x + self.drop_path1(self.ls1(self.token_mixer(x)))
        return x + self.drop_path2(self.ls2(self.mlp(x)))
