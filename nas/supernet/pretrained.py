"""Warm start: a published EfficientFormerV2's weights (S0, S1, S2 or L) loaded into the slimmable supernet.

:func:`load_pretrained` reads a state dict in one of these layouts:

* **timm** (``timm.create_model("efficientformerv2_l").state_dict()``, or timm's ``model.safetensors``),
  which is also the layout of this project's :class:`models.EfficientFormerV2` (same names by design);
* the **official** one of snap-research/EfficientFormer (``models/efficientformer_v2.py``; released files
  such as ``eformer_l_450.pth`` hold ``{"model": state_dict, ...}`` with keys ``patch_embed.*``,
  ``network.N.M.*``, ``norm.*``, ``head.*``, ``dist_head.*``);

either as a dict or as a file (``.pt``/``.pth`` read with :func:`~nas.supernet.checkpoint.safe_load`, so
nothing in it is executed; ``.safetensors`` with the ``safetensors`` package). Wrappers ``{"model": ...}``,
``{"state_dict": ...}``, ``{"model_ema": ...}`` and a ``module.`` prefix are unwrapped.

The variant is recognised from tensor shapes (stage widths, depths, hidden widths, attention placement)
and placed at :meth:`SearchSpace.canonical(variant) <nas.space.spaces.SearchSpace.canonical>`: its
weights go into the first ``k`` channels of the supernet's shared weights in the slots that architecture
keeps, and its BatchNorms into the private BatchNorms of that architecture's switches, so the supernet
with ``set_active(space.canonical(variant))`` (and its ``extract``) computes what the source model computes.
Attention-bias tables of another input resolution are cropped (or edge-extended) to the supernet's grid;
classifier heads with another number of classes are left at their init.
"""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from models.efficientformer_v2 import VARIANTS, EfficientFormerV2, variant_config
from nas.core.errors import UserError
from nas.space.arch import ArchError
from nas.supernet.checkpoint import safe_load
from nas.supernet.elastic import SwitchableBatchNorm2d
from nas.supernet.supernet import SlimmableSupernet

__all__ = ["load_pretrained", "PretrainedError", "read_state_dict", "recognise_variant"]

log = logging.getLogger(__name__)

HEAD_KEYS = ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias")
_WRAPPERS = ("model", "state_dict", "model_ema")


class PretrainedError(UserError, ValueError):
    """Weights that cannot warm-start this supernet: an unknown layout, a network that is not a published
    EfficientFormerV2 or not a point of the space, or tensors of unexpected shapes."""


# -- reading ---------------------------------------------------------------------------------------------
def read_state_dict(path_or_state_dict) -> tuple[dict[str, torch.Tensor], str, str]:
    """``(state dict in timm's layout, layout name, source name)`` from a file or a dict in any accepted
    layout (module docstring)."""
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        path = Path(path_or_state_dict)
        obj, source = _read_file(path), str(path)
    elif isinstance(path_or_state_dict, dict):
        obj, source = path_or_state_dict, "state dict"
    else:
        raise TypeError(f"load_pretrained takes a path or a state dict, got {type(path_or_state_dict).__name__}")
    for wrap in _WRAPPERS:
        if isinstance(obj.get(wrap), dict):
            obj = obj[wrap]
            break
    sd = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise PretrainedError(f"{source} is not a state dict: entry {k!r} holds {type(v).__name__}, not a tensor "
                                  f"(expected a timm or official EfficientFormerV2 checkpoint)")
        sd[k.removeprefix("module.")] = v
    if any(".bns." in k for k in sd):
        raise PretrainedError(f"{source} is a supernet checkpoint, not a single network's weights: continue that "
                              f"run with --resume, or load it with nas.supernet.load_supernet")
    if any(k.startswith(("patch_embed.", "network.")) for k in sd):
        return _from_official(sd, source), "official", source
    if any(k.startswith("stem.") for k in sd) and any(k.startswith("stages.") for k in sd):
        return {k: v for k, v in sd.items() if not k.endswith("attention_bias_idxs")}, "timm", source
    some = ", ".join(sorted(sd)[:4]) or "none"
    raise PretrainedError(f"{source}: unknown layout (keys such as {some}); expected EfficientFormerV2 weights "
                          f"in timm's layout (stem.*, stages.N.*) or the official one of "
                          f"snap-research/EfficientFormer (patch_embed.*, network.N.*)")


def _read_file(path: Path) -> dict:
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise PretrainedError(f"no pretrained weights at {path}")
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise PretrainedError(f"reading {path} needs the safetensors package: pip install safetensors") from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:
            raise PretrainedError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    return safe_load(path, "pretrained checkpoint")


