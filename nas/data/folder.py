"""Image folders of any size, read lazily: only the file list is held in memory.

:func:`scan_folder` lists a folder in one of the layouts :func:`~nas.data.datasets.load_dataset` knows
(``DIR/<class>/...`` split 90/10 with seed 0, or ``DIR/train/<class>/...`` plus ``DIR/test/`` or
``DIR/val/``) without opening a single image. The result, :class:`ImageFolder`, keeps the relative paths
as one ``uint8`` array with offsets and the labels as an ``int64`` array -- about 40 bytes per image, no
Python object per file, so the pages that data-loader workers inherit are never copied by reference
counting. :meth:`ImageFolder.read` decodes one image with PIL (as RGB) when it is needed.

:func:`open_dataset` is what training and evaluation use: the in-memory :class:`~nas.data.datasets.ImageSet`
for the offline sets (``fashion-mnist``, ``mnist``), an :class:`ImageFolder` for a folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nas.data.datasets import (IMG_EXT, DatasetMissing, ImageSet, folder_layout, image_files, load_dataset,
                               split_rows)

__all__ = ["ImageFolder", "scan_folder", "open_dataset", "is_offline_set", "TEST_FRACTION"]

TEST_FRACTION = 0.1
_OFFLINE = {"fashion-mnist", "fashionmnist", "fmnist", "mnist"}


def is_offline_set(name: str) -> bool:
    """Whether ``name`` is one of the offline in-memory sets rather than a folder path."""
    return name.lower().replace("_", "-") in _OFFLINE


class ImageFolder:
    """Images of a folder, listed but not read: ``files[i]`` (a path) has label ``labels[i]``.

    ``roots[k]`` is the folder of class ``k`` (the paths are stored relative to it). ``subset``, ``slice``
    and ``take`` return views over other rows of the same list.
    """

    def __init__(self, roots: list[Path], classes: list[str], blob: np.ndarray, offsets: np.ndarray,
                 rows: np.ndarray, labels: np.ndarray, name: str, source: str):
        self.roots = [str(r) for r in roots]
        self.classes = list(classes)
        self.name, self.source = name, source
        self._blob, self._offsets = blob, offsets        # every listed path; rows select this view's
        self._rows = rows.astype(np.int64, copy=False)
        self._labels = labels.astype(np.int64, copy=False)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"ImageFolder({self.source!r}, {len(self)} images, {self.num_classes} classes)"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(self._labels[self._rows])

    @property
    def nbytes(self) -> int:
        """Bytes of the file list (shared by every view of it)."""
        return self._blob.nbytes + self._offsets.nbytes + self._labels.nbytes + self._rows.nbytes

    def path(self, i: int) -> str:
        r = int(self._rows[i])
        rel = self._blob[self._offsets[r]:self._offsets[r + 1]].tobytes().decode("utf-8", "surrogateescape")
        return os.path.join(self.roots[int(self._labels[r])], rel)

    def label(self, i: int) -> int:
        return int(self._labels[self._rows[i]])

    def read(self, i: int) -> Image.Image:
        """Image ``i`` decoded as RGB; raises whatever PIL raises for a file that is not a readable image."""
        with Image.open(self.path(i)) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):        # 16/32-bit grey: scale to 8 bits
                a = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode != "I" or a.max() > 255 else 255.0
                im = Image.fromarray(np.clip(a * (255.0 / top), 0, 255).astype(np.uint8), "L")
            return im if im.mode == "RGB" else im.convert("RGB")

    def take(self, idx, source: str | None = None) -> "ImageFolder":
        """The images at positions ``idx`` of this view."""
        idx = np.asarray(idx, dtype=np.int64)
        return ImageFolder(self.roots, self.classes, self._blob, self._offsets, self._rows[idx], self._labels,
                           self.name, source or f"{self.source} ({len(idx)} images)")

    def slice(self, start: int, stop: int | None = None) -> "ImageFolder":
        """Images ``[start, stop)`` in their stored order."""
        stop = len(self) if stop is None else min(stop, len(self))
        return self.take(np.arange(start, stop), f"{self.source} [{start}:{stop}]")

    def subset(self, n: int | None, seed: int = 0) -> "ImageFolder":
        """The first ``n`` images of a fixed random permutation, in stored order (all if ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return self.take(idx.numpy(), self.source + f" (subset {n})")


def _list_images(class_dirs: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every image file under each of ``class_dirs`` (recursively, sorted by relative path): the paths
    relative to their class folder as one byte array with offsets, and the labels."""
    chunks: list[bytes] = []
    lengths: list[int] = []
    labels: list[int] = []
    for k, d in enumerate(class_dirs):
        if not d.is_dir():
            continue
        enc = [r.encode("utf-8", "surrogateescape") for r in image_files(d)]
        chunks.append(b"".join(enc))
        lengths.extend(map(len, enc))
        labels.extend([k] * len(enc))
    blob = np.frombuffer(b"".join(chunks), dtype=np.uint8).copy()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=offsets[1:])
    return blob, offsets, np.asarray(labels, dtype=np.int64)


def scan_folder(path: str | Path, split: str = "train", test_fraction: float = TEST_FRACTION) -> ImageFolder:
    """List the ``split`` (``train`` or ``test``) images of an image folder without reading them.

    Layouts: ``DIR/train/<class>/...`` with ``DIR/test/<class>/...`` (or ``val``), classes from
    ``train/``; or ``DIR/<class>/...``, whose files are split ``1 - test_fraction`` / ``test_fraction``
    by a permutation with seed 0. Raises :class:`~nas.data.datasets.DatasetMissing` saying what is
    expected if the folder is not one of them or holds no image files.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    path = Path(path).expanduser()
    classes, roots, both_splits, source = folder_layout(path, split)
    blob, offsets, labels = _list_images(roots)
    rows = np.arange(len(labels))
    if both_splits:
        rows = split_rows(len(labels), split, test_fraction)
        share = f"{round(100 * (1 - test_fraction))}%" if split == "train" else f"{round(100 * test_fraction)}%"
        source = f"{path} ({share} split, seed 0)"
    if not len(rows):
        raise DatasetMissing(f"no images ({', '.join(sorted(IMG_EXT))}) for the {split} split under {path}")
    return ImageFolder(roots, classes, blob, offsets, rows, labels, path.name, source)


def open_dataset(name: str = "fashion-mnist", split: str = "train", root: str | Path | None = None,
                 allow_subset: bool = True) -> ImageSet | ImageFolder:
    """The ``split`` of dataset ``name`` for training or evaluation: the offline sets in memory
    (:func:`~nas.data.datasets.load_dataset`), a folder as a lazy :class:`ImageFolder`."""
    if is_offline_set(name):
        return load_dataset(name, split, root=root, allow_subset=allow_subset)
    return scan_folder(name, split)
