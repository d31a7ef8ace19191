"""Warm start from published weights (nas.supernet.pretrained): the variant's subnet computes the source model."""
import logging

import pytest
import torch

from models import EfficientFormerV2, create_model
from nas.core.errors import UserError
from nas.space.spaces import CPU_SPACE, DEFAULT_SPACE, TINY_SPACE
from nas.supernet.checkpoint import load_checkpoint
from nas.supernet.pretrained import PretrainedError, _resize_bias, load_pretrained
from nas.supernet.supernet import SlimmableSupernet
from nas.cli.train import build_parser, config_from_args
from nas.training import ConfigError, TrainConfig, Trainer, train

timm = pytest.importorskip("timm")

IMG = 64
X = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def supernet():
    """One supernet for the module: each test loads a variant over whatever the previous one loaded, which
    must not matter (a variant's subnet reads only what its load wrote)."""
    return SlimmableSupernet(DEFAULT_SPACE, num_classes=10, img_size=IMG).eval()


def _timm(variant, randomize, num_classes=10, img_size=IMG, seed=1):
    return randomize(timm.create_model(f"efficientformerv2_{variant}", num_classes=num_classes, img_size=img_size),
                     seed=seed).eval()


def _assert_same_logits(net, variant, ref):
    arch = DEFAULT_SPACE.canonical(variant)
    with torch.no_grad():
        expected = ref(X)
        ours = net.set_active(arch)(X)
        sub = net.extract(arch)(X)
    assert expected.abs().mean() > 1e-2                  # randomised weights: far from trivial logits
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sub, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["s0", "s1", "s2", "l"])
def test_timm_weights_give_the_variants_logits(variant, supernet, randomize):
    ref = _timm(variant, randomize)
    before = supernet.active_arch
    report = load_pretrained(supernet, ref.state_dict())
    assert report["variant"] == variant and report["layout"] == "timm" and report["classes"] == 10
    assert report["arch"] == DEFAULT_SPACE.canonical(variant)
    assert report["loaded"] == len(ref.state_dict()) and not report["skipped"] and not report["resized"]
    assert 0 < len(report["left_at_init"]) < len(supernet.state_dict())
    assert variant.upper() in report["summary"] and str(report["loaded"]) in report["summary"]
    assert supernet.active_arch == before                          # the active subnet is left as it was
    _assert_same_logits(supernet, variant, ref)


def test_s0_weights_start_the_cpu_space(randomize):
    """S0 is a point of the CPU default space, whose slots beyond S0's and attention-free early slots
    differ from the full space's: its subnet still computes S0."""
    ref = _timm("s0", randomize)
    net = SlimmableSupernet(CPU_SPACE, num_classes=10, img_size=IMG).eval()
    report = load_pretrained(net, ref.state_dict())
    arch = CPU_SPACE.canonical("s0")
    assert report["variant"] == "s0" and report["arch"] == arch and not report["skipped"]
    with torch.no_grad():
        torch.testing.assert_close(net.set_active(arch)(X), ref(X), atol=1e-5, rtol=1e-5)
    with pytest.raises(PretrainedError, match="s1|S1"):
        load_pretrained(net, _timm("s1", randomize).state_dict())           # S1 is not a point of it


def test_own_model_state_dict_loads(supernet, randomize):
    own = randomize(create_model("s1", num_classes=10, img_size=IMG), seed=4).eval()
    report = load_pretrained(supernet, own.state_dict())
    assert report["variant"] == "s1"
    _assert_same_logits(supernet, "s1", own)


