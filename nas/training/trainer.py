"""Train the slimmable supernet with the sandwich rule and in-place distillation.

Every step trains the largest subnet on the labels and the smallest plus ``--num-random`` random subnets
on the largest one's soft labels (KL divergence), with one backward pass over the summed loss. AdamW,
linear warm-up then cosine decay. Before evaluation each subnet's private BatchNorms are recalibrated.

    python -m nas.train_supernet                                  # default space, Fashion-MNIST, 64 px
    python -m nas.train_supernet --resume                         # continue runs/supernet/last.pt
    torchrun --nproc_per_node 4 -m nas.train_supernet --steps 20000 --batch-size 128

Everything random is a function of ``(seed, step)`` -- the data order, the augmentation, the sampled
subnets (the same on every rank) -- and checkpoints hold the model, optimizer, scheduler, step and RNG
states, so ``--resume`` continues exactly where an uninterrupted run would be. Outputs in ``--out``:
``last.pt`` (written atomically), ``metrics.csv``, ``curves.png``, ``args.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from nas.core.cli import nonnegative_int, positive_float, positive_int
from nas.supernet.checkpoint import atomic_save, load_checkpoint, supernet_meta
from nas.core.distributed import init_distributed
from nas.data.datasets import ShardedOrder, batches, load_dataset, to_input
from nas.core.cli import command
from nas.core.errors import UserError
from nas.supernet.evaluate import accuracy, recalibrate_bn
from nas.space.spaces import Arch, SearchSpace, get_space
from nas.supernet.supernet import SlimmableSupernet

__all__ = ["main", "train", "parse_args", "sandwich_archs", "SandwichLoss"]

CSV_FIELDS = ["step", "epoch", "loss_max", "loss_min", "loss_rand", "lr", "images_per_s", "acc_max", "acc_min",
              "elapsed_s"]
# Arguments that must match for --resume to continue the same run.
RESUME_KEYS = ["space", "dataset", "img_size", "batch_size", "num_random", "seed", "train_subset", "world_size"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nas.train_supernet", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--space", default="efficientformerv2", help="search space name (efficientformerv2, tiny) or JSON")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist, mnist, or an ImageFolder-style folder")
    p.add_argument("--img-size", type=positive_int, default=64, help="input resolution (a multiple of 32)")
    p.add_argument("--steps", type=positive_int, default=400, help="total optimizer steps")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per step and process")
    p.add_argument("--lr", type=positive_float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.025)
    p.add_argument("--warmup", type=nonnegative_int, default=None, help="warm-up steps (default: 5%% of --steps)")
    p.add_argument("--num-random", type=nonnegative_int, default=2, help="random subnets per step besides max and min")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="for the largest subnet's CE loss")
    p.add_argument("--clip-grad", type=float, default=2.0, help="gradient-norm clip (0: off)")
    p.add_argument("--shift", type=int, default=2, help="random translation in native pixels (0: off)")
    p.add_argument("--out", default="runs/supernet", help="checkpoint / metrics folder")
    p.add_argument("--ckpt-every", type=positive_int, default=50, help="steps between checkpoints")
    p.add_argument("--eval-every", type=nonnegative_int, default=100, help="steps between evaluations (0: only at the end)")
    p.add_argument("--eval-size", type=positive_int, default=1000, help="held-out (test split) images per evaluation")
    p.add_argument("--calib-batches", type=positive_int, default=4, help="training batches for BN recalibration")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an OUT that already holds a run (its checkpoint and metrics are replaced)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads per process")
    p.add_argument("--train-subset", type=positive_int, default=None, help="train on a fixed random N-image subset")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--no-plot", action="store_true", help="skip curves.png")
    p.add_argument("--stop-at", type=int, default=None, help=argparse.SUPPRESS)  # tests: stop as if killed
    p.add_argument("--save-rank-states", action="store_true", help=argparse.SUPPRESS)  # tests: OUT/rank{r}.pt
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = max(1, round(0.05 * args.steps))
    return args


# -- the sandwich -----------------------------------------------------------------------------------
def sandwich_archs(space: SearchSpace, seed: int, step: int, num_random: int) -> list[tuple[str, Arch]]:
    """max, min and ``num_random`` random subnets for ``step``: the same on every rank and on resume."""
    rng = random.Random(f"sandwich:{seed}:{step}")
    return ([("max", space.max_arch()), ("min", space.min_arch())]
            + [(f"rand{i}", space.sample(rng)) for i in range(num_random)])


class SandwichLoss(nn.Module):
    """One forward over every subnet of a step: CE on the largest, KL to its (detached) soft labels for
    the rest. Returns ``(total, per-subnet losses)``; a single module call keeps DDP's bookkeeping of
    which parameters took part exact."""

    def __init__(self, net: SlimmableSupernet, label_smoothing: float = 0.1):
        super().__init__()
        self.net, self.label_smoothing = net, label_smoothing

    def forward(self, x, y, archs: list[tuple[str, Arch]]):
        losses = []
        soft = None
        for kind, arch in archs:
            self.net.set_active(arch)
            out = self.net(x)
            if soft is None:
                losses.append(F.cross_entropy(out, y, label_smoothing=self.label_smoothing))
                soft = out.detach().softmax(-1)
            else:
                losses.append(F.kl_div(out.log_softmax(-1), soft, reduction="batchmean"))
        parts = torch.stack(losses)
        return parts.sum(), parts.detach()


def _param_groups(net: nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for n, p in net.named_parameters():
        (no_decay if p.ndim <= 1 or "attention_biases" in n else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(steps: int, warmup: int, lr: float, min_lr: float):
    def f(step):
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return (min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))) / lr
    return f


def _rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict):
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# -- outputs ------------------------------------------------------------------------------------------
def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, rows: list[dict]):
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def plot_curves(csv_path: str | Path, png_path: str | Path) -> Path:
    """Losses per subnet kind and held-out accuracy of max/min against the step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
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
    png_path = Path(png_path)
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path


