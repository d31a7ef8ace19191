"""EfficientFormerV2 ("Rethinking Vision Transformers for MobileNet Size and Speed", Li et al., ICCV 2023).

Blocks are small modules; variants are data (:data:`VARIANTS`); every network is built from a
:class:`NetConfig` (per-stage width and a list of per-block :class:`BlockConfig`), so any point of the
search space in :mod:`nas.space` builds with the same code as the four published variants. The variants
and configurations live in :mod:`models.configs` (plain data, no torch) and are re-exported here.

Module and parameter names follow timm's ``efficientformer_v2.py`` so a timm state dict loads with
:func:`load_timm_state_dict`. The input resolution is a constructor argument: attention-bias tables
are sized from it, so the same code trains at 64 px and deploys at 224 px.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn as nn

from models.configs import (ATTN_DOWNSAMPLE_STAGE, ATTN_HEADS, ATTN_KEY_DIM, ATTN_RATIO, ATTN_STAGES, DOWN_HEADS,
                            DOWN_KEY_DIM, DOWN_RATIO, STRIDE_ATTN_STAGE, VARIANTS, BlockConfig, NetConfig,
                            attention_resolution, check_img_size, stage_resolutions, variant_config)
from models.registry import register_model

__all__ = [
    "BlockConfig", "NetConfig", "VARIANTS", "variant_config", "EfficientFormerV2",
    "ConvNorm", "ConvNormAct", "Attention2d", "Attention2dDownsample", "Downsample", "ConvMlp",
    "LayerScale2d", "Block", "Stem", "Stage", "attention_resolution", "stage_resolutions",
    "load_timm_state_dict", "check_img_size",
    # plain data from models.configs, re-exported
    "ATTN_KEY_DIM", "ATTN_HEADS", "ATTN_RATIO", "DOWN_KEY_DIM", "DOWN_HEADS", "DOWN_RATIO", "ATTN_STAGES",
    "STRIDE_ATTN_STAGE", "ATTN_DOWNSAMPLE_STAGE",
]


def _rel_pos_index(q_side: int, k_side: int, q_step: int = 1) -> torch.Tensor:
    """LeViT-style relative-position index |dy| * k_side + |dx| for square grids."""
    kp = torch.stack(torch.meshgrid(torch.arange(k_side), torch.arange(k_side), indexing="ij")).flatten(1)
    qp = torch.stack(torch.meshgrid(torch.arange(0, k_side, q_step)[:q_side],
                                    torch.arange(0, k_side, q_step)[:q_side], indexing="ij")).flatten(1)
    rel = (qp[..., :, None] - kp[..., None, :]).abs()
    return rel[0] * k_side + rel[1]


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------
class ConvNorm(nn.Module):
    """Conv2d (with bias) followed by BatchNorm2d; padding keeps ``ceil(H / stride)``."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding=(kernel_size - 1) // 2,
                              groups=groups, bias=True)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class ConvNormAct(ConvNorm):
    """ConvNorm followed by GELU."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class LayerScale2d(nn.Module):
    def __init__(self, dim: int, init_value: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma.view(1, -1, 1, 1)


class _BiasCache:
    """Gathers the relative-position bias; caches the gathered table in eval mode."""

    def _bias(self, device):
        if self.training or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return self.attention_biases[:, self.attention_bias_idxs]
        cached = self._bias_cache.get(str(device))
        if cached is None:
            cached = self._bias_cache[str(device)] = self.attention_biases[:, self.attention_bias_idxs]
        return cached

    def train(self, mode: bool = True):
        self._bias_cache = {}
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kw):
        self._bias_cache = {}
        return super()._load_from_state_dict(*args, **kw)


class Attention2d(_BiasCache, nn.Module):
    """Attention4D: multi-head attention on a 2-D grid with talking heads, local V and learned bias.

    With ``stride=2`` (stage 3) Q/K/V are computed on a depthwise-strided grid and the output is
    upsampled back ("stride attention").
    """

    def __init__(self, dim: int, resolution: int, stride: int | None = None,
                 key_dim: int = ATTN_KEY_DIM, num_heads: int = ATTN_HEADS, attn_ratio: int = ATTN_RATIO):
        super().__init__()
        self.num_heads, self.key_dim, self.scale = num_heads, key_dim, key_dim ** -0.5
        if stride is not None:
            self.stride_conv = ConvNorm(dim, dim, 3, stride=stride, groups=dim)
            self.upsample = nn.Upsample(scale_factor=stride, mode="bilinear")
        else:
            self.stride_conv = None
            self.upsample = None
        self.resolution = attention_resolution(resolution, stride)
        self.N = self.resolution ** 2
        self.d = attn_ratio * key_dim
        self.dh = self.d * num_heads
        kh = key_dim * num_heads
        self.q = ConvNorm(dim, kh)
        self.k = ConvNorm(dim, kh)
        self.v = ConvNorm(dim, self.dh)
        self.v_local = ConvNorm(self.dh, self.dh, 3, groups=self.dh)
        self.talking_head1 = nn.Conv2d(num_heads, num_heads, 1)
        self.talking_head2 = nn.Conv2d(num_heads, num_heads, 1)
        self.act = nn.GELU()
        self.proj = ConvNorm(self.dh, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, self.N))
        self.register_buffer("attention_bias_idxs", _rel_pos_index(self.resolution, self.resolution),
                             persistent=False)
        self._bias_cache = {}

    def forward(self, x):
        if self.stride_conv is not None:
            x = self.stride_conv(x)
        B, h, n = x.shape[0], self.num_heads, self.N
        q = self.q(x).reshape(B, h, -1, n).transpose(2, 3)
        k = self.k(x).reshape(B, h, -1, n)
        v = self.v(x)
        v_local = self.v_local(v)
        v = v.reshape(B, h, -1, n).transpose(2, 3)
        attn = (q @ k) * self.scale + self._bias(x.device)
        attn = self.talking_head1(attn).softmax(dim=-1)
        attn = self.talking_head2(attn)
        x = (attn @ v).transpose(2, 3).reshape(B, self.dh, self.resolution, self.resolution) + v_local
        if self.upsample is not None:
            x = self.upsample(x)
        return self.proj(self.act(x))


class LocalGlobalQuery(nn.Module):
    """Query of the attention downsample: depthwise-strided conv plus stride-2 subsample, projected."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.pool = nn.AvgPool2d(1, 2, 0)
        self.local = nn.Conv2d(cin, cin, 3, stride=2, padding=1, groups=cin)
        self.proj = ConvNorm(cin, cout)

    def forward(self, x):
        return self.proj(self.local(x) + self.pool(x))


