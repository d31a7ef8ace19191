"""Slimmable EfficientFormerV2 supernet over a :class:`~nas.space.SearchSpace`.

The supernet is the space's largest network (widest stages, every slot kept, the largest expansion
ratio, attention in every block of stages 3 and 4) built with :class:`models.EfficientFormerV2`, whose
layers are then made switchable:

* convolutions and linear layers use the first ``k`` channels of their shared weights (slimmable);
* every BatchNorm is private to a switch -- one per (input width, output width) of a downsample, per
  width of an attention mixer, per (width, hidden width) of an FFN -- as in slimmable networks;
* a block slot that the architecture drops is skipped (elastic depth), and its attention mixer runs only
  where the architecture asks for it.

``set_active(arch)`` selects a subnet; ``extract(arch)`` returns a standalone
:class:`models.EfficientFormerV2` with sliced weights that computes exactly what the active path does.
"""
from __future__ import annotations

import random

import torch
import torch.nn as nn

from models.efficientformer_v2 import Block, BlockConfig, EfficientFormerV2, LayerScale2d
from nas.space.arch import Arch
from nas.space.spaces import DEFAULT_SPACE, SearchSpace
from nas.supernet.elastic import (DynamicConv2d, DynamicLayerScale2d, DynamicLinear, SuperBlock,
                                  SwitchableBatchNorm2d)

__all__ = ["SlimmableSupernet"]


def _hidden(w, r):
    return BlockConfig(r).hidden(w)


