"""Image folders streamed through DataLoader workers: lazy listing, transforms, sharding, exact resume,
unreadable files, and training / evaluation on a folder."""
import logging
import pickle
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import torchrun_train
from nas.data.datasets import ImageSet, ShardedOrder
from nas.data.folder import ImageFolder, open_dataset, scan_folder
from nas.data.loader import StepSampler, TrainStream, UnreadableBatch, default_workers, eval_batches
from nas.data.transforms import RANDAUG_OPS, EvalTransform, Mixup, RandAugment, TrainTransform, normalize
from nas.space.spaces import TINY_SPACE
from nas.supernet.evaluate import SubnetEvaluator
from nas.supernet.supernet import SlimmableSupernet
from nas.training import ConfigError, TrainConfig, train

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


def make_folder(root: Path, per_class: int = 12, classes: int = 3, size=(24, 20), split: str | None = None):
    """JPEGs ``root/[split/]class{k}/{i}.jpg`` coloured by class, with per-image noise."""
    rng = np.random.default_rng(0)
    for k in range(classes):
        d = root / split / f"class{k}" if split else root / f"class{k}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = np.clip(np.array(COLOURS[k % 3], np.float32) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
            Image.fromarray(a.astype(np.uint8), "RGB").save(d / f"{i:03d}.jpg")
    return root


# -- the folder is listed, not read -------------------------------------------------------------------------
def test_a_folder_is_listed_without_reading_an_image(tmp_path):
    root = tmp_path / "big"
    for k in range(4):
        (root / f"c{k}" / "sub").mkdir(parents=True)
        for i in range(500):                          # not images at all: listing must not open them
            (root / f"c{k}" / ("sub" if i % 2 else "") / f"img_{i:05d}.JPEG").write_bytes(b"x")
    (root / "c0" / "notes.txt").write_text("ignored")
    tr, te = scan_folder(root, "train"), scan_folder(root, "test")
    assert len(tr) == 1800 and len(te) == 200 and tr.classes == ["c0", "c1", "c2", "c3"]
    paths = {tr.path(i) for i in range(len(tr))} | {te.path(i) for i in range(len(te))}
    assert len(paths) == 2000 and all(Path(p).exists() for p in paths)
    # only arrays: no Python object per file, no pixels; ~1 KB per hundred images
    state = vars(tr)
    assert all(isinstance(v, (str, list, np.ndarray)) for v in state.values())
    assert all(v.dtype in (np.uint8, np.int64) for v in state.values() if isinstance(v, np.ndarray))
    assert tr.nbytes < 60 * 2000 and len(pickle.dumps(tr)) < 60 * 2000
    assert torch.bincount(torch.cat([tr.labels, te.labels])).tolist() == [500] * 4
    with pytest.raises(OSError):                      # decoding happens on read only
        tr.read(0)
    sub = tr.subset(100, seed=1)
    assert len(sub) == 100 and sub.nbytes == tr.nbytes - tr._rows.nbytes + sub._rows.nbytes
    assert {sub.path(i) for i in range(100)} <= paths and sub.slice(10, 20).path(0) == sub.path(10)


def test_folder_layouts_and_open_dataset(tmp_path):
    make_folder(tmp_path / "split", per_class=4, split="train")
    make_folder(tmp_path / "split", per_class=2, split="val")
    te = open_dataset(str(tmp_path / "split"), "test")
    assert isinstance(te, ImageFolder) and len(te) == 6 and te.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert te.read(0).mode == "RGB" and te.read(0).size == (24, 20)
    flat = make_folder(tmp_path / "flat", per_class=10)
    tr, te = scan_folder(flat, "train"), scan_folder(flat, "test")
    a = {tr.path(i) for i in range(len(tr))}
    b = {te.path(i) for i in range(len(te))}
    assert len(te) == 3 and not a & b and len(a | b) == 30                 # 90/10, seed 0
    assert b == {scan_folder(flat, "test").path(i) for i in range(3)}
    assert isinstance(open_dataset("fashion-mnist", "test"), ImageSet)
    assert default_workers(open_dataset("fashion-mnist", "test")) == 0 and default_workers(tr) >= 1


