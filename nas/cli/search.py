"""Fine-grained joint search over a trained slimmable supernet (EfficientFormerV2 §4), with baselines.

The command ``python -m nas.search`` over :func:`nas.search.run_search`:

    python -m nas.search                                   # paper's loop on local-cpu, S0-latency budget
    python -m nas.search --target pixel6 --params-budget 3.5 --latency-budget 1.0
    python -m nas.search --strategy all                    # paper, NSGA-II and random at equal budget
    torchrun --nproc_per_node 4 -m nas.search ...          # actions evaluated on 4 processes

From the largest subnet, each step enumerates the action pool (A_C shrink a stage width, A_N drop a
block with its attention, A_E lower one FFN expansion ratio), scores each action by its accuracy drop
on held-out data (the trained supernet, BatchNorms recalibrated per subnet) over its MES gain (analytic
params and the target's latency predictor), applies the best and repeats until the budgets hold.

Accuracy comes from the supernet at its training resolution and classes (a proxy task); params, latency
and MES are those of the deployed network: the latency table's resolution and classes (224 px, 1000
classes for the shipped tables). Everything a run computes is kept in ``--out-dir``: every accuracy
evaluation is appended to a cache as it is made, so a killed search, rerun with the same flags, replays
its finished steps from the cache and goes on where it stopped.
"""
from __future__ import annotations

import argparse
from typing import Sequence

import torch.distributed as dist

from nas.core.cli import add_common_args, command
from nas.search import SearchConfig, list_strategies, run_search

__all__ = ["main", "build_parser", "config_from_args"]

DEFAULTS = SearchConfig()


def build_parser() -> argparse.ArgumentParser:
    """The command's options; defaults are those of :class:`~nas.search.SearchConfig`."""
    d = DEFAULTS
    ap = argparse.ArgumentParser(prog="python -m nas.search", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--target", default=d.target, help="device name (its table in latency_tables/) or a table CSV")
    ap.add_argument("--runtime", help="runtime of the table when the device has several")
    ap.add_argument("--supernet", default=d.supernet,
                    help="trained supernet checkpoint (file or run folder); default: runs/supernet when it holds a "
                         "run, else the shipped one. --supernet runs/supernet trains it first when absent")
    ap.add_argument("--strategy", default=d.strategy, choices=(*list_strategies(), "all"))
    ap.add_argument("--params-budget", type=float, help="millions of parameters (deployed network)")
    ap.add_argument("--latency-budget", type=float,
                    help="ms on the target (default, when no budget is given: S0's predicted latency)")
    ap.add_argument("--actions", default=d.actions, help="action kinds: C width, N depth, E ratio, A attention")
    ap.add_argument("--reevaluate", default=d.reevaluate, choices=("lazy", "all"),
                    help="paper loop: re-evaluate every action each step (all), or lazily in order of the "
                         "last measured score until the best is fresh (lazy)")
    ap.add_argument("--evals", type=int,
                    help="accuracy evaluations for nsga2/random (default: as many as the paper loop used, or 200)")
    ap.add_argument("--storage", help="Optuna storage URL for NSGA-II (share one study between workers)")
    ap.add_argument("--study-name", help="Optuna study name (default derived from target and budgets)")
    ap.add_argument("--heldout", type=int, default=d.heldout, help="held-out test images per accuracy evaluation")
    ap.add_argument("--final-heldout", type=int, default=d.final_heldout,
                    help="other test images on which the picks are finally compared (0: skip)")
    ap.add_argument("--calib-batches", type=int, default=d.calib_batches, help="training batches for BN recalibration")
    ap.add_argument("--batch-size", type=int, default=d.batch_size, help="calibration batch size")
    ap.add_argument("--max-steps", type=int, default=d.max_steps)
    ap.add_argument("--out-dir", help="default runs/search/{device}.{runtime}")
    ap.add_argument("--export", dest="export", action="store_true", default=d.export,
                    help="export the chosen arch (PyTorch, ONNX, TFLite, Core ML)")
    ap.add_argument("--no-export", dest="export", action="store_false")
    ap.add_argument("--formats", default=",".join(d.formats))
    ap.add_argument("--measure", dest="measure", action="store_true", default=d.measure,
                    help="measure the picks end to end on the target's runtime when it can run here")
    ap.add_argument("--no-measure", dest="measure", action="store_false")
    ap.add_argument("--measure-threads", type=int, help="override the device's thread count when measuring")
    ap.add_argument("--allow-foreign-table", action="store_true",
                    help="use a local device's table measured on another host anyway (loud warning); by default "
                         "such a table is an error, and this host's table is measured on first use")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--threads", type=int, help="torch threads per process (default: cores / processes)")
    ap.add_argument("--no-plot", action="store_true")
    add_common_args(ap)
    return ap


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The :class:`~nas.search.SearchConfig` of parsed command-line arguments."""
    return SearchConfig(
        target=args.target, runtime=args.runtime, supernet=args.supernet, strategy=args.strategy,
        params_budget=args.params_budget, latency_budget=args.latency_budget, actions=args.actions,
        reevaluate=args.reevaluate, evals=args.evals, storage=args.storage, study_name=args.study_name,
        heldout=args.heldout, final_heldout=args.final_heldout, calib_batches=args.calib_batches,
        batch_size=args.batch_size, max_steps=args.max_steps, out_dir=args.out_dir, export=args.export,
        formats=args.formats, measure=args.measure, measure_threads=args.measure_threads,
        allow_foreign_table=args.allow_foreign_table, seed=args.seed, threads=args.threads,
        progress=not args.no_progress, plot=not args.no_plot)


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, search, and return the exit code (0; 2 for a user error, see
    :func:`nas.core.cli.command`)."""
    config = config_from_args(build_parser().parse_args(argv))
    try:
        run_search(config)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
