"""Supernet training on this machine: throughput, and what a default run reaches.

    taskset -c 1 python benchmarks/train_supernet.py                      # throughput + evaluate runs/supernet
    taskset -c 1 python benchmarks/train_supernet.py --train-steps 100    # no run yet: train a short one first

1. images/s of sandwich-rule training (max + min + ``--num-random`` random subnets, one backward) on real
   Fashion-MNIST batches, at ``--img-size`` on ``--threads`` CPU threads (median over the timed steps), and,
   measured in the same run on the same batches: a supernet step with only the largest subnet, and a
   plain step of the largest subnet extracted as a standalone EfficientFormerV2. Their ratio is what the
   slimmable machinery costs.
2. the held-out accuracy of the largest and smallest subnets of a trained supernet (``--run``; trained
   here with the default settings if absent) on the Fashion-MNIST test split, after BN recalibration,
   and the wall time of one ``SubnetEvaluator.accuracy`` call.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from nas.supernet.checkpoint import load_checkpoint, load_supernet  # noqa: E402
from nas.data.datasets import ShardedOrder, load_dataset, to_input  # noqa: E402
from nas.supernet.evaluate import SubnetEvaluator  # noqa: E402
from nas.space.spaces import get_space  # noqa: E402
from nas.supernet.supernet import SlimmableSupernet  # noqa: E402
from nas.core.logs import console  # noqa: E402
from nas.training import TrainConfig, train  # noqa: E402
from nas.training.precision import PRECISIONS, resolve_precision  # noqa: E402
from nas.training.sandwich import SandwichLoss, param_groups, sandwich_archs, sandwich_step  # noqa: E402


def _timed_steps(step_fn, steps: int) -> float:
    """Median seconds of ``step_fn(i)`` over ``steps`` calls, after 2 warm-up calls."""
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        step_fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[2:])


def throughput(space_name: str, img_size: int, batch_size: int, steps: int, num_random: int,
               precision: str = "fp32", channels_last: bool = False) -> dict:
    """Images/s of (1) the sandwich step, (2) a supernet step with only the largest subnet, (3) a plain
    step of the largest subnet extracted as a standalone EfficientFormerV2 -- all measured here, now, on
    the same batches, with the same optimizer, precision and memory layout."""
    space = get_space(space_name)
    data = load_dataset("fashion-mnist", "train")
    order = ShardedOrder(len(data), batch_size, seed=0)
    prec = resolve_precision(precision, "cpu")
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def batch(i):
        idx = order.indices(i)
        return to_input(data.images[idx], img_size, order.shifts(i, 2)).contiguous(memory_format=layout), data.labels[idx]

    def supernet_steps(archs_of):
        torch.manual_seed(0)
        net = SlimmableSupernet(space, num_classes=10, img_size=img_size).train().to(memory_format=layout)
        model = SandwichLoss(net)
        opt = torch.optim.AdamW(param_groups(net, 0.025), lr=1e-3)

        def step(i):
            x, y = batch(i)
            opt.zero_grad(set_to_none=True)
            sandwich_step(model, x, y, archs_of(i), precision=prec)
            opt.step()
        return step, net

    sandwich, net = supernet_steps(lambda i: sandwich_archs(space, 0, i, num_random))
    t_sandwich = _timed_steps(sandwich, steps)
    max_only, _ = supernet_steps(lambda i: [("max", space.max_arch())])
    t_max = _timed_steps(max_only, steps)
    plain_net = net.extract(space.max_arch()).train().to(memory_format=layout)
    plain_opt = torch.optim.AdamW(param_groups(plain_net, 0.025), lr=1e-3)

    def plain(i):
        x, y = batch(i)
        plain_opt.zero_grad(set_to_none=True)
        with prec.autocast():
            out = plain_net(x)
        torch.nn.functional.cross_entropy(out.float(), y, label_smoothing=0.1).backward()
        plain_opt.step()
    t_plain = _timed_steps(plain, steps)
    n = 2 + num_random
    return {"space": space.name, "img_size": img_size, "batch_size": batch_size, "subnets_per_step": n,
            "precision": prec.name, "channels_last": channels_last,
            "s_per_step": round(t_sandwich, 3), "images_per_s": round(batch_size / t_sandwich, 2),
            "max_only_images_per_s": round(batch_size / t_max, 2),
            "plain_images_per_s": round(batch_size / t_plain, 2),
            "machinery_ratio": round(t_max / t_plain, 3),
            "per_image_per_subnet_ratio": round(t_sandwich / (n * t_plain), 3)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="efficientformerv2")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-random", type=int, default=2)
    p.add_argument("--measure-steps", type=int, default=8, help="timed training steps (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--run", default="runs/supernet", help="trained run folder (or checkpoint) to evaluate")
    p.add_argument("--train-steps", type=int, default=None,
                   help="if --run has no checkpoint: train one with the default settings for this many steps")
    p.add_argument("--heldout", type=int, default=None, help="test images to evaluate on (default: all)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.measure_steps > 0:
        tp = throughput(args.space, args.img_size, args.batch_size, args.measure_steps, args.num_random,
                        args.precision, args.channels_last)
        print(f"training throughput: {tp['images_per_s']} images/s ({tp['s_per_step']} s per step of "
              f"{tp['batch_size']} images x {tp['subnets_per_step']} subnets; space {tp['space']}, "
              f"{tp['img_size']} px, {tp['precision']}, channels_last={tp['channels_last']}, "
              f"{args.threads} thread(s))", flush=True)
        print(f"supernet step with the largest subnet only: {tp['max_only_images_per_s']} images/s; plain step of "
              f"that subnet extracted as a standalone EfficientFormerV2: {tp['plain_images_per_s']} images/s", flush=True)
        print(f"slimmable machinery: {tp['machinery_ratio']}x the plain step's time (same subnet); sandwich step: "
              f"{tp['per_image_per_subnet_ratio']}x per image per subnet (target <= 1.3x)", flush=True)
        print(json.dumps(tp), flush=True)

    run = Path(args.run)
    ckpt = run / "last.pt" if run.is_dir() or not run.suffix else run
    if not ckpt.exists():
        if args.train_steps is None:
            print(f"no checkpoint at {ckpt}: train one with `python -m nas.train_supernet --out {run}` "
                  f"or pass --train-steps N")
            return
        with console():
            train(TrainConfig(out=str(run), steps=args.train_steps, space=args.space, img_size=args.img_size,
                              batch_size=args.batch_size, threads=args.threads, progress=False))
    ck = load_checkpoint(ckpt)
    a = ck["args"]
    print(f"run {ckpt}: {ck['step']} steps x {a['batch_size']} images x {a['world_size']} process(es), "
          f"space {a['space']}, {a['img_size']} px, training time {ck.get('elapsed_s', 0) / 60:.1f} min",
          flush=True)
    net, meta = load_supernet(ckpt)
    t0 = time.perf_counter()
    ev = SubnetEvaluator.from_dataset(net, meta["dataset"], heldout=args.heldout, calib_batches=8)
    print(f"evaluator: {ev.num_heldout} held-out test images, {len(ev.calib)} calibration batches "
          f"(set up in {time.perf_counter() - t0:.1f} s)", flush=True)
    res = {}
    for kind, arch in (("max", net.space.max_arch()), ("min", net.space.min_arch())):
        t0 = time.perf_counter()
        res[kind] = ev.accuracy(arch)
        res[f"{kind}_eval_s"] = round(time.perf_counter() - t0, 1)
        print(f"{kind} subnet: test accuracy {res[kind]:.4f} ({res[f'{kind}_eval_s']} s per accuracy() call)",
              flush=True)
    print(json.dumps({"step": ck["step"], **{k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}}))


if __name__ == "__main__":
    main()