# -- transforms -------------------------------------------------------------------------------------------------
def test_transforms_give_uint8_squares_and_flip_and_crop_as_specified():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8), "RGB")
    for seed in range(20):
        x = TrainTransform(32, randaug=RandAugment(9))(img, random.Random(seed))
        assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    e = EvalTransform(16)(img)
    assert e.shape == (3, 16, 16) and torch.equal(e, EvalTransform(16)(img))
    square = img.crop((0, 0, 30, 30))
    whole = TrainTransform(16, scale=(1, 1), ratio=(1, 1), hflip=1.0)(square, random.Random(0))
    assert torch.equal(whole, EvalTransform(16, crop_pct=1.0)(square).flip(-1))
    stripe = np.zeros((40, 40, 3), np.uint8)
    stripe[:, :4] = 255                                                    # a white left edge
    centre = EvalTransform(20, crop_pct=0.5)(Image.fromarray(stripe))
    assert centre.max() == 0                                               # cropped away
    for name, op in RANDAUG_OPS.items():
        out = op(img, 10.0, random.Random(1))
        assert out.size == img.size and out.mode == "RGB", name
    x = normalize(torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2))
    assert x.dtype == torch.float32 and x.min() == -1.0 and x.max() == 1.0


def test_mixup_and_cutmix_mix_images_and_targets_alike():
    x = torch.stack([torch.full((3, 8, 8), float(v)) for v in (0, 1, 2, 3)])
    y = torch.tensor([0, 1, 2, 0])
    xm, ym = Mixup(mixup=0.8)(x, y, 3, np.random.default_rng(0))
    assert ym.shape == (4, 3) and torch.allclose(ym.sum(1), torch.ones(4))
    lam = float(ym[1, 1])                                                  # image 1 mixed with image 2
    assert torch.allclose(xm[1], x[1] * lam + x[2] * (1 - lam))
    xc, yc = Mixup(cutmix=1.0)(x, y, 3, np.random.default_rng(3))
    share = float((xc[0] == 3).float().mean())                            # pixels pasted from image 3
    assert share > 0 and torch.allclose(yc[0], torch.tensor([1.0, 0, 0]))  # same class: stays one-hot
    assert abs(float(yc[1, 1]) - (1 - share)) < 1e-6 and torch.allclose(yc.sum(1), torch.ones(4))
    again = Mixup(0.8, 1.0)(x, y, 3, np.random.default_rng(5))
    assert all(torch.equal(a, b) for a, b in zip(again, Mixup(0.8, 1.0)(x, y, 3, np.random.default_rng(5))))
    same, onehot = Mixup()(x, y, 3, np.random.default_rng(0))
    assert same is x and onehot.argmax(1).tolist() == y.tolist()


# -- sharding and exact resume ----------------------------------------------------------------------------------
def test_step_sampler_shards_each_global_batch_and_resumes_where_it_stopped():
    n, b, world = 70, 6, 3
    glob = list(StepSampler(ShardedOrder(n, b * world, seed=2), 0, 12))
    ranks = [list(StepSampler(ShardedOrder(n, b, seed=2, rank=r, world=world), 0, 12)) for r in range(world)]
    for step in range(12):
        pos = [set(rk[step].positions) for rk in ranks]
        assert all(len(p) == b for p in pos) and len(set().union(*pos)) == b * world         # disjoint
        assert set().union(*pos) == set(glob[step].positions)
        assert sorted(sum((rk[step].indices for rk in ranks), ())) == sorted(glob[step].indices)  # = global batch
        if step * b * world // n == ((step + 1) * b * world - 1) // n:      # within one epoch: distinct images
            assert len(set(sum((rk[step].indices for rk in ranks), ()))) == b * world
    order = ShardedOrder(n, b, seed=2, rank=1, world=world)
    assert list(StepSampler(order, 5, 12)) == ranks[1][5:]                                   # resume
    assert len(StepSampler(order, 5, 12)) == 7
    first = [i for key in glob[:4] for i in key.indices][:n]                                  # epoch 0 covers all
    assert sorted(first) == list(range(n))


