"""Train the slimmable supernet with the sandwich rule and in-place distillation (:mod:`nas.training.sandwich`).

Before evaluation each subnet's private BatchNorms are recalibrated. Under ``torchrun`` every process
trains on its shard of each batch (DDP); the same code runs as a single process otherwise.

Everything random is a function of ``(seed, step)`` -- the data order, the augmentation, the sampled
subnets (the same on every rank) -- and checkpoints hold the model, optimizer, scheduler, step and RNG
states, so resuming continues exactly where an uninterrupted run would be. Outputs in ``config.out``:
``last.pt`` (written atomically), ``metrics.csv``, ``curves.png``, ``args.json``.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from nas.core.distributed import init_distributed
from nas.core.errors import UserError
from nas.core.files import atomic_open, atomic_write_text, claim_output, exclusive, parsing, read_text
from nas.core.plotting import pyplot, save_figure
from nas.data.datasets import ShardedOrder
from nas.data.folder import open_dataset
from nas.data.loader import TrainStream, eval_batches, resolve_workers
from nas.space.spaces import get_space
from nas.supernet.checkpoint import atomic_save, load_checkpoint, supernet_meta
from nas.supernet.evaluate import accuracy, recalibrate_bn
from nas.supernet.pretrained import load_pretrained
from nas.supernet.supernet import SlimmableSupernet
from nas.training.config import TrainConfig
from nas.training.precision import resolve_precision
from nas.training.sandwich import SandwichLoss, lr_schedule, param_groups, sandwich_archs, sandwich_step

__all__ = ["Trainer", "train", "plot_curves", "CSV_FIELDS", "RESUMABLE_CHANGES", "TrainingDiverged"]

log = logging.getLogger(__name__)

CSV_FIELDS = ["step", "epoch", "loss_max", "loss_min", "loss_rand", "lr", "images_per_s", "acc_max", "acc_min",
              "elapsed_s"]
# Settings a resumed run may change: how it is run and reported, not what it computes. Every other setting
# must be the checkpoint's, or the resumed run would silently keep the old value (the optimizer and schedule
# state come from the checkpoint) or continue another run than the one started.
RESUMABLE_CHANGES = ("resume", "overwrite", "progress", "plot", "out", "stop_at", "save_rank_states", "num_workers",
                     "threads", "eval_every", "ckpt_every", "eval_size", "calib_batches", "compile", "channels_last",
                     "init_from")
HELDOUT_BATCH = 256


class TrainingDiverged(UserError, FloatingPointError):
    """A training step whose loss is not finite: training stops there, and nothing of it is saved."""


def train(config: TrainConfig) -> dict:
    """Train the supernet that ``config`` describes (resuming or refusing an existing run in
    ``config.out`` as it says) and return the summary: ``steps``, ``elapsed_s`` (seconds of training
    steps), ``acc_max`` / ``acc_min`` (held-out accuracy at the end) and ``checkpoint`` (the path of
    ``last.pt``). Under ``torchrun`` the process group is set up here and left for the caller to
    destroy."""
    return Trainer(config).run()


class Trainer:
    """One training run: :meth:`setup` loads the data and builds the model, optimizer and schedule,
    :meth:`resume` restores a checkpoint, :meth:`step` trains one sandwich step, :meth:`evaluate`
    measures the largest and smallest subnets, :meth:`checkpoint` saves, :meth:`run` does it all."""

    def __init__(self, config: TrainConfig):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer needs a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.out = Path(config.out)
        self.ckpt_path = self.out / "last.pt"
        self.csv_path = self.out / "metrics.csv"
        self.start = 0
        self.elapsed = 0.0
        self.rows: list[dict] = []
        self.last_acc: dict = {}
        self._saved_step = 0

    # -- set-up ---------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Threads, process group, data, supernet, optimizer and schedule; refuses an ``out`` that
        already holds a run unless resuming or overwriting."""
        c = self.config
        torch.set_num_threads(c.threads)
        self.rank, self.world, self.device = init_distributed()
        self.is_main = self.rank == 0
        self.space = get_space(c.space)
        self.train_set = open_dataset(c.dataset, "train").subset(c.train_subset, c.seed)
        self.test_set = open_dataset(c.dataset, "test")
        self.workers = resolve_workers(c.num_workers, self.train_set)
        if self.is_main:
            log.info(f"train: {len(self.train_set)} images from {self.train_set.source}; held-out: "
                     f"{min(c.eval_size, len(self.test_set))} of {len(self.test_set)} test images; space "
                     f"{self.space.name}; {self.world} process(es) on {self.device}, {self.workers} data "
                     f"worker(s) each")

        torch.manual_seed(c.seed)
        self.net = SlimmableSupernet(self.space, num_classes=self.train_set.num_classes,
                                     img_size=c.img_size).to(self.device)
        if c.init_from and not (c.resume and self.ckpt_path.exists()):      # a resumed run has its weights
            report = load_pretrained(self.net, c.init_from)
            if self.is_main:
                log.info(report["summary"])
        self.opt = torch.optim.AdamW(param_groups(self.net, c.weight_decay), lr=c.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_schedule(c.steps, c.warmup, c.lr, c.min_lr))
        self.precision = resolve_precision(c.precision, self.device)
        self.scaler = self.precision.grad_scaler()
        if c.channels_last:                 # parameters keep their identity: the optimizer still holds them
            self.net.to(memory_format=torch.channels_last)
        self.meta = supernet_meta(self.net, dataset=c.dataset, classes=self.train_set.classes)
        self.run_args = {**c.to_dict(), "world_size": self.world}
        if self.ckpt_path.exists() and not (c.resume or c.overwrite):
            raise UserError(f"{self.out} already holds a run ({self.ckpt_path}); continue it with --resume, or "
                            f"replace it with --overwrite (or pick another --out)")
        self.order = ShardedOrder(len(self.train_set), c.batch_size, c.seed, self.rank, self.world)
        self.stream = TrainStream(self.train_set, self.order, c.img_size, c.steps, workers=self.workers,
                                  shift=c.shift, randaug=c.randaug, mixup=c.mixup, cutmix=c.cutmix,
                                  device=self.device)

    def resume(self) -> int:
        """Restore ``out/last.pt`` if resuming and it exists (every setting but
        :data:`RESUMABLE_CHANGES` must be the checkpoint's); returns the step training continues from."""
        c = self.config
        if c.resume and self.ckpt_path.exists():
            ck = load_checkpoint(self.ckpt_path)
            old = ck.get("args") if isinstance(ck.get("args"), dict) else {}
            bad = {k: (old[k], v) for k, v in self.run_args.items()
                   if k in old and k not in RESUMABLE_CHANGES and old[k] != v}
            if bad:
                said = "; ".join(f"{k} {a!r} there, {b!r} now" for k, (a, b) in bad.items())
                raise UserError(f"--resume: {self.ckpt_path} was started with other settings ({said}); resume it "
                                f"with its own settings, or start a new run with --overwrite or another --out")
            self.net.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["optimizer"])
            self.sched.load_state_dict(ck["scheduler"])
            _set_rng_state(ck["rng"])
            self.start, self.elapsed = ck["step"], ck.get("elapsed_s", 0.0)
            self._saved_step = self.start
            if self.is_main:
                log.info(f"resumed from {self.ckpt_path} at step {self.start} (data position {ck['data']})")
        elif c.resume and self.is_main:
            log.info(f"--resume: no checkpoint at {self.ckpt_path}, starting from step 0")
        return self.start

    def prepare(self) -> None:
        """Start the outputs (metrics kept up to the resumed step, ``args.json``), wrap the model for DDP
        and load the evaluation data: the same calibration batches on every rank, the held-out images
        split by rank."""
        c = self.config
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.rows = [r for r in _read_csv(self.csv_path) if int(r["step"]) <= self.start] if self.start else []
            _write_csv(self.csv_path, self.rows)
            atomic_write_text(self.out / "args.json", json.dumps(self.run_args, indent=1))

        self.model: nn.Module = SandwichLoss(self.net, c.label_smoothing)
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        if c.compile:
            self.model = torch.compile(self.model, dynamic=True)

        calib_set = self.train_set.subset(c.calib_batches * c.batch_size, seed=c.seed + 1)
        self.calib = [x.to(self.device) for x, _ in eval_batches(calib_set, c.img_size, c.batch_size,
                                                                 workers=self.workers)]
        n_eval = min(c.eval_size, len(self.test_set))
        idx = torch.arange(self.rank, n_eval, self.world)
        self.heldout = [(x.to(self.device), y.to(self.device))
                        for x, y in eval_batches(self.test_set, c.img_size, HELDOUT_BATCH, idx, workers=self.workers)]

    # -- one step, evaluation, checkpoint ------------------------------------------------------------------
    def step(self, step: int) -> dict:
        """Train step ``step`` (0-based) and return its ``metrics.csv`` row (accuracy columns empty)."""
        c = self.config
        t0 = time.perf_counter()
        x, y = self.stream.batch(step)        # this rank's share of the step, on the device
        if c.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.opt.zero_grad(set_to_none=True)
        parts = sandwich_step(self.model, x, y, sandwich_archs(self.space, c.seed, step, c.num_random),
                              precision=self.precision, scaler=self.scaler, accum_steps=c.accum_steps,
                              no_sync=self.model.no_sync if self.world > 1 else None)
        if c.clip_grad > 0:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.net.parameters(), c.clip_grad)
        lr = self.opt.param_groups[0]["lr"]
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        dt = time.perf_counter() - t0
        self.elapsed += dt
        done = step + 1
        parts = parts.float().cpu().tolist()
        gb = self.order.global_batch
        return {"step": done, "epoch": f"{done * gb / len(self.train_set):.4f}",
                "loss_max": f"{parts[0]:.5f}", "loss_min": f"{parts[1]:.5f}",
                "loss_rand": f"{np.mean(parts[2:]):.5f}" if len(parts) > 2 else "",
                "lr": f"{lr:.3e}", "images_per_s": f"{gb / dt:.2f}", "acc_max": "", "acc_min": "",
                "elapsed_s": f"{self.elapsed:.1f}"}

    def _check_finite(self, row: dict, step: int) -> None:
        """Stop with :class:`TrainingDiverged` when step ``step``'s loss is not finite on any rank (every rank
        stops): nothing of that step or later is saved, and the message names the last good checkpoint."""
        losses = [float(row[k]) for k in ("loss_max", "loss_min", "loss_rand") if row[k] != ""]
        bad = not all(math.isfinite(v) for v in losses)
        if self.world > 1:
            flag = torch.tensor([float(bad)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            bad = bool(flag.item())
        if not bad:
            return
        last = (f"the last good checkpoint is {self.ckpt_path} (step {self._saved_step})" if self._saved_step
                else "no checkpoint was written")
        raise TrainingDiverged(f"training diverged at step {step}: the loss is not finite (max {row['loss_max']}, "
                               f"min {row['loss_min']}); stopped without saving it, {last}. Lower --lr (now "
                               f"{self.config.lr:g}), check --init-from weights, or use --precision fp32")

    def sync_buffers(self) -> None:
        """Average the BN running statistics over ranks (each rank updates them on its own shard; DDP
        only copies rank 0's at the next forward), so checkpoints and every rank agree."""
        if self.world > 1:
            with torch.no_grad():
                for b in self.net.buffers():
                    if b.is_floating_point():
                        dist.all_reduce(b)
                        b.div_(self.world)

    def evaluate(self) -> dict:
        """Held-out accuracy of the largest and smallest subnets after BN recalibration:
        ``{"max": ..., "min": ...}`` (summed over ranks)."""
        self.sync_buffers()
        accs = {}
        for kind, arch in (("max", self.space.max_arch()), ("min", self.space.min_arch())):
            self.net.set_active(arch)
            recalibrate_bn(self.net, self.calib)
            c, n = accuracy(self.net, self.heldout)
            if self.world > 1:
                t = torch.tensor([c, n], dtype=torch.float64, device=self.device)
                dist.all_reduce(t)
                c, n = t.tolist()
            accs[kind] = c / n
        self.net.train()
        return accs

    def checkpoint(self, step: int) -> None:
        """Save ``last.pt`` after ``step`` steps and the metrics so far (rank 0; every rank waits)."""
        self.sync_buffers()
        if self.is_main:
            atomic_save({"model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                         "scheduler": self.sched.state_dict(), "step": step, "rng": _rng_state(),
                         "data": self.order.position(step), "elapsed_s": self.elapsed, "args": self.run_args,
                         "meta": self.meta}, self.ckpt_path)
            _write_csv(self.csv_path, self.rows)
        self._saved_step = step
        if self.world > 1:
            dist.barrier()

    def save_rank_state(self) -> Path:
        """Write this rank's synchronised weights to ``out/rank{r}.pt``."""
        self.sync_buffers()
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"rank{self.rank}.pt"
        atomic_save({"model": self.net.state_dict(), "rank": self.rank, "world": self.world}, path)
        return path

    # -- the run ------------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Set up (:meth:`setup`, :meth:`resume`, :meth:`prepare`), train to ``config.steps``
        (evaluating, checkpointing and plotting on schedule) and return the summary (see :func:`train`)."""
        with contextlib.ExitStack() as stack:
            if int(os.environ.get("RANK", "0")) == 0:          # the one writer of the run folder
                claim_output(self.out, folder=True)
                stack.enter_context(exclusive(self.out, "training run", folder=True))
            return self._run()

    def _run(self) -> dict:
        c = self.config
        self.setup()
        self.resume()
        self.prepare()
        bar = None
        if self.is_main and c.progress:
            bar = tqdm(total=c.steps, initial=self.start, desc="supernet", dynamic_ncols=True,
                       mininterval=1.0 if sys.stderr.isatty() else 30.0)
        self.net.train()
        try:
            for step in range(self.start, c.steps):
                row = self.step(step)
                done = row["step"]
                self._check_finite(row, done)
                if (c.eval_every and done % c.eval_every == 0) or done == c.steps:
                    self.last_acc = self.evaluate()
                    row["acc_max"], row["acc_min"] = f"{self.last_acc['max']:.4f}", f"{self.last_acc['min']:.4f}"
                    if self.is_main:
                        with tqdm.external_write_mode():
                            log.info(f"step {done}: held-out acc max {self.last_acc['max']:.4f} "
                                     f"min {self.last_acc['min']:.4f}")
                self.rows.append(row)
                if bar:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(row['loss_max']):.3f}",
                                    img_s=f"{float(row['images_per_s']):.1f}", refresh=False)
                if done % c.ckpt_every == 0 or done == c.steps:
                    self.checkpoint(done)
                    if self.is_main and c.plot and (row["acc_max"] or done == c.steps):
                        plot_curves(self.csv_path, self.out / "curves.png")
                if c.stop_at is not None and done >= c.stop_at:
                    break
        finally:
            self.stream.close()
            if bar:
                bar.close()
        if self.start >= c.steps:
            self.last_acc = self.evaluate()
        if c.save_rank_states:
            self.save_rank_state()
        summary = {"steps": c.steps, "elapsed_s": self.elapsed, "acc_max": self.last_acc.get("max"),
                   "acc_min": self.last_acc.get("min"), "checkpoint": str(self.ckpt_path)}
        if self.is_main:
            log.info(json.dumps(summary))
        return summary


# -- outputs ------------------------------------------------------------------------------------------
def plot_curves(csv_path: str | Path, png_path: str | Path) -> Path:
    """Losses per subnet kind and held-out accuracy of max/min against the step."""
    plt = pyplot()
    df = pd.read_csv(csv_path)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    win = max(1, len(df) // 50)
    for col, label in [("loss_max", "max (CE)"), ("loss_min", "min (KL to max)"), ("loss_rand", "random (KL)")]:
        a1.plot(df["step"], df[col].rolling(win, min_periods=1).mean(), label=label)
    a1.set_xlabel("step"); a1.set_ylabel("loss"); a1.set_yscale("log"); a1.legend(); a1.set_title("training loss")
    ev = df.dropna(subset=["acc_max"])
    a2.plot(ev["step"], ev["acc_max"], "o-", label="max subnet")
    a2.plot(ev["step"], ev["acc_min"], "s-", label="min subnet")
    a2.set_xlabel("step"); a2.set_ylabel("held-out accuracy"); a2.legend(); a2.set_title("after BN recalibration")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, png_path, dpi=110)


def _read_csv(path: Path) -> list[dict]:
    """The rows of a run's ``metrics.csv`` ([] when there is none); a :class:`UserError` naming it when it
    is not one (binary, a folder, rows without a whole step number)."""
    if not path.exists():
        return []
    text = read_text(path, "training metrics", UserError, fix=f"delete it ({path.parent / 'last.pt'} holds the run)")
    with parsing(path, "training metrics", UserError, f"delete it ({path.parent / 'last.pt'} holds the run)"):
        reader = csv.DictReader(io.StringIO(text))
        if "step" not in (reader.fieldnames or []):
            raise KeyError("step")
        rows = list(reader)
        for r in rows:
            int(r["step"])
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    with atomic_open(path, "w") as f:
        w = csv.DictWriter(f, CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)


def _rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])