# -- training -----------------------------------------------------------------------------------------
def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    rank, world, device = init_distributed()
    is_main = rank == 0
    out = Path(args.out)
    ckpt_path = out / "last.pt"
    space = get_space(args.space)

    train_set = load_dataset(args.dataset, "train", img_size=args.img_size).subset(args.train_subset, args.seed)
    test_set = load_dataset(args.dataset, "test", img_size=args.img_size)
    if is_main:
        print(f"train: {len(train_set)} images from {train_set.source}; held-out: {min(args.eval_size, len(test_set))}"
              f" of {len(test_set)} test images; space {space.name}; {world} process(es) on {device}", flush=True)

    torch.manual_seed(args.seed)
    net = SlimmableSupernet(space, num_classes=train_set.num_classes, img_size=args.img_size).to(device)
    opt = torch.optim.AdamW(_param_groups(net, args.weight_decay), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(args.steps, args.warmup, args.lr, args.min_lr))
    meta = supernet_meta(net, dataset=args.dataset, classes=train_set.classes)
    run_args = {**vars(args), "world_size": world}

    start, elapsed = 0, 0.0
    if ckpt_path.exists() and not (args.resume or args.overwrite):
        raise UserError(f"{out} already holds a run ({ckpt_path}); continue it with --resume, or replace "
                         f"it with --overwrite (or pick another --out)")
    if args.resume and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        bad = {k: (ck["args"].get(k), run_args.get(k)) for k in RESUME_KEYS if ck["args"].get(k) != run_args.get(k)}
        if bad:
            raise UserError(f"--resume: {ckpt_path} was written with different settings {bad} (checkpoint, now)")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"])
        start, elapsed = ck["step"], ck.get("elapsed_s", 0.0)
        if is_main:
            print(f"resumed from {ckpt_path} at step {start} (data position {ck['data']})", flush=True)
    elif args.resume and is_main:
        print(f"--resume: no checkpoint at {ckpt_path}, starting from step 0", flush=True)

    order = ShardedOrder(len(train_set), args.batch_size, args.seed, rank, world)
    csv_path = out / "metrics.csv"
    rows: list[dict] = []
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        rows = [r for r in _read_csv(csv_path) if int(r["step"]) <= start] if start else []
        _write_csv(csv_path, rows)
        (out / "args.json").write_text(json.dumps(run_args, indent=1))

    model: nn.Module = SandwichLoss(net, args.label_smoothing)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)

    # evaluation data: the same calibration batches on every rank, the held-out images split by rank
    calib_set = train_set.subset(args.calib_batches * args.batch_size, seed=args.seed + 1)
    calib = [x.to(device) for x, _ in batches(calib_set, args.img_size, args.batch_size)]
    n_eval = min(args.eval_size, len(test_set))
    ev_idx = torch.arange(rank, n_eval, world)
    heldout = [(to_input(test_set.images[ev_idx[i:i + 256]], args.img_size).to(device),
                test_set.labels[ev_idx[i:i + 256]].to(device)) for i in range(0, len(ev_idx), 256)]

    def sync_buffers():
        """Average the BN running statistics over ranks (each rank updates them on its own shard; DDP
        only copies rank 0's at the next forward), so checkpoints and every rank agree."""
        if world > 1:
            with torch.no_grad():
                for b in net.buffers():
                    if b.is_floating_point():
                        dist.all_reduce(b)
                        b.div_(world)

    def evaluate() -> dict:
        sync_buffers()
        accs = {}
        for kind, arch in (("max", space.max_arch()), ("min", space.min_arch())):
            net.set_active(arch)
            recalibrate_bn(net, calib)
            c, n = accuracy(net, heldout)
            if world > 1:
                t = torch.tensor([c, n], dtype=torch.float64, device=device)
                dist.all_reduce(t)
                c, n = t.tolist()
            accs[kind] = c / n
        net.train()
        return accs

    def checkpoint(step: int):
        sync_buffers()
        if is_main:
            atomic_save({"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "step": step, "rng": _rng_state(), "data": order.position(step), "elapsed_s": elapsed,
                         "args": run_args, "meta": meta}, ckpt_path)
            _write_csv(csv_path, rows)
        if world > 1:
            dist.barrier()

    bar = None
    if is_main and not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=args.steps, initial=start, desc="supernet", dynamic_ncols=True,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
    last_acc: dict = {}
    net.train()
    for step in range(start, args.steps):
        t0 = time.perf_counter()
        idx = order.indices(step)
        x = to_input(train_set.images[idx], args.img_size, order.shifts(step, args.shift)).to(device)
        y = train_set.labels[idx].to(device)
        archs = sandwich_archs(space, args.seed, step, args.num_random)
        total, parts = model(x, y, archs)
        opt.zero_grad(set_to_none=True)
        total.backward()
        if args.clip_grad > 0:
            nn.utils.clip_grad_norm_(net.parameters(), args.clip_grad)
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        dt = time.perf_counter() - t0
        elapsed += dt
        done = step + 1
        parts = parts.float().cpu().tolist()
        row = {"step": done, "epoch": f"{done * order.global_batch / len(train_set):.4f}",
               "loss_max": f"{parts[0]:.5f}", "loss_min": f"{parts[1]:.5f}",
               "loss_rand": f"{np.mean(parts[2:]):.5f}" if len(parts) > 2 else "",
               "lr": f"{lr:.3e}", "images_per_s": f"{order.global_batch / dt:.2f}", "acc_max": "", "acc_min": "",
               "elapsed_s": f"{elapsed:.1f}"}
        if (args.eval_every and done % args.eval_every == 0) or done == args.steps:
            last_acc = evaluate()
            row["acc_max"], row["acc_min"] = f"{last_acc['max']:.4f}", f"{last_acc['min']:.4f}"
            if is_main:
                msg = f"step {done}: held-out acc max {last_acc['max']:.4f} min {last_acc['min']:.4f}"
                (bar.write(msg) if bar else print(msg, flush=True))
        rows.append(row)
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{parts[0]:.3f}", img_s=f"{order.global_batch / dt:.1f}", refresh=False)
        if done % args.ckpt_every == 0 or done == args.steps:
            checkpoint(done)
            if is_main and not args.no_plot and (row["acc_max"] or done == args.steps):
                plot_curves(csv_path, out / "curves.png")
        if args.stop_at is not None and done >= args.stop_at:
            break
    if bar:
        bar.close()
    if start >= args.steps:
        last_acc = evaluate()
    if args.save_rank_states:
        sync_buffers()
        out.mkdir(parents=True, exist_ok=True)
        atomic_save({"model": net.state_dict(), "rank": rank, "world": world}, out / f"rank{rank}.pt")
    summary = {"steps": args.steps, "elapsed_s": elapsed, "acc_max": last_acc.get("max"),
               "acc_min": last_acc.get("min"), "checkpoint": str(ckpt_path)}
    if is_main:
        print(json.dumps(summary), flush=True)
    return summary


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