class Attention2dDownsample(_BiasCache, nn.Module):
    """Attention half of the dual-path downsample: 49 queries attend over the full-resolution grid."""

    def __init__(self, dim: int, out_dim: int, resolution: int,
                 key_dim: int = DOWN_KEY_DIM, num_heads: int = DOWN_HEADS, attn_ratio: int = DOWN_RATIO):
        super().__init__()
        self.num_heads, self.key_dim, self.scale = num_heads, key_dim, key_dim ** -0.5
        self.resolution = resolution
        self.resolution2 = math.ceil(resolution / 2)
        self.N, self.N2 = resolution ** 2, self.resolution2 ** 2
        self.d = attn_ratio * key_dim
        self.dh = self.d * num_heads
        kh = key_dim * num_heads
        self.q = LocalGlobalQuery(dim, kh)
        self.k = ConvNorm(dim, kh)
        self.v = ConvNorm(dim, self.dh)
        self.v_local = ConvNorm(self.dh, self.dh, 3, stride=2, groups=self.dh)
        self.act = nn.GELU()
        self.proj = ConvNorm(self.dh, out_dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, self.N))
        self.register_buffer("attention_bias_idxs", _rel_pos_index(self.resolution2, resolution, 2),
                             persistent=False)
        self._bias_cache = {}

    def forward(self, x):
        B, h = x.shape[0], self.num_heads
        q = self.q(x).reshape(B, h, -1, self.N2).transpose(2, 3)
        k = self.k(x).reshape(B, h, -1, self.N)
        v = self.v(x)
        v_local = self.v_local(v)
        v = v.reshape(B, h, -1, self.N).transpose(2, 3)
        attn = ((q @ k) * self.scale + self._bias(x.device)).softmax(dim=-1)
        x = (attn @ v).transpose(2, 3).reshape(B, self.dh, self.resolution2, self.resolution2) + v_local
        return self.proj(self.act(x))


class Downsample(nn.Module):
    """Conv3x3 stride 2 + BN; with ``use_attn`` the attention path is added (local-global downsample)."""

    def __init__(self, cin: int, cout: int, resolution: int, use_attn: bool = False):
        super().__init__()
        self.conv = ConvNorm(cin, cout, 3, stride=2)
        self.attn = Attention2dDownsample(cin, cout, resolution) if use_attn else None

    def forward(self, x):
        out = self.conv(x)
        return out + self.attn(x) if self.attn is not None else out


