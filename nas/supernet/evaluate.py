"""Accuracy of any subnet of a trained supernet, after BatchNorm recalibration.

A subnet's private BatchNorms saw a mixture of subnets during training, so before it is evaluated their
running statistics are recomputed for it: reset, then a few training batches forwarded in train mode
with ``momentum=None`` (a cumulative average), then eval mode. :class:`SubnetEvaluator` keeps the
calibration batches and the held-out set as tensors in memory, so the search can call
``accuracy(arch)`` hundreds of times without touching the data pipeline::

    net, meta = load_supernet("runs/supernet/last.pt")
    ev = SubnetEvaluator.from_dataset(net, meta["dataset"])
    ev.accuracy(net.space.max_arch())                # a fraction of the held-out images
    ev.correct(net.space.max_arch())                 # per image, for paired comparisons
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn as nn

from nas.core.stats import binomial_stderr
from nas.data.folder import open_dataset
from nas.data.loader import eval_batches, resolve_workers
from nas.space.arch import Arch
from nas.supernet.checkpoint import load_supernet
from nas.supernet.elastic import SwitchableBatchNorm2d
from nas.supernet.supernet import SlimmableSupernet

__all__ = ["recalibrate_bn", "accuracy", "SubnetEvaluator", "load_supernet"]


def _active_bns(net: nn.Module) -> list[nn.BatchNorm2d]:
    """The BatchNorms a forward pass of ``net`` uses: the active private BN of every switchable one,
    and every plain BatchNorm2d."""
    switch = [m for m in net.modules() if isinstance(m, SwitchableBatchNorm2d)]
    inside = {id(b) for m in switch for b in m.bns.values()}
    plain = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in inside]
    return [m.active_bn() for m in switch] + plain


@torch.no_grad()
def recalibrate_bn(net: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Reset the BatchNorms ``net`` currently uses (a supernet's active private ones, or a plain
    network's) and re-estimate their statistics as the cumulative average over ``batches``; returns
    ``net`` in eval mode."""
    bns = _active_bns(net)
    saved = [b.momentum for b in bns]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None
    net.train()
    try:
        for x in batches:
            net(x)
    finally:
        for b, m in zip(bns, saved):
            b.momentum = m
    return net.eval()


@torch.inference_mode()
def accuracy(net: nn.Module, data: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[int, int]:
    """(correct, total) of ``net`` (eval mode) over ``(x, y)`` batches."""
    net.eval()
    correct = total = 0
    for x, y in data:
        correct += int((net(x).argmax(1) == y).sum())
        total += len(y)
    return correct, total


class SubnetEvaluator:
    """``accuracy(arch)``: held-out top-1 of a subnet after recalibrating its BatchNorms.

    ``calib_loader`` and ``heldout_loader`` are iterables of ``(x, y)`` batches (already preprocessed);
    the first ``calib_batches`` of the first and all of the second are copied into memory once. The
    supernet's active BNs are overwritten by every call (each call recalibrates from scratch, so results
    do not depend on call order).
    """

    def __init__(self, supernet: SlimmableSupernet, calib_loader, heldout_loader, calib_batches: int = 8,
                 device: str | torch.device | None = None):
        self.net = supernet
        self.device = torch.device(device) if device else next(supernet.parameters()).device
        self.calib = []
        for i, b in enumerate(calib_loader):
            if i >= calib_batches:
                break
            self.calib.append((b[0] if isinstance(b, (tuple, list)) else b).to(self.device))
        self.heldout = [(x.to(self.device), y.to(self.device)) for x, y in heldout_loader]
        if not self.calib or not self.heldout:
            raise ValueError("SubnetEvaluator needs at least one calibration batch and one held-out batch")

    @classmethod
    def from_dataset(cls, supernet: SlimmableSupernet, dataset: str = "fashion-mnist", heldout: int | None = 2000,
                     calib_batches: int = 8, batch_size: int = 64, seed: int = 0, heldout_start: int = 0,
                     workers: int | None = None, **kw) -> "SubnetEvaluator":
        """Calibration batches from a fixed random draw of the training split, held-out images from the
        test split (``heldout`` of them from position ``heldout_start``; all the rest if None).

        ``dataset`` is ``fashion-mnist``, ``mnist`` or an image folder; a folder's images are resized and
        centre-cropped to the supernet's resolution (:func:`nas.data.loader.eval_batches`), read by
        ``workers`` processes (None: :func:`nas.data.loader.default_workers`), and only the images used
        are read."""
        train = open_dataset(dataset, "train").subset(calib_batches * batch_size, seed=seed)
        test = open_dataset(dataset, "test")
        workers = resolve_workers(workers, train)
        if heldout_start:
            if heldout_start >= len(test):
                raise ValueError(f"the {dataset} test split has {len(test)} images, none from {heldout_start} on")
            test = test.slice(heldout_start, None if heldout is None else heldout_start + heldout)
        return cls(supernet, eval_batches(train, supernet.img_size, batch_size, workers=workers),
                   eval_batches(test, supernet.img_size, 256, limit=heldout, workers=workers),
                   calib_batches=calib_batches, **kw)

    @property
    def num_heldout(self) -> int:
        return sum(len(y) for _, y in self.heldout)

    def recalibrate(self, arch: Arch) -> SlimmableSupernet:
        self.net.set_active(arch)
        return recalibrate_bn(self.net, self.calib)

    def accuracy(self, arch: Arch) -> float:
        """Held-out top-1 of ``arch``: the mean of :meth:`correct`."""
        return float(self.correct(arch).mean())

    def correct(self, arch: Arch) -> np.ndarray:
        """Which held-out images ``arch`` classifies correctly: a bool vector over the held-out images,
        in the same order every call (that of the held-out batches). Its mean is :meth:`accuracy`; two
        archs' vectors are paired image by image (:func:`nas.core.stats.paired_bootstrap`)."""
        self.recalibrate(arch).eval()
        with torch.inference_mode():
            return torch.cat([self.net(x).argmax(1) == y for x, y in self.heldout]).cpu().numpy()

    def standard_error(self, accuracy: float) -> float:
        """The binomial standard error ``sqrt(p (1 - p) / n)`` of an accuracy ``p`` measured on this
        evaluator's ``n`` held-out images."""
        return binomial_stderr(accuracy, self.num_heldout)

    def __call__(self, arch: Arch) -> float:
        return self.accuracy(arch)
