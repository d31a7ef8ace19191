import random

import pytest
import torch

from models import EfficientFormerV2
from nas.space.arch import ArchError
from nas.space.spaces import DEFAULT_SPACE, TINY_SPACE
from nas.supernet.elastic import DynamicConv2d, SwitchableBatchNorm2d
from nas.supernet.supernet import SlimmableSupernet


@pytest.mark.parametrize("space", [TINY_SPACE, DEFAULT_SPACE], ids=lambda s: s.name)
def test_extracted_subnet_equals_active_path(space, randomize):
    net = randomize(SlimmableSupernet(space, num_classes=10, img_size=64), seed=2).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    rng = random.Random(1)
    archs = [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(4)]
    outs = []
    for arch in archs:
        with torch.no_grad():
            y_super = net.set_active(arch)(x)
            sub = net.extract(arch)
            y_sub = sub(x)
        assert isinstance(sub, EfficientFormerV2) and not isinstance(sub, SlimmableSupernet)
        assert y_super.abs().mean() > 1e-3
        torch.testing.assert_close(y_sub, y_super, atol=1e-5, rtol=1e-4)
        outs.append(y_super)
    assert not torch.allclose(outs[0], outs[1])            # different subnets compute different functions


def test_published_variants_extract_to_the_plain_model():
    net = SlimmableSupernet(DEFAULT_SPACE, num_classes=10, img_size=64)
    for v in ("s0", "l"):
        arch = DEFAULT_SPACE.canonical(v)
        sub = net.extract(arch)
        plain = EfficientFormerV2(arch.net_config(num_classes=10), img_size=64)
        assert {k: t.shape for k, t in sub.state_dict().items()} == \
               {k: t.shape for k, t in plain.state_dict().items()}
        plain.load_state_dict(sub.state_dict())                 # strict


def test_training_step_updates_only_the_active_private_bn():
    net = SlimmableSupernet(TINY_SPACE, num_classes=4, img_size=64).train()
    arch = TINY_SPACE.min_arch()
    net.set_active(arch)
    norm = net.norm
    assert isinstance(norm, SwitchableBatchNorm2d)
    before = {k: bn.running_mean.clone() for k, bn in norm.bns.items()}
    out = net(torch.randn(4, 3, 64, 64))
    out.sum().backward()
    changed = {k for k, bn in norm.bns.items() if not torch.equal(bn.running_mean, before[k])}
    assert changed == {str(arch.widths[3])}
    assert net.stem.conv1.conv.weight.grad is not None


def test_set_active_rejects_archs_outside_the_space():
    net = SlimmableSupernet(TINY_SPACE, num_classes=4, img_size=64)
    with pytest.raises(ArchError):
        net.set_active(DEFAULT_SPACE.canonical("s0"))


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv_on_a_1x1_map_is_the_centre_tap(stride):
    """A 1x1 map under "same" padding meets only the kernel's centre: the shortcut gives F.conv2d's
    output and gradients (on the supernet's channel slice)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, stride, 1, groups=64)
    dyn = DynamicConv2d.from_module(conv)
    x = torch.randn(5, 48, 1, 1, requires_grad=True)
    y = dyn(x)
    x2 = x.detach().clone().requires_grad_()
    ref = torch.nn.functional.conv2d(x2, conv.weight[:48], conv.bias[:48], stride, 1, 1, 48)
    assert y.shape == ref.shape == (5, 48, 1, 1)
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    w_grad = conv.weight.grad.clone()
    conv.weight.grad = None
    (ref * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(w_grad, conv.weight.grad)
    big = torch.randn(2, 48, 4, 4)                          # larger maps take the ordinary path
    torch.testing.assert_close(dyn(big), torch.nn.functional.conv2d(big, conv.weight[:48], conv.bias[:48],
                                                                    stride, 1, 1, 48))