# -- the official layout -> timm's -------------------------------------------------------------------------
_STEM = {"0": "stem.conv1.conv", "1": "stem.conv1.bn", "3": "stem.conv2.conv", "4": "stem.conv2.bn"}
_CONV_BN = {"0": "conv", "1": "bn"}
_BLOCK_RULES = [                                  # official block suffix -> timm's (first match wins)
    (r"mlp\.fc1\.", "mlp.fc1.conv."), (r"mlp\.norm1\.", "mlp.fc1.bn."),
    (r"mlp\.mid\.", "mlp.mid.conv."), (r"mlp\.mid_norm\.", "mlp.mid.bn."),
    (r"mlp\.fc2\.", "mlp.fc2.conv."), (r"mlp\.norm2\.", "mlp.fc2.bn."),
    (r"layer_scale_1$", "ls1.gamma"), (r"layer_scale_2$", "ls2.gamma"),
    (r"token_mixer\.(stride_conv|q|k|v|v_local)\.([01])\.", lambda m: f"token_mixer.{m[1]}.{_CONV_BN[m[2]]}."),
    (r"token_mixer\.proj\.1\.", "token_mixer.proj.conv."), (r"token_mixer\.proj\.2\.", "token_mixer.proj.bn."),
    (r"token_mixer\.(talking_head[12]\.|attention_biases$)", r"token_mixer.\1"),
]
_DOWN_RULES = [                                   # official Embedding suffix -> timm's Downsample
    (r"(proj|conv)\.", "conv.conv."), (r"(norm|bn)\.", "conv.bn."),
    (r"attn\.q\.local\.0\.", "attn.q.local."), (r"attn\.q\.proj\.([01])\.", lambda m: f"attn.q.proj.{_CONV_BN[m[1]]}."),
    (r"attn\.(k|v|v_local)\.([01])\.", lambda m: f"attn.{m[1]}.{_CONV_BN[m[2]]}."),
    (r"attn\.proj\.1\.", "attn.proj.conv."), (r"attn\.proj\.2\.", "attn.proj.bn."),
    (r"attn\.attention_biases$", "attn.attention_biases"),
]


def _apply(rules, tail: str) -> str | None:
    for pattern, repl in rules:
        new, n = re.subn("^" + pattern, repl, tail, count=1)
        if n:
            return new
    return None


def _official_key(k: str) -> str | None:
    """timm's name of an official key (``None``: not a key of the official classification network)."""
    m = re.fullmatch(r"patch_embed\.(\d+)\.(\w+)", k)
    if m:
        return f"{_STEM[m[1]]}.{m[2]}" if m[1] in _STEM else None
    m = re.fullmatch(r"network\.(\d+)\.(.+)", k)
    if m:
        i, rest = int(m[1]), m[2]
        if i > 6:
            return None
        if i % 2:                                  # network.1/3/5: the downsample into stage (i + 1) / 2
            tail = _apply(_DOWN_RULES, rest)
            return f"stages.{(i + 1) // 2}.downsample.{tail}" if tail else None
        m = re.fullmatch(r"(\d+)\.(.+)", rest)    # network.0/2/4/6: the blocks of stage i / 2
        tail = _apply(_BLOCK_RULES, m[2]) if m else None
        return f"stages.{i // 2}.blocks.{m[1]}.{tail}" if tail else None
    if k.startswith("dist_head."):
        return "head_dist." + k.removeprefix("dist_head.")
    if re.fullmatch(r"(norm|head)\.\w+", k):
        return k
    return None


def _from_official(sd: dict, source: str) -> dict:
    out, unknown = {}, []
    for k, v in sd.items():
        if k.endswith("attention_bias_idxs"):
            continue
        new = _official_key(k)
        if new is None:
            unknown.append(k)
            continue
        out[new] = v.reshape(-1) if new.endswith((".ls1.gamma", ".ls2.gamma")) else v
    if unknown:
        raise PretrainedError(f"{source}: {len(unknown)} key(s) that the official EfficientFormerV2 classifier "
                              f"(snap-research/EfficientFormer models/efficientformer_v2.py) does not have, e.g. "
                              f"{', '.join(unknown[:4])}; detection/segmentation backbones (fork_feat) are not "
                              f"supported: use the ImageNet classification checkpoint")
    return out


