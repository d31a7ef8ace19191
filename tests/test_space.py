import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models import EfficientFormerV2, create_model
from nas.space.metrics import MES, count_macs, count_params
from nas.space.arch import Arch, ArchError
from nas.space.spaces import CPU_SPACE, DEFAULT_SPACE, TINY_SPACE, SearchSpace, get_space

VARIANTS = ["s0", "s1", "s2", "l"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_published_variants_are_points_of_the_default_space(variant):
    arch = DEFAULT_SPACE.canonical(variant)
    assert DEFAULT_SPACE.contains(arch)
    built = EfficientFormerV2(arch.net_config())
    ref = create_model(variant)
    assert built.cfg.blocks == ref.cfg.blocks and built.cfg.widths == ref.cfg.widths


def test_json_round_trip_and_file(tmp_path):
    for arch in [DEFAULT_SPACE.canonical("s1"), DEFAULT_SPACE.sample(3), TINY_SPACE.min_arch()]:
        again = Arch.from_json(arch.to_json())
        assert again == arch
        assert json.loads(arch.to_json()) == arch.to_dict()
    p = tmp_path / "arch.json"
    p.write_text(DEFAULT_SPACE.canonical("s0").to_json(indent=2))
    assert Arch.from_json(p) == DEFAULT_SPACE.canonical("s0")


def test_validation_lists_every_problem():
    arch = DEFAULT_SPACE.canonical("s0")
    bad = arch.replace(widths=(32, 50, 96, 176)).replace(stage=0, slot=0, attn=True)
    bad = bad.replace(stage=2, slot=0, ratio=5)
    with pytest.raises(ArchError) as e:
        DEFAULT_SPACE.validate(bad)
    msg = str(e.value)
    assert "stage 2: width 50 is not one of" in msg
    assert "stage 1 block 0: attention is only allowed in stages [3, 4]" in msg
    assert "stage 3 block 0: expansion ratio 5 is not one of [2, 3, 4]" in msg
    dropped = arch
    for j in range(5):
        dropped = dropped.replace(stage=0, slot=j, keep=False)
    with pytest.raises(ArchError, match="0 blocks kept, at least 1 required"):
        DEFAULT_SPACE.validate(dropped)
    with pytest.raises(ArchError, match="stage 3: 3 block slots given, the space has 15"):
        DEFAULT_SPACE.validate(TINY_SPACE.max_arch().replace(widths=(32, 48, 96, 176)))


def test_malformed_json_is_a_clear_error():
    with pytest.raises(ArchError, match="not valid JSON"):
        Arch.from_json("{widths: [1")
    with pytest.raises(ArchError, match='keys "widths" and "blocks"'):
        Arch.from_json('{"width": [32]}')
    with pytest.raises(ArchError, match='stage 1 block 0: "ratio" is missing'):
        Arch.from_json('{"widths": [1,2,3,4], "blocks": [[{"keep": true}], [], [], []]}')


def test_samples_and_extremes_are_valid():
    for space in (DEFAULT_SPACE, TINY_SPACE):
        rng = random.Random(0)
        for _ in range(50):
            space.validate(space.sample(rng))
        big, small = space.max_arch(), space.min_arch()
        space.validate(big), space.validate(small)
        assert count_params(big) > count_params(small)


@pytest.mark.parametrize("img_size", [64, 224])
def test_analytic_params_and_macs_equal_the_built_model(img_size):
    archs = [DEFAULT_SPACE.canonical(v) for v in VARIANTS] + [DEFAULT_SPACE.sample(i) for i in range(4)]
    for arch in archs:
        for distill in (True, False):
            net = EfficientFormerV2(arch.net_config(num_classes=100, distillation=distill), img_size=img_size).eval()
            assert count_params(arch, img_size=img_size, num_classes=100, distillation=distill) == sum(p.numel() for p in net.parameters())
            with FlopCounterMode(display=False) as fc, torch.no_grad():
                net(torch.randn(1, 3, img_size, img_size))
            assert 2 * count_macs(arch, img_size=img_size, num_classes=100, distillation=distill) == fc.get_total_flops()


def test_paper_macs_are_reproduced():
    gmacs = {v: count_macs(DEFAULT_SPACE.canonical(v)) / 1e9 for v in VARIANTS}
    assert [round(gmacs[v], 2) for v in VARIANTS] == [0.40, 0.65, 1.25, 2.55]


def test_mes_defaults_and_custom_units():
    mes = MES()
    assert mes(params=3.5e6, latency_ms=0.9) == pytest.approx(102.87, abs=0.01)
    assert mes(params=26.1e6, latency_ms=2.7) == pytest.approx(12.56, abs=0.01)
    assert mes(params=3e6, latency_ms=1.0) == 100.0
    lat_only = MES(units={"latency_ms": 2.0}, alphas={"latency_ms": 1.0})
    assert lat_only(latency_ms=4.0) == 50.0
    with pytest.raises(KeyError, match="energy"):
        mes(energy=1.0)
    with pytest.raises(ValueError):
        mes(latency_ms=0)


def test_space_lookup_and_serialisation(tmp_path):
    assert get_space("tiny") is TINY_SPACE
    p = tmp_path / "space.json"
    p.write_text(json.dumps(TINY_SPACE.to_dict()))
    assert get_space(str(p)) == TINY_SPACE
    with pytest.raises(KeyError, match="unknown search space"):
        get_space("huge")
    assert DEFAULT_SPACE.cardinality() > 10 ** 20


def test_vector_encoding_round_trips_and_samples_are_valid():
    archs = [DEFAULT_SPACE.sample(i) for i in range(30)] + [DEFAULT_SPACE.canonical(v) for v in VARIANTS]
    codes = DEFAULT_SPACE.encode(archs)
    assert codes.shape == (len(archs), DEFAULT_SPACE.encoding_width)
    assert DEFAULT_SPACE.decode(codes) == archs
    sampled = DEFAULT_SPACE.sample_encoded(500, seed=0)
    decoded = DEFAULT_SPACE.decode(sampled)
    for a in decoded:
        DEFAULT_SPACE.validate(a)
    assert (DEFAULT_SPACE.encode(decoded) == sampled).all()
    assert len({a.to_json() for a in decoded}) == 500
    with pytest.raises(ArchError):
        DEFAULT_SPACE.encode([TINY_SPACE.max_arch()])


def test_fits_names_the_variants_a_space_holds():
    assert all(DEFAULT_SPACE.fits(v) for v in ("s0", "s1", "s2", "l"))
    assert not TINY_SPACE.fits("s0") and not DEFAULT_SPACE.fits("s9")


def test_attention_slots_confine_attention_to_the_end_of_its_stages():
    space = CPU_SPACE
    assert space.fits("s0") and space.attn_slots == 2
    may = [[space.may_attend(s, j) for j in range(d)] for s, d in enumerate(space.max_depths)]
    assert may[0] == [False] * 3 and may[2] == [False] * 6 + [True] * 2 and may[3] == [False] * 4 + [True] * 2
    top = space.max_arch()
    assert [[b.attn for b in stage] for stage in top.blocks] == may
    early = top.replace(stage=2, slot=0, attn=True)
    with pytest.raises(ArchError, match="the last 2 slots of stages"):
        space.validate(early)
    for arch in [space.sample(i, attn_prob=1.0) for i in range(50)] + space.decode(space.sample_encoded(300, seed=1)):
        space.validate(arch)
    codes = space.encode([top])
    codes[0, codes.shape[1] - space.num_slots + 3] = 1          # attention in stage 2's first slot
    with pytest.raises(ArchError, match="the last 2 slots"):
        space.check_codes(codes)
    # the supernet holds attention weights only where attention may go
    from nas.supernet.supernet import SlimmableSupernet
    net = SlimmableSupernet(space, num_classes=10, img_size=32)
    assert sum(p.numel() for p in net.parameters()) < 0.6 * sum(
        p.numel() for p in SlimmableSupernet(SearchSpace("all-slots", space.widths, space.max_depths, space.ratios),
                                             num_classes=10, img_size=32).parameters())
    assert count_params(top, img_size=32, num_classes=10) == sum(p.numel() for p in net.extract(top).parameters())


def test_cardinality_counts_every_architecture_once():
    import itertools
    space = SearchSpace("count", ((8, 16), (8,), (8,), (8, 16)), (1, 1, 3, 2), ratios=(2, 4), attn_slots=1)
    total = 1
    for s, d in enumerate(space.max_depths):                 # enumerate every stage: dropped or (ratio, attn)
        states = [[None] + [(r, a) for r in space.ratios for a in (False, True) if not a or space.may_attend(s, j)]
                  for j in range(d)]
        kept = [c for c in itertools.product(*states) if sum(x is not None for x in c) >= space.min_depths[s]]
        total *= len(space.widths[s]) * len(kept)
    assert space.cardinality() == total == 9856
    assert DEFAULT_SPACE.cardinality() == SearchSpace("d", DEFAULT_SPACE.widths, DEFAULT_SPACE.max_depths,
                                                      attn_slots=max(DEFAULT_SPACE.max_depths)).cardinality()


def test_attention_slots_survive_serialisation():
    assert SearchSpace.from_dict(json.loads(json.dumps(CPU_SPACE.to_dict()))) == CPU_SPACE
    assert "attn_slots" not in DEFAULT_SPACE.to_dict()            # tables of the full space read as before
    assert get_space("efficientformerv2-small") is CPU_SPACE
    with pytest.raises(ValueError, match="attn_slots"):
        SearchSpace("bad", CPU_SPACE.widths, CPU_SPACE.max_depths, attn_slots=-1)


def test_the_space_description_imports_without_torch():
    """``nas.space`` (architectures, spaces, encoding, units and their cost) and ``models.configs`` are plain
    data: importing them loads no torch, so projects that only price architectures do not pay for it.
    ``models.EfficientFormerV2`` and ``nas.space.modules.build_unit`` do load it, when first used."""
    root = Path(__file__).resolve().parents[1]
    code = ("import sys; import nas.space, nas.space.encoding, models.configs, models; "
            "from models import VARIANTS, BlockConfig, NetConfig; "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "from models import EfficientFormerV2; assert 'torch' in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
