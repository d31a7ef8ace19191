"""Make the shipped supernet from a training run, and measure what it reaches.

    torchrun --standalone --nproc_per_node 2 -m nas.train_supernet       # the README's command (runs/supernet)
    python benchmarks/ship_supernet.py --wall-s 1745                      # its wall time, as timed around it

Writes ``nas/supernet/weights/<space>.pt`` (the run's weights in half precision:
:func:`nas.supernet.shipped.save_compact`) and its card ``<space>.json``: the command, the run's settings,
its wall time, this machine, and the accuracy of the largest subnet, of S0 and of the smallest subnet on
the whole test split, each after BatchNorm recalibration and measured on the compact file itself, with
their standard errors. Prints the card.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.core.stats import binomial_stderr  # noqa: E402
from nas.supernet.checkpoint import load_checkpoint, load_supernet  # noqa: E402
from nas.supernet.evaluate import SubnetEvaluator  # noqa: E402
from nas.core.files import shipping  # noqa: E402
from nas.supernet.shipped import SHIPPED_DIR, save_compact, write_card  # noqa: E402
from profilers.timing.host import fingerprint  # noqa: E402

COMMAND = "torchrun --standalone --nproc_per_node 2 -m nas.train_supernet"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/supernet", help="the training run folder")
    ap.add_argument("--wall-s", type=float, required=True, help="wall time of the training command, in seconds")
    ap.add_argument("--command", default=COMMAND, help="the command that trained the run")
    ap.add_argument("--out-dir", default=str(SHIPPED_DIR))
    args = ap.parse_args()

    ck = load_checkpoint(args.run)
    settings = json.loads((Path(args.run) / "args.json").read_text())
    space = ck["meta"]["space_name"]
    out = Path(args.out_dir) / f"{space}.pt"
    save_compact(args.run, out)                                   # first the file, then its accuracies
    net, meta = load_supernet(out)
    ev = SubnetEvaluator.from_dataset(net, meta["dataset"], heldout=None, calib_batches=4, batch_size=128)
    n = ev.num_heldout
    archs = {"largest subnet": net.space.max_arch(), "S0": net.space.canonical("s0") if net.space.fits("s0") else None,
             "smallest subnet": net.space.min_arch()}
    acc = {}
    for name, arch in archs.items():
        if arch is not None:
            a = ev.accuracy(arch)
            acc[name] = {"accuracy": round(a, 4), "stderr": round(binomial_stderr(a, n), 4)}
    minutes = args.wall_s / 60
    fp = fingerprint()
    machine = f"{fp['cores']}-core {fp['cpu']} (family {fp['family']} model {fp['model']})"
    summary = (f"trained by `{args.command}`: {meta['dataset']} at {meta['img_size']} px, {ck.get('step')} steps of "
               f"{settings['batch_size']} images x {settings.get('world_size', 1)} processes, {minutes:.0f} minutes on a "
               f"{machine}")
    if "S0" in acc:
        summary += f"; S0 subnet {acc['S0']['accuracy'] * 100:.1f} %"
    card = {"space": space, "command": args.command, "summary": summary, "train_minutes": round(minutes, 1),
            "steps": ck.get("step"), "settings": settings, "machine": {"cpu": machine, "processes": settings.get("world_size", 1),
                                                                       "python": platform.python_version()},
            "test_images": n, "accuracy": acc}
    print(write_card(out, card).read_text())


if __name__ == "__main__":
    with shipping():                               # the one writer of the shipped (read-only) supernet
        main()