class SlimmableSupernet(EfficientFormerV2):
    """Weight-sharing supernet of ``space`` (see module docstring).

    >>> net = SlimmableSupernet(TINY_SPACE, num_classes=10, img_size=64)
    >>> net.set_active(net.space.sample(0)); y = net(torch.randn(2, 3, 64, 64))
    """

    def __init__(self, space: SearchSpace = DEFAULT_SPACE, num_classes: int = 1000, img_size: int = 224,
                 drop_path_rate: float = 0.0, distillation: bool = True, layer_scale_init_value: float = 1e-5):
        self.space = space
        super().__init__(space.max_arch().net_config(num_classes, distillation), img_size=img_size,
                         drop_path_rate=drop_path_rate, layer_scale_init_value=layer_scale_init_value)
        self._make_switchable()
        self.active_arch: Arch | None = None
        self.set_active(space.max_arch())

    # -- construction ---------------------------------------------------------------------------
    def _make_switchable(self):
        sp = self.space
        w = sp.widths

        def convert(module: nn.Module, bn_keys: list[str]):
            for name, child in list(module.named_children()):
                if isinstance(child, SwitchableBatchNorm2d):
                    continue
                if isinstance(child, Block) and not isinstance(child, SuperBlock):
                    setattr(module, name, SuperBlock.from_module(child))
                    child = getattr(module, name)
                if isinstance(child, nn.BatchNorm2d):
                    setattr(module, name, SwitchableBatchNorm2d(child, bn_keys))
                elif isinstance(child, nn.Conv2d) and not isinstance(child, DynamicConv2d):
                    setattr(module, name, DynamicConv2d.from_module(child))
                elif isinstance(child, nn.Linear) and not isinstance(child, DynamicLinear):
                    setattr(module, name, DynamicLinear.from_module(child))
                elif isinstance(child, LayerScale2d) and not isinstance(child, DynamicLayerScale2d):
                    setattr(module, name, DynamicLayerScale2d.from_module(child))
                else:
                    convert(child, bn_keys)

        convert(self.stem, [f"{a}" for a in w[0]])
        for s, stage in enumerate(self.stages):
            if s > 0:
                convert(stage.downsample, [f"{a}_{b}" for a in w[s - 1] for b in w[s]])
            for blk in stage.blocks:
                if blk.token_mixer is not None:
                    convert(blk.token_mixer, [f"{a}" for a in w[s]])
                convert(blk.mlp, [f"{a}_{_hidden(a, r)}" for a in w[s] for r in sp.ratios])
            convert(stage.blocks, [])   # wraps Blocks and their layer scales (no BN left there)
        self.norm = SwitchableBatchNorm2d(self.norm, [f"{a}" for a in w[3]])
        self.head = DynamicLinear.from_module(self.head)
        if self.head_dist is not None:
            self.head_dist = DynamicLinear.from_module(self.head_dist)

    # -- switching ------------------------------------------------------------------------------
    @staticmethod
    def _set_bn(module: nn.Module, key: str):
        for m in module.modules():
            if isinstance(m, SwitchableBatchNorm2d):
                m.active = key

    def set_active(self, arch: Arch) -> "SlimmableSupernet":
        """Route every forward pass through ``arch`` (validated against the space)."""
        self.space.validate(arch)
        w = arch.widths
        self._set_bn(self.stem, f"{w[0]}")
        self.stem.conv1.conv.active_out = w[0] // 2
        self.stem.conv2.conv.active_out = w[0]
        for s, stage in enumerate(self.stages):
            if s > 0:
                self._set_bn(stage.downsample, f"{w[s - 1]}_{w[s]}")
                stage.downsample.conv.conv.active_out = w[s]
                if stage.downsample.attn is not None:
                    stage.downsample.attn.proj.conv.active_out = w[s]
            for blk, choice in zip(stage.blocks, arch.blocks[s]):
                h = _hidden(w[s], choice.ratio)
                blk.keep, blk.use_attn = choice.keep, choice.attn
                if blk.token_mixer is not None:
                    self._set_bn(blk.token_mixer, f"{w[s]}")
                    blk.token_mixer.proj.conv.active_out = w[s]
                self._set_bn(blk.mlp, f"{w[s]}_{h}")
                blk.mlp.fc1.conv.active_out = h
                blk.mlp.fc2.conv.active_out = w[s]
        self.norm.active = f"{w[3]}"
        self.active_arch = arch
        return self

    def sample_active(self, rng: random.Random | int | None = None) -> Arch:
        arch = self.space.sample(rng)
        self.set_active(arch)
        return arch

    # -- extraction -----------------------------------------------------------------------------
    def _slot_map(self, arch: Arch) -> dict[str, str]:
        """Standalone block prefix -> supernet slot prefix."""
        out = {}
        for s, stage in enumerate(arch.blocks):
            i = 0
            for j, b in enumerate(stage):
                if b.keep:
                    out[f"stages.{s}.blocks.{i}."] = f"stages.{s}.blocks.{j}."
                    i += 1
        return out

    @torch.no_grad()
    def extract(self, arch: Arch | None = None) -> EfficientFormerV2:
        """A standalone network for ``arch`` (default: the active one) holding the supernet's weights
        sliced to its widths and the active private BatchNorms."""
        arch = arch or self.active_arch
        self.set_active(arch)
        cfg = arch.net_config(self.num_classes, self.head_dist is not None, self.cfg.in_chans)
        net = EfficientFormerV2(cfg, img_size=self.img_size).eval()
        slots = self._slot_map(arch)
        sup = dict(self.named_modules())
        for name, mod in net.named_modules():
            own = list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False))
            if not own:
                continue
            src_name = name + "."
            for a, b in slots.items():
                if src_name.startswith(a):
                    src_name = b + src_name[len(a):]
                    break
            src = sup[src_name[:-1]]
            if isinstance(src, SwitchableBatchNorm2d):
                src = src.active_bn()
            src_state = dict(src.named_parameters(recurse=False)) | dict(src.named_buffers(recurse=False))
            for pname, t in own:
                if pname == "attention_bias_idxs":
                    continue
                s = src_state[pname]
                t.copy_(s[tuple(slice(0, n) for n in t.shape)] if t.dim() else s)
        net.train(self.training)
        return net
