import pytest
import torch

from models import create_model, list_models, load_timm_state_dict, variant_config
from models.efficientformer_v2 import Attention2d, Attention2dDownsample

timm = pytest.importorskip("timm")

TIMM_PARAMS = {"s0": 3_600_256, "s1": 6_185_560, "s2": 12_710_112, "l": 26_322_288}


@pytest.mark.parametrize("variant", ["s0", "s1", "s2", "l"])
def test_param_count_equals_timm(variant):
    ours = sum(p.numel() for p in create_model(variant).parameters())
    theirs = sum(p.numel() for p in timm.create_model(f"efficientformerv2_{variant}").parameters())
    assert ours == theirs == TIMM_PARAMS[variant]


@pytest.mark.parametrize("variant", ["s0", "s1", "s2", "l"])
def test_logits_match_timm_with_loaded_weights(variant, randomize):
    ref = randomize(timm.create_model(f"efficientformerv2_{variant}"), seed=1).eval()
    model = create_model(variant).eval()
    result = load_timm_state_dict(model, {"model": ref.state_dict()})
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(x), ref(x)
    assert theirs.abs().mean() > 1e-2          # randomised weights: logits are far from trivial
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_structure_of_s0():
    m = create_model("s0")
    assert m.cfg.depths == (2, 2, 6, 4)
    attn = [mod for mod in m.modules() if isinstance(mod, Attention2d)]
    assert len(attn) == 4                                       # vit_num=2 in stages 3 and 4
    assert sum(a.stride_conv is not None for a in attn) == 2    # stride attention in stage 3 only
    assert len([mod for mod in m.modules() if isinstance(mod, Attention2dDownsample)]) == 1
    assert all(a.N == 49 for a in attn)                         # every attention map is 49x49 at 224


def test_resolution_is_a_parameter():
    m = create_model("s0", img_size=64, num_classes=10).eval()
    biases = [mod.attention_biases.shape for mod in m.modules() if isinstance(mod, Attention2d)]
    assert biases == [(8, 4)] * 4                               # 2x2 attention grid at 64 px
    with torch.no_grad():
        assert m(torch.randn(3, 3, 64, 64)).shape == (3, 10)


def test_distillation_head_modes():
    m = create_model("s0", img_size=64, num_classes=5)
    m.set_distilled_training(True)
    m.train()
    out = m(torch.randn(2, 3, 64, 64))
    assert isinstance(out, tuple) and len(out) == 2
    m.eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        feats = m.forward_head(m.forward_features(x), pre_logits=True)
        torch.testing.assert_close(m(x), (m.head(feats) + m.head_dist(feats)) / 2)


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="multiple of 32"):
        create_model("s0", img_size=100)
    with pytest.raises(KeyError, match="unknown model"):
        create_model("s9")
    with pytest.raises(KeyError, match="unknown EfficientFormerV2 variant"):
        variant_config("xl")
    assert {"efficientformerv2_s0", "efficientformerv2_l"} <= set(list_models())