# -- recognising the variant -------------------------------------------------------------------------------
def _structure(sd: dict, source: str) -> tuple[tuple[int, ...], tuple[tuple[tuple[int, bool], ...], ...]]:
    """Stage widths and, per block, ``(hidden width, has attention)`` as the tensors say."""
    widths, stages = [], []
    for s in range(4):
        idx = sorted({int(m[1]) for k in sd for m in [re.match(rf"stages\.{s}\.blocks\.(\d+)\.", k)] if m})
        if not idx or idx != list(range(len(idx))):
            raise PretrainedError(f"{source}: stage {s + 1} has blocks {idx or 'none'}; an EfficientFormerV2 "
                                  f"state dict has blocks 0..n-1 in each of its 4 stages")
        try:
            widths.append(int(sd[f"stages.{s}.blocks.0.ls2.gamma"].shape[0]))
            stages.append(tuple((int(sd[f"stages.{s}.blocks.{i}.mlp.fc1.conv.weight"].shape[0]),
                                 f"stages.{s}.blocks.{i}.token_mixer.q.conv.weight" in sd) for i in idx))
        except KeyError as e:
            raise PretrainedError(f"{source}: not an EfficientFormerV2 state dict (no tensor {e.args[0]})") from None
    return tuple(widths), tuple(stages)


def _variant_structure(name: str):
    cfg = variant_config(name)
    return cfg.widths, tuple(tuple((b.hidden(w), b.attn) for b in blocks) for w, blocks in zip(cfg.widths, cfg.blocks))


def recognise_variant(state_dict: dict, source: str = "state dict") -> str:
    """The published variant (``s0``, ``s1``, ``s2``, ``l``) whose widths, depths, hidden widths and
    attention blocks a timm-layout state dict has; :class:`PretrainedError` naming them otherwise."""
    found = _structure(state_dict, source)
    for name in VARIANTS:
        if _variant_structure(name) == found:
            return name
    widths, stages = found
    depths = tuple(len(s) for s in stages)
    expected = "; ".join(f"{n.upper()}: widths {v['widths']}, depths {v['depths']}" for n, v in VARIANTS.items())
    near = [n.upper() for n in VARIANTS if _variant_structure(n)[0] == widths
            and tuple(len(s) for s in _variant_structure(n)[1]) == depths]
    why = (f" (widths and depths of {near[0]}, but other expansion ratios or attention blocks)" if near else "")
    raise PretrainedError(f"{source}: an EfficientFormerV2 with widths {widths} and depths {depths} is not a published "
                          f"variant{why}; expected one of {expected}")


# -- loading -----------------------------------------------------------------------------------------------
def _resize_bias(table: torch.Tensor, n: int) -> torch.Tensor:
    """A ``(heads, r*r)`` relative-position bias table (indexed ``|dy| * r + |dx|``) on a grid of side
    ``sqrt(n)``: the offsets both grids have keep their bias; a larger grid repeats the edge offsets'."""
    heads, n0 = table.shape
    r0, r = math.isqrt(n0), math.isqrt(n)
    grid = table.reshape(heads, r0, r0)
    if r <= r0:
        return grid[:, :r, :r].reshape(heads, n)
    return F.pad(grid[None].float(), (0, r - r0, 0, r - r0), mode="replicate")[0].to(table.dtype).reshape(heads, n)