def test_stream_batches_are_the_same_with_workers_and_after_a_restart(tmp_path):
    data = scan_folder(make_folder(tmp_path / "f", per_class=8), "train")
    order = ShardedOrder(len(data), 5, seed=1)
    kw = dict(randaug=5, mixup=0.8, cutmix=1.0)
    plain = TrainStream(data, order, 32, 8, workers=0, **kw)
    full = [plain.batch(s) for s in range(8)]
    assert full[0][0].shape == (5, 3, 32, 32) and full[0][1].shape == (5, 3)
    assert not torch.equal(full[0][0], full[5][0])
    with_workers = TrainStream(data, order, 32, 8, workers=2, **kw)
    tail = [with_workers.batch(s) for s in range(3, 8)]                    # a run resumed at step 3
    with_workers.close()
    for (x, y), (x2, y2) in zip(full[3:], tail):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    mem = ImageSet(torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8), torch.arange(40) % 4,
                   list("abcd"), "mem")
    mo = ShardedOrder(40, 8, seed=0)
    a = TrainStream(mem, mo, 32, 6, shift=2)
    b = TrainStream(mem, mo, 32, 6, shift=2, workers=1)
    for s in (0, 4, 5):
        xa, ya = a.batch(s)
        xb, yb = b.batch(s)
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and xa.shape == (8, 3, 32, 32) and ya.dtype == torch.int64
    b.close()


# -- unreadable files ---------------------------------------------------------------------------------------------
def test_unreadable_files_are_dropped_counted_and_logged_once_per_epoch(tmp_path, caplog):
    root = make_folder(tmp_path / "f", per_class=6, classes=2)
    good = (root / "class0" / "000.jpg").read_bytes()
    (root / "class0" / "truncated.jpg").write_bytes(good[:60])
    (root / "class1" / "text.png").write_text("not an image")
    data = scan_folder(root, "train")                                      # listing does not notice them
    bad = sum(Path(data.path(i)).name in ("truncated.jpg", "text.png") for i in range(len(data)))
    assert bad >= 1
    order = ShardedOrder(len(data), len(data), seed=0)                   # one step per epoch
    stream = TrainStream(data, order, 32, 3, workers=1)
    caplog.set_level(logging.WARNING, logger="nas.data.loader")
    sizes = [len(stream.batch(s)[1]) for s in range(3)]
    stream.close()
    assert stream.skipped == 3 * bad and sizes == [len(data) - bad] * 3
    lines = [r.getMessage() for r in caplog.records]
    assert sum("skipping unreadable images" in m for m in lines) == 1                    # the first, named
    per_epoch = [m for m in lines if "in epoch" in m]
    assert len(per_epoch) == 3 and all(f"skipped {bad} unreadable" in m for m in per_epoch)
    caplog.clear()
    test = scan_folder(root, "train")
    out = list(eval_batches(test, 32, 5, workers=1))
    assert sum(len(y) for _, y in out) == len(test) - bad
    assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()][0].startswith(f"skipped {bad}")
    broken = tmp_path / "broken"
    for k in range(2):
        (broken / f"c{k}").mkdir(parents=True)
        (broken / f"c{k}" / "a.jpg").write_bytes(b"junk")
    junk = scan_folder(broken, "train")
    with pytest.raises(UnreadableBatch, match="could be decoded"):
        TrainStream(junk, ShardedOrder(len(junk), 1), 32, 1).batch(0)


