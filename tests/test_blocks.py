import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nas.space.modules import build_unit
from nas.space.units import BlockSpec, arch_units, space_units
from nas.space.spaces import DEFAULT_SPACE, TINY_SPACE


def test_every_unit_builds_and_its_analytic_cost_is_exact():
    units = space_units(TINY_SPACE, img_size=64, num_classes=10)
    assert {u.kind for u in units} == {"stem", "downsample", "attn", "ffn", "head"}
    for u in units:
        module, shape = build_unit(u)
        assert shape == u.input_shape
        assert u.params == sum(p.numel() for p in module.parameters()), u.key
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            out = module(torch.randn(shape))
        assert 2 * u.macs == fc.get_total_flops(), u.key
        if u.kind in ("attn", "ffn"):
            assert out.shape == shape            # residual units keep their shape


def test_keys_are_stable_and_unique():
    spec = BlockSpec("ffn", 96, 96, 14, hidden=288)
    assert spec.key == "ffn_c96_h288_r14"
    assert BlockSpec("attn", 96, 96, 14, stride=2).key == "attn_c96_r14_s2"
    assert BlockSpec("downsample", 96, 176, 14, stride=2, attn=True).key == "downattn_c96-176_r14"
    assert BlockSpec("stem", 3, 32, 224, stride=4).key == "stem_c3-32_r224"
    assert BlockSpec("head", 176, 1000, 7, classes=1000).key == "head_c176_n1000_r7"
    units = space_units(DEFAULT_SPACE)
    keys = [u.key for u in units]
    assert len(keys) == len(set(keys))
    assert BlockSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("space", [DEFAULT_SPACE, TINY_SPACE])
def test_every_arch_is_priced_by_the_space_units(space):
    keys = {u.key for u in space_units(space, 224)}
    rng = random.Random(0)
    for arch in [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(30)]:
        assert {u.key for u in arch_units(arch, 224)} <= keys


def test_s0_decomposes_into_its_blocks():
    units = arch_units(DEFAULT_SPACE.canonical("s0"))
    kinds = [u.kind for u in units]
    assert kinds.count("ffn") == 14 and kinds.count("attn") == 4
    assert kinds.count("downsample") == 3 and kinds[0] == "stem" and kinds[-1] == "head"
    assert [u.key for u in units if u.kind == "attn"] == ["attn_c96_r14_s2"] * 2 + ["attn_c176_r7_s1"] * 2
