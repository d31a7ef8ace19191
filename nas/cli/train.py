"""Train the slimmable supernet with the sandwich rule and in-place distillation.

The command ``python -m nas.train_supernet`` over :func:`nas.training.train`:

    torchrun --standalone --nproc_per_node 2 -m nas.train_supernet   # the CPU default: 2 cores, ~30 min
    python -m nas.train_supernet                                  # the same in one process
    python -m nas.train_supernet --resume                         # continue runs/supernet/last.pt
    python -m nas.train_supernet --space efficientformerv2 --init-from eformer_l_450.pth   # warm start
    torchrun --nproc_per_node 4 -m nas.train_supernet --steps 20000 --batch-size 128

Every step trains the largest subnet on the labels and the smallest plus ``--num-random`` random subnets
on the largest one's soft labels (KL divergence), with one backward pass over the summed loss. AdamW,
linear warm-up then cosine decay. Before evaluation each subnet's private BatchNorms are recalibrated.
``--resume`` continues exactly where an uninterrupted run would be. Outputs in ``--out``: ``last.pt``
(written atomically), ``metrics.csv``, ``curves.png``, ``args.json``.
"""
from __future__ import annotations

import argparse
from typing import Sequence

import torch.distributed as dist

from nas.core.cli import ArgumentParser, add_common_args, command
from nas.core.values import add_setting
from nas.training import TrainConfig, train
from nas.training.precision import PRECISIONS

__all__ = ["main", "build_parser", "config_from_args"]

def build_parser() -> argparse.ArgumentParser:
    """The command's options; defaults are those of :class:`~nas.training.TrainConfig`."""
    p = ArgumentParser(prog="python -m nas.train_supernet", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    C = TrainConfig
    p.add_argument("--space", default=None,
                   help="search space name (efficientformerv2, efficientformerv2-small, tiny) or JSON "
                        "(default: efficientformerv2 where CUDA is available, efficientformerv2-small otherwise)")
    add_setting(p, "--dataset", C, "dataset", help="fashion-mnist, mnist, or an ImageFolder-style folder")
    add_setting(p, "--img-size", C, "img_size", help="input resolution (a multiple of 32)")
    add_setting(p, "--steps", C, "steps", help="total optimizer steps")
    add_setting(p, "--batch-size", C, "batch_size", help="images per step and process")
    add_setting(p, "--lr", C, "lr", help="peak AdamW learning rate")
    add_setting(p, "--min-lr", C, "min_lr")
    add_setting(p, "--weight-decay", C, "weight_decay")
    add_setting(p, "--warmup", C, "warmup", help="warm-up steps (default: 5%% of --steps)")
    add_setting(p, "--num-random", C, "num_random", help="random subnets per step besides max and min")
    add_setting(p, "--label-smoothing", C, "label_smoothing", help="for the largest subnet's CE loss")
    add_setting(p, "--clip-grad", C, "clip_grad", help="gradient-norm clip (0: off)")
    add_setting(p, "--shift", C, "shift", help="random translation in native pixels of fashion-mnist / mnist (0: off)")
    add_setting(p, "--out", C, "out", help="checkpoint / metrics folder")
    add_setting(p, "--ckpt-every", C, "ckpt_every", help="steps between checkpoints")
    add_setting(p, "--eval-every", C, "eval_every", help="steps between evaluations (0: only at the end)")
    add_setting(p, "--eval-size", C, "eval_size", help="held-out (test split) images per evaluation")
    add_setting(p, "--calib-batches", C, "calib_batches", help="training batches for BN recalibration")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt if it exists (with the settings it was started with)")
    add_setting(p, "--init-from", C, "init_from", metavar="PATH",
                help="start from published S0/S1/S2/L weights (a timm or official EfficientFormerV2 checkpoint); "
                     "ignored when resuming a run")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an OUT that already holds a run (its checkpoint and metrics are replaced)")
    add_setting(p, "--seed", C, "seed")
    add_setting(p, "--threads", C, "threads", help="torch CPU threads per process")
    add_setting(p, "--train-subset", C, "train_subset", help="train on a fixed random N-image subset")
    add_setting(p, "--workers", C, "num_workers",
                help="data-loader processes per training process (default: 0 for fashion-mnist and mnist, "
                     "min(4, cores) for a folder)")
    add_setting(p, "--randaug", C, "randaug",
                help="RandAugment magnitude, 0-10, for folders (0: off; the EfficientFormerV2 recipe: 9)")
    add_setting(p, "--mixup", C, "mixup", help="mixup Beta alpha (0: off; the recipe: 0.8)")
    add_setting(p, "--cutmix", C, "cutmix", help="cutmix Beta alpha (0: off; the recipe: 1.0)")
    add_setting(p, "--precision", C, "precision", choices=PRECISIONS,
                help="auto: bf16 autocast on a GPU that supports it, fp32 otherwise")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout (faster convolutions on GPUs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    add_setting(p, "--accum-steps", C, "accum_steps",
                help="split each batch into this many micro-batches (gradient accumulation)")
    p.add_argument("--no-plot", action="store_true", help="skip curves.png")
    add_common_args(p)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`~nas.training.TrainConfig` of parsed command-line arguments."""
    return TrainConfig(
        space=args.space, dataset=args.dataset, img_size=args.img_size, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr, weight_decay=args.weight_decay,
        warmup=args.warmup, num_random=args.num_random, label_smoothing=args.label_smoothing,
        clip_grad=args.clip_grad, shift=args.shift, out=args.out, ckpt_every=args.ckpt_every,
        eval_every=args.eval_every, eval_size=args.eval_size, calib_batches=args.calib_batches,
        resume=args.resume, overwrite=args.overwrite, seed=args.seed, threads=args.threads,
        train_subset=args.train_subset, init_from=args.init_from, num_workers=args.num_workers, randaug=args.randaug,
        mixup=args.mixup, cutmix=args.cutmix, precision=args.precision, channels_last=args.channels_last,
        compile=args.compile, accum_steps=args.accum_steps, progress=not args.no_progress, plot=not args.no_plot)


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, train, and return the exit code (0; 2 for a user error, see
    :func:`nas.core.cli.command`)."""
    config = config_from_args(build_parser().parse_args(argv))
    try:
        train(config)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