# -- training and evaluation on a folder ---------------------------------------------------------------------------
FOLDER_RUN = dict(space="tiny", img_size=32, batch_size=8, eval_size=8, calib_batches=1, progress=False,
                  plot=False, threads=1, eval_every=0, ckpt_every=2)


def test_training_on_a_folder_with_workers_resumes_exactly(tmp_path):
    root = make_folder(tmp_path / "data", per_class=12)
    (root / "class2" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    full = train(TrainConfig(**FOLDER_RUN, dataset=str(root), steps=4, num_workers=2, out=str(tmp_path / "full")))
    assert full["steps"] == 4 and 0 <= full["acc_max"] <= 1
    df = pd.read_csv(tmp_path / "full" / "metrics.csv")
    assert list(df["step"]) == [1, 2, 3, 4] and (df["images_per_s"] > 0).all()
    ck = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    assert ck["args"]["num_workers"] == 2 and ck["meta"]["classes"] == ["class0", "class1", "class2"]
    cut = dict(FOLDER_RUN, dataset=str(root), steps=4, out=str(tmp_path / "cut"))
    train(TrainConfig(**cut, num_workers=2, stop_at=2))                    # killed after step 2
    train(TrainConfig(**cut, num_workers=0, resume=True))                 # resumed with no workers
    a = ck["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_subnet_evaluator_reads_a_folder(tmp_path):
    root = make_folder(tmp_path / "data", per_class=4, split="train")
    make_folder(tmp_path / "data", per_class=3, split="test")
    torch.manual_seed(0)
    net = SlimmableSupernet(TINY_SPACE, num_classes=3, img_size=32)
    ev = SubnetEvaluator.from_dataset(net, str(root), heldout=5, calib_batches=2, batch_size=4, workers=1)
    assert ev.num_heldout == 5 and len(ev.calib) == 2 and ev.calib[0].shape == (4, 3, 32, 32)
    assert 0 <= ev.accuracy(TINY_SPACE.min_arch()) <= 1
    rest = SubnetEvaluator.from_dataset(net, str(root), heldout=None, heldout_start=5, calib_batches=1,
                                        batch_size=4, workers=0)
    assert rest.num_heldout == 4


def test_data_settings_are_validated_and_reach_the_config(tmp_path):
    from nas.cli.train import build_parser, config_from_args
    c = config_from_args(build_parser().parse_args(["--workers", "3", "--randaug", "9", "--mixup", "0.8",
                                                    "--cutmix", "1"]))
    assert (c.num_workers, c.randaug, c.mixup, c.cutmix) == (3, 9, 0.8, 1.0)
    assert TrainConfig().num_workers is None and TrainConfig(num_workers=0).num_workers == 0
    for bad in [dict(num_workers=-1), dict(num_workers=1.5), dict(randaug=11), dict(randaug=-1),
                dict(mixup=-0.1), dict(cutmix=float("nan"))]:
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TrainConfig(**bad)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--workers", "-1"])


@pytest.mark.slow
def test_torchrun_two_processes_train_on_a_folder(tmp_path):
    root = make_folder(tmp_path / "data", per_class=16)
    config = dict(FOLDER_RUN, dataset=str(root), steps=4, num_workers=1, eval_every=2, save_rank_states=True)
    r = torchrun_train(config, tmp_path / "run")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in r.stdout and "1 data worker(s) each" in r.stdout
    s0 = torch.load(tmp_path / "run" / "rank0.pt", weights_only=False)
    s1 = torch.load(tmp_path / "run" / "rank1.pt", weights_only=False)
    for k, v in s0["model"].items():
        assert torch.equal(v, s1["model"][k]), k
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ck["step"] == 4 and ck["args"]["world_size"] == 2 and ck["data"]["global_position"] == 4 * 16
    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(df["step"]) == [1, 2, 3, 4] and df["acc_max"].notna().sum() == 2