def _to_official(sd: dict) -> dict:
    """timm's names -> those of snap-research/EfficientFormer models/efficientformer_v2.py (with its persistent
    ``attention_bias_idxs`` buffers and ``(C, 1, 1)`` layer scales)."""
    seq = {"conv": "0", "bn": "1"}
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "stem":
            out[f"patch_embed.{ {'conv1': 0, 'conv2': 3}[parts[1]] + int(parts[2] == 'bn') }.{parts[3]}"] = v
        elif parts[0] == "stages" and parts[2] == "blocks":
            s, j, rest = int(parts[1]), parts[3], parts[4:]
            name = ".".join(rest)
            if rest[0] == "mlp":
                name = {"fc1.conv": "fc1", "fc1.bn": "norm1", "mid.conv": "mid", "mid.bn": "mid_norm",
                        "fc2.conv": "fc2", "fc2.bn": "norm2"}[".".join(rest[1:3])]
                name = f"mlp.{name}.{rest[3]}"
            elif rest[0] in ("ls1", "ls2"):
                name, v = f"layer_scale_{rest[0][-1]}", v.reshape(-1, 1, 1)
            elif rest[1] == "proj":
                name = f"token_mixer.proj.{ {'conv': 1, 'bn': 2}[rest[2]] }.{rest[3]}"
            elif rest[1] in ("stride_conv", "q", "k", "v", "v_local"):
                name = f"token_mixer.{rest[1]}.{seq[rest[2]]}.{rest[3]}"
            out[f"network.{2 * s}.{j}.{name}"] = v
            if name.endswith("attention_biases"):
                out[f"network.{2 * s}.{j}.token_mixer.attention_bias_idxs"] = torch.zeros(4, 4, dtype=torch.long)
        elif parts[0] == "stages":
            s, rest = int(parts[1]), parts[3:]
            if rest[0] == "conv":
                name = ({"conv": "conv", "bn": "bn"} if s == 3 else {"conv": "proj", "bn": "norm"})[rest[1]]
                name = f"{name}.{rest[2]}"
            elif rest[1] == "q":
                name = "attn.q.local.0." + rest[3] if rest[2] == "local" else f"attn.q.proj.{seq[rest[3]]}.{rest[4]}"
            elif rest[1] == "proj":
                name = f"attn.proj.{ {'conv': 1, 'bn': 2}[rest[2]] }.{rest[3]}"
            elif rest[1] in ("k", "v", "v_local"):
                name = f"attn.{rest[1]}.{seq[rest[2]]}.{rest[3]}"
            else:
                name = ".".join(rest)
            out[f"network.{2 * s - 1}.{name}"] = v
        else:
            out[k.replace("head_dist.", "dist_head.")] = v
    return out


def test_official_checkpoint_file_loads(supernet, randomize, tmp_path):
    ref = _timm("s0", randomize, seed=5)
    official = _to_official(ref.state_dict())
    assert "network.5.attn.q.local.0.weight" in official and "network.6.3.layer_scale_1" in official
    path = tmp_path / "eformer_s0_450.pth"
    torch.save({"model": official, "epoch": 449, "args": {"model": "efficientformerv2_s0"}}, path)
    report = load_pretrained(supernet, path)
    assert report["layout"] == "official" and report["variant"] == "s0" and report["source"] == str(path)
    _assert_same_logits(supernet, "s0", ref)


