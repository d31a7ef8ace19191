import os
import random

import pandas as pd
import pytest
import torch

from conftest import torchrun_train
from nas.core.distributed import launch
from nas.supernet.checkpoint import load_supernet
from nas.data.datasets import batches, load_dataset
from nas.supernet.evaluate import SubnetEvaluator, accuracy, recalibrate_bn
from nas.space.spaces import CPU_SPACE, DEFAULT_SPACE, TINY_SPACE
from nas.supernet.supernet import SlimmableSupernet
from nas.cli.train import main
from nas.training import TrainConfig, train
from nas.training.config import default_space
from nas.training.sandwich import sandwich_archs

TINY = ["--space", "tiny", "--img-size", "64", "--batch-size", "16", "--train-subset", "800", "--eval-size", "200",
        "--calib-batches", "2", "--no-progress", "--threads", "1"]
TINY_CONFIG = dict(space="tiny", img_size=64, batch_size=16, train_subset=800, eval_size=200, calib_batches=2, progress=False,
                   threads=1)


def _run(tmp, *extra):
    main(TINY + ["--out", str(tmp)] + [str(e) for e in extra])
    return pd.read_csv(tmp / "metrics.csv")


def test_few_steps_reduce_the_loss_and_write_outputs(tmp_path):
    df = _run(tmp_path, "--steps", 40, "--eval-every", 20, "--ckpt-every", 20, "--lr", "3e-3")
    assert list(df["step"]) == list(range(1, 41))
    assert df["loss_max"].iloc[-8:].mean() < df["loss_max"].iloc[:3].mean() - 0.3     # starts at ~ln 10 = 2.30
    assert df["acc_max"].notna().sum() == 2 and df["acc_max"].iloc[-1] > 0.3        # chance is 0.1
    assert (df["images_per_s"] > 0).all() and df["lr"].iloc[0] < df["lr"].iloc[5]    # warm-up
    assert (tmp_path / "curves.png").stat().st_size > 1000
    net, meta = load_supernet(tmp_path / "last.pt")
    assert meta["space_name"] == "tiny" and meta["img_size"] == 64 and meta["num_classes"] == 10
    assert meta["step"] == 40 and net.space == TINY_SPACE and not net.training


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    common = ["--steps", 24, "--eval-every", 10, "--ckpt-every", 7, "--no-plot"]
    full = _run(tmp_path / "full", *common)
    train(TrainConfig(**TINY_CONFIG, out=str(tmp_path / "cut"), steps=24, eval_every=10, ckpt_every=7, plot=False,
                      stop_at=16))                            # interrupted after step 16: last checkpoint 14
    ck = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert ck["step"] == 14 and ck["data"]["global_position"] == 14 * 16
    assert not list((tmp_path / "cut").glob("*.tmp"))        # atomic write left no temp file
    resumed = _run(tmp_path / "cut", *common, "--resume")
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, st in a["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
    assert a["scheduler"] == b["scheduler"]
    cols = ["step", "loss_max", "loss_min", "loss_rand", "lr", "acc_max", "acc_min"]
    pd.testing.assert_frame_equal(full[cols], resumed[cols])   # rows after the checkpoint were redone once
    assert main(TINY + ["--out", str(tmp_path / "cut"), *map(str, common), "--resume", "--seed", "1"]) == 2


def test_sandwich_is_a_function_of_seed_and_step():
    a, b = sandwich_archs(TINY_SPACE, 0, 5, 2), sandwich_archs(TINY_SPACE, 0, 5, 2)
    assert [k for k, _ in a] == ["max", "min", "rand0", "rand1"] and a == b
    assert a[0][1] == TINY_SPACE.max_arch() and a[1][1] == TINY_SPACE.min_arch()
    assert sandwich_archs(TINY_SPACE, 0, 6, 2)[2:] != a[2:]


def test_evaluator_matches_the_recalibrated_standalone_subnet(randomize):
    torch.manual_seed(0)
    net = randomize(SlimmableSupernet(TINY_SPACE, num_classes=10, img_size=64), seed=1, scale=0.2)
    train = load_dataset("fashion-mnist", "train").subset(64, seed=0)
    test = load_dataset("fashion-mnist", "test")
    calib = list(batches(train, 64, 32))
    held = list(batches(test, 64, 100, limit=300))
    ev = SubnetEvaluator(net, calib, held, calib_batches=2)
    assert ev.num_heldout == 300 and len(ev.calib) == 2
    rng = random.Random(0)
    archs = [TINY_SPACE.max_arch(), TINY_SPACE.min_arch(), TINY_SPACE.sample(rng), TINY_SPACE.sample(rng)]
    accs = [ev.accuracy(a) for a in archs]
    for arch, acc in zip(archs, accs):
        sub = net.extract(arch)
        for m in sub.modules():                     # stale statistics, so recalibration must do the work
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(3.0)
        recalibrate_bn(sub, [x for x, _ in calib])
        c, n = accuracy(sub, held)
        assert c / n == acc
        x = held[0][0][:8]
        with torch.no_grad():
            torch.testing.assert_close(sub(x), ev.recalibrate(arch)(x), atol=1e-4, rtol=1e-4)
    assert [ev.accuracy(a) for a in reversed(archs)] == accs[::-1]          # independent of call order


@pytest.mark.slow
def test_torchrun_two_processes_end_with_identical_weights(tmp_path):
    r = torchrun_train(dict(TINY_CONFIG, steps=6, eval_every=3, ckpt_every=3, plot=False, save_rank_states=True),
                       tmp_path)                      # the library under torchrun, writing OUT/rank{r}.pt
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in r.stdout
    s0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    s1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert (s0["world"], s1["rank"]) == (2, 1)
    init = SlimmableSupernet(TINY_SPACE, 10, 64).state_dict()
    moved = 0
    for k, v in s0["model"].items():
        assert torch.equal(v, s1["model"][k]), k
        moved += v.is_floating_point() and not torch.equal(v, init[k])
    assert moved > 20                                   # training changed the weights
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ck["step"] == 6 and ck["args"]["world_size"] == 2
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert list(df["step"]) == list(range(1, 7)) and df["acc_max"].notna().sum() == 2


def test_config_defaults_match_the_command_line_and_refuse_impossible_values(tmp_path):
    from nas.cli.train import build_parser, config_from_args
    from nas.core.errors import UserError
    assert config_from_args(build_parser().parse_args([])) == TrainConfig()
    c = TrainConfig(out=tmp_path, steps=1000)
    assert c.out == str(tmp_path) and c.warmup == 50 and TrainConfig(steps=5).warmup == 1
    assert TrainConfig(warmup=0).warmup == 0
    for bad in [dict(steps=0), dict(batch_size=2.5), dict(lr=float("nan")), dict(lr=0), dict(threads=True),
                dict(train_subset=0), dict(label_smoothing=1.5), dict(clip_grad=-1), dict(warmup=-1),
                dict(space="")]:
        with pytest.raises(UserError, match=next(iter(bad))):
            TrainConfig(**bad)
    for hook in ("--stop-at", "--save-rank-states"):           # test hooks of the library, not options
        with pytest.raises(SystemExit):
            build_parser().parse_args([hook, "1"] if hook == "--stop-at" else [hook])


def test_the_default_space_follows_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert TrainConfig().space == default_space() == CPU_SPACE.name      # S0's neighbourhood on a CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert TrainConfig().space == DEFAULT_SPACE.name                     # the full space with CUDA
    assert TrainConfig(space="tiny").space == "tiny"


def _world_and_rank():
    return os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "0")


@pytest.mark.slow
def test_launch_runs_a_function_under_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launch(_world_and_rank, nproc=1) == ("1", "0")                # one process: called here
    assert launch(_world_and_rank, nproc=2) == ("2", "0")                # rank 0's answer of two