@torch.no_grad()
def load_pretrained(net: SlimmableSupernet, path_or_state_dict) -> dict:
    """Load an S0/S1/S2/L checkpoint (a path or a state dict; layouts in the module docstring) into ``net``.

    Returns a report: ``variant`` (``"s0"``...), ``arch`` (``net.space.canonical(variant)``, the subnet that now
    computes the source model), ``layout`` (``"timm"`` or ``"official"``), ``source``, ``classes`` (the
    source's number of classes, ``None`` without a head), ``loaded`` (number of source tensors loaded),
    ``skipped`` (source tensors not loaded: classifier heads of another class count), ``resized`` (attention
    bias tables fitted to the supernet's resolution), ``left_at_init`` (supernet state-dict keys that were not
    written: other switches' BatchNorms, slots and attention the variant does not use, ...), ``notes`` and a
    one-line ``summary``. The active architecture of ``net`` is left as it was.
    """
    if not isinstance(net, SlimmableSupernet):
        raise TypeError(f"load_pretrained loads into a SlimmableSupernet, got {type(net).__name__}")
    sd, layout, source = read_state_dict(path_or_state_dict)
    variant = recognise_variant(sd, source)
    try:
        arch = net.space.canonical(variant)
    except ArchError as e:
        raise PretrainedError(f"{source} holds EfficientFormerV2-{variant.upper()}, which is not a point of search "
                              f"space {net.space.name!r} ({e}); use a space that contains it, such as the default "
                              f"'efficientformerv2'") from None
    sd = dict(sd)
    notes, skipped, skip_heads = [], [], False
    has_dist = net.head_dist is not None
    classes = int(sd["head.weight"].shape[0]) if "head.weight" in sd else None
    if classes is None or classes != net.num_classes:
        skip_heads = True
        skipped += [k for k in HEAD_KEYS if k in sd]
    if classes is None:
        notes.append("the source has no classifier head: heads left at their init")
    elif classes != net.num_classes:
        notes.append(f"classifier heads not loaded: {classes} classes in the source, {net.num_classes} in the "
                     f"supernet (heads left at their init)")
    elif has_dist and "head_dist.weight" not in sd:
        sd["head_dist.weight"], sd["head_dist.bias"] = sd["head.weight"], sd["head.bias"]
        notes.append("the source has no distillation head: head_dist is a copy of head (same logits)")
    elif not has_dist and "head_dist.weight" in sd:
        sd["head.weight"] = (sd["head.weight"] + sd.pop("head_dist.weight")) / 2
        sd["head.bias"] = (sd["head.bias"] + sd.pop("head_dist.bias")) / 2
        notes.append("the supernet has no distillation head: head is the average of the source's two heads "
                      "(same logits in eval mode)")
    for k in skipped:
        sd.pop(k)

    # the names and shapes of the variant at this supernet's resolution and class count
    plain = EfficientFormerV2(arch.net_config(net.num_classes, has_dist, net.cfg.in_chans), img_size=net.img_size)
    expected = {k: t.shape for k, t in plain.state_dict().items()}
    optional = {k for k in expected if k.endswith("num_batches_tracked") or (k in HEAD_KEYS and skip_heads)}
    missing = sorted(k for k in expected if k not in sd and k not in optional)
    unexpected = sorted(k for k in sd if k not in expected)
    if missing or unexpected:
        raise PretrainedError(f"{source}: EfficientFormerV2-{variant.upper()} recognised, but "
                              + "; ".join(f"{len(v)} tensor(s) {what}, e.g. {', '.join(v[:3])}"
                                          for v, what in ((missing, "missing"), (unexpected, "unexpected")) if v))
    resized = []
    for key, want in expected.items():              # every shape checked before anything is written
        src = sd.get(key)
        if src is None:
            continue
        if key.endswith("attention_biases") and src.dim() == 2 and src.shape[0] == want[0] and src.shape != want:
            sd[key] = src = _resize_bias(src, want[1])
            resized.append(key)
        if src.shape != want:
            raise PretrainedError(f"{source}: {key} has shape {tuple(src.shape)}; EfficientFormerV2-{variant.upper()} "
                                  f"at {net.img_size} px and {net.num_classes} classes needs {tuple(want)}")
    written = set()
    prev = net.active_arch
    net.set_active(arch)                           # selects the private BatchNorms of the variant's switches
    try:
        slots = net._slot_map(arch)
        modules = dict(net.named_modules())
        for name, mod in plain.named_modules():
            for pname, _ in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
                key = f"{name}.{pname}"
                if key not in sd:
                    continue
                src = sd[key]
                target = name + "."
                for a, b in slots.items():
                    if target.startswith(a):
                        target = b + target[len(a):]
                        break
                target = target[:-1]
                tmod = modules[target]
                if isinstance(tmod, SwitchableBatchNorm2d):
                    target = f"{target}.bns.{tmod.active}"
                    tmod = tmod.active_bn()
                tensor = getattr(tmod, pname)
                if tensor.dim():
                    tensor[tuple(slice(0, n) for n in src.shape)].copy_(src)
                else:
                    tensor.copy_(src)
                written.add(f"{target}.{pname}")
    finally:
        net.set_active(prev or net.space.max_arch())
    for m in net.modules():                        # cached eval-mode bias tables are stale now
        if hasattr(m, "_bias_cache"):
            m._bias_cache = {}

    left = [k for k in net.state_dict() if k not in written]
    if resized:
        notes.append(f"{len(resized)} attention-bias table(s) fitted to the {net.img_size}-px grid (offsets both "
                     f"grids have keep their bias)")
    summary = (f"warm start from {source}: EfficientFormerV2-{variant.upper()} ({layout} layout), {len(written)} "
               f"tensors loaded into the slots of space.canonical({variant!r}); "
               f"{len(left)} of {len(left) + len(written)} supernet tensors left at their init"
               + "".join(f"; {n}" for n in notes))
    log.debug(summary)
    return {"variant": variant, "arch": arch, "layout": layout, "source": source, "classes": classes,
            "loaded": len(written), "skipped": skipped, "resized": resized, "left_at_init": left, "notes": notes,
            "summary": summary}