def test_safetensors_file_loads(supernet, randomize, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    ref = _timm("s0", randomize, seed=9)
    path = tmp_path / "model.safetensors"                       # what timm's hub weights come as
    safetensors.save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    assert load_pretrained(supernet, path)["variant"] == "s0"
    _assert_same_logits(supernet, "s0", ref)


def test_other_class_count_loads_everything_but_the_heads(supernet, randomize):
    ref = _timm("s0", randomize, num_classes=1000, seed=6)
    head_before = supernet.head.weight.clone()
    report = load_pretrained(supernet, ref.state_dict())
    assert report["classes"] == 1000 and report["skipped"] == ["head.weight", "head.bias", "head_dist.weight",
                                                               "head_dist.bias"]
    assert report["loaded"] == len(ref.state_dict()) - 4 and "1000 classes" in report["summary"]
    assert torch.equal(supernet.head.weight, head_before)
    with torch.no_grad():
        ours = supernet.set_active(DEFAULT_SPACE.canonical("s0")).forward_features(X)
        torch.testing.assert_close(ours, ref.forward_features(X), atol=1e-5, rtol=1e-5)


def test_other_resolution_fits_the_attention_bias_tables(supernet, randomize):
    ref = _timm("s0", randomize, img_size=224, seed=7)           # 7x7 attention grids; 2x2 at 64 px
    report = load_pretrained(supernet, ref.state_dict())
    assert len(report["resized"]) == 5                           # 4 attention blocks and the attention downsample
    sub = supernet.extract(DEFAULT_SPACE.canonical("s0"))
    big, small = ref.stages[3].blocks[3].token_mixer, sub.stages[3].blocks[3].token_mixer
    pos = torch.tensor([0, 1, 7, 8])                              # the 2x2 grid's cells within the 7x7 grid
    big_bias = big.attention_biases[:, big.attention_bias_idxs][:, pos][:, :, pos]
    torch.testing.assert_close(small.attention_biases[:, small.attention_bias_idxs], big_bias)
    grown = _resize_bias(torch.arange(8.).reshape(2, 4), 9)      # 2x2 -> 3x3: known offsets kept, edges repeated
    assert grown.reshape(2, 3, 3)[0].tolist() == [[0, 1, 1], [2, 3, 3], [2, 3, 3]]


def test_bad_weights_fail_with_what_was_expected(supernet, randomize, tmp_path):
    s0 = _timm("s0", randomize).state_dict()
    with pytest.raises(PretrainedError, match="unknown layout.*stem"):
        load_pretrained(supernet, {"encoder.weight": torch.zeros(3)})
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="garbage.pth"):
        load_pretrained(supernet, garbage)
    with pytest.raises(UserError, match="no pretrained checkpoint"):
        load_pretrained(supernet, tmp_path / "missing.pth")
    with pytest.raises(PretrainedError, match="not a tensor"):
        load_pretrained(supernet, {"model": {**s0, "note": "hi"}})
    other = EfficientFormerV2(DEFAULT_SPACE.sample(3).net_config(10), img_size=IMG)
    with pytest.raises(PretrainedError, match=r"not a published variant.*S0: widths \(32, 48, 96, 176\)"):
        load_pretrained(supernet, other.state_dict())
    with pytest.raises(PretrainedError, match="S0, which is not a point of search space 'tiny'"):
        load_pretrained(SlimmableSupernet(TINY_SPACE, num_classes=10, img_size=IMG), s0)
    stem = supernet.stem.conv1.conv.weight.clone()
    bad = {**s0, "norm.weight": torch.zeros(175)}
    with pytest.raises(PretrainedError, match=r"norm.weight has shape \(175,\).*needs \(176,\)"):
        load_pretrained(supernet, bad)
    assert torch.equal(supernet.stem.conv1.conv.weight, stem)           # checked before anything is written
    with pytest.raises(PretrainedError, match="missing"):
        load_pretrained(supernet, {k: v for k, v in s0.items() if k != "norm.running_var"})
    with pytest.raises(PretrainedError, match="supernet checkpoint.*--resume"):
        load_pretrained(supernet, supernet.state_dict())
    with pytest.raises(PretrainedError, match="norm0.weight.*fork_feat"):
        load_pretrained(supernet, {**_to_official(s0), "norm0.weight": torch.ones(32)})


def test_init_from_option(tmp_path):
    args = build_parser().parse_args(["--init-from", "w/eformer_l_450.pth"])
    assert config_from_args(args).init_from == "w/eformer_l_450.pth" and TrainConfig().init_from is None
    assert TrainConfig(init_from=tmp_path / "l.pth").init_from == str(tmp_path / "l.pth")      # a path is kept as str
    with pytest.raises(ConfigError, match="init_from"):
        TrainConfig(init_from="")


@pytest.mark.slow
def test_training_starts_from_the_loaded_weights(randomize, tmp_path, caplog):
    ref = _timm("s0", randomize, seed=8)
    path = tmp_path / "s0.pth"
    torch.save(ref.state_dict(), path)
    small = dict(space="efficientformerv2", img_size=64, batch_size=4, train_subset=64, eval_size=8, calib_batches=1,
                 num_random=0, progress=False, plot=False, threads=1, lr=1e-9, min_lr=0.0)
    caplog.set_level(logging.INFO, logger="nas")
    train(TrainConfig(**small, out=str(tmp_path / "run"), steps=2, init_from=path))
    assert any("warm start from" in r.getMessage() and "EfficientFormerV2-S0" in r.getMessage()
               for r in caplog.records)
    model = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    for key, src in [("stem.conv1.conv.weight", "stem.conv1.conv.weight"),
                     ("stages.2.blocks.14.token_mixer.q.conv.weight", "stages.2.blocks.5.token_mixer.q.conv.weight")]:
        s = ref.state_dict()[src]
        torch.testing.assert_close(model[key][tuple(slice(0, n) for n in s.shape)], s, atol=1e-6, rtol=0)
    # resuming keeps the run's own weights: the file is not read again
    Trainer(TrainConfig(**small, out=str(tmp_path / "run"), steps=3, resume=True,
                        init_from=str(tmp_path / "gone.pth"))).setup()
    with pytest.raises(UserError, match="gone.pth"):
        Trainer(TrainConfig(**small, out=str(tmp_path / "new"), steps=3, init_from=str(tmp_path / "gone.pth"))).setup()