class ConvMlp(nn.Module):
    """Unified FFN: 1x1 conv -> depthwise 3x3 conv -> 1x1 conv, each with BN (GELU after the first two)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = ConvNormAct(dim, hidden, 1)
        self.mid = ConvNormAct(hidden, hidden, 3, groups=hidden)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = ConvNorm(hidden, dim, 1)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.mid(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth per sample (identity at eval time)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """FFN block, optionally preceded by an Attention4D mixer (both residual, with layer scale)."""

    def __init__(self, dim: int, cfg: BlockConfig, resolution: int, stride: int | None = None,
                 drop_path: float = 0.0, layer_scale_init_value: float = 1e-5, drop: float = 0.0):
        super().__init__()
        if cfg.attn:
            self.token_mixer = Attention2d(dim, resolution, stride)
            self.ls1 = LayerScale2d(dim, layer_scale_init_value)
            self.drop_path1 = DropPath(drop_path)
        else:
            self.token_mixer = self.ls1 = self.drop_path1 = None
        self.mlp = ConvMlp(dim, cfg.hidden(dim), drop)
        self.ls2 = LayerScale2d(dim, layer_scale_init_value)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x):
        if self.token_mixer is not None:
            x = x + self.drop_path1(self.ls1(self.token_mixer(x)))
        return x + self.drop_path2(self.ls2(self.mlp(x)))


class Stem(nn.Sequential):
    """Two Conv3x3 stride-2 + BN + GELU layers (stride 4)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout // 2, 3, stride=2)
        self.conv2 = ConvNormAct(cout // 2, cout, 3, stride=2)


class Stage(nn.Module):
    def __init__(self, downsample: nn.Module, blocks: Iterable[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(self.downsample(x))


# ----------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------
class EfficientFormerV2(nn.Module):
    """EfficientFormerV2 built from a :class:`NetConfig`.

    In training mode with :meth:`set_distilled_training` enabled, ``forward`` returns
    ``(logits, dist_logits)``; otherwise the average of the two heads (as the official code and timm).
    """

    def __init__(self, cfg: NetConfig, img_size: int = 224, drop_path_rate: float = 0.0,
                 layer_scale_init_value: float = 1e-5, drop_rate: float = 0.0):
        super().__init__()
        self.cfg, self.img_size = cfg, check_img_size(img_size)
        self.num_classes = cfg.num_classes
        res = stage_resolutions(img_size)
        self.stem = Stem(cfg.in_chans, cfg.widths[0])
        dpr = torch.linspace(0, drop_path_rate, max(sum(cfg.depths), 1)).tolist()
        stages, prev, i = [], cfg.widths[0], 0
        for s, (w, blocks) in enumerate(zip(cfg.widths, cfg.blocks)):
            down = (nn.Identity() if s == 0 else
                    Downsample(prev, w, res[s - 1], use_attn=(s == ATTN_DOWNSAMPLE_STAGE)))
            stride = 2 if s == STRIDE_ATTN_STAGE else None
            mods = []
            for b in blocks:
                mods.append(Block(w, b, res[s], stride, dpr[i], layer_scale_init_value))
                i += 1
            stages.append(Stage(down, mods))
            prev = w
        self.stages = nn.Sequential(*stages)
        self.num_features = cfg.widths[-1]
        self.norm = nn.BatchNorm2d(self.num_features)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, cfg.num_classes)
        self.head_dist = nn.Linear(self.num_features, cfg.num_classes) if cfg.distillation else None
        self.distilled_training = False
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def set_distilled_training(self, enable: bool = True):
        self.distilled_training = enable

    def no_weight_decay(self) -> set[str]:
        return {k for k, _ in self.named_parameters() if "attention_biases" in k}

    def forward_features(self, x):
        return self.norm(self.stages(self.stem(x)))

    def forward_head(self, x, pre_logits: bool = False):
        x = self.head_drop(x.mean(dim=(2, 3)))
        if pre_logits:
            return x
        if self.head_dist is None:
            return self.head(x)
        out, dist = self.head(x), self.head_dist(x)
        if self.distilled_training and self.training:
            return out, dist
        return (out + dist) / 2

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def load_timm_state_dict(model: EfficientFormerV2, state_dict: dict, strict: bool = True):
    """Load a timm ``efficientformerv2_*`` state dict (or a checkpoint wrapping one).

    Names are identical by design except timm's fused ``BatchNormAct2d`` which keeps the same keys,
    so the mapping only unwraps ``{'model': ...}`` / ``{'state_dict': ...}`` checkpoints and drops
    timm's non-persistent buffers if a user saved them.
    """
    for wrap in ("model", "state_dict", "model_ema"):
        if wrap in state_dict and isinstance(state_dict[wrap], dict):
            state_dict = state_dict[wrap]
            break
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()
          if not k.endswith("attention_bias_idxs")}
    return model.load_state_dict(sd, strict=strict)


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------
def _make(name):
    def fn(num_classes: int = 1000, img_size: int = 224, distillation: bool = True, **kw):
        v = VARIANTS[name]
        kw.setdefault("drop_path_rate", v["drop_path_rate"])
        cfg = variant_config(name, num_classes=num_classes, distillation=distillation)
        return EfficientFormerV2(cfg, img_size=img_size, **kw)
    fn.__name__ = f"efficientformerv2_{name}"
    fn.__doc__ = f"EfficientFormerV2-{name.upper()} (official widths, depths, ratios and vit_num)."
    return fn


for _name in VARIANTS:
    register_model(_make(_name))
