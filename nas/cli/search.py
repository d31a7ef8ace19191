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

from nas.core.cli import ArgumentParser, add_common_args, command
from nas.core.values import add_setting
from nas.export.subnet import FORMATS
from nas.search import SearchConfig, list_strategies, run_search

__all__ = ["main", "build_parser", "config_from_args"]

DEFAULTS = SearchConfig()


def build_parser() -> argparse.ArgumentParser:
    """The command's options; defaults are those of :class:`~nas.search.SearchConfig`."""
    d = DEFAULTS
    ap = ArgumentParser(prog="python -m nas.search", description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    C = SearchConfig
    add_setting(ap, "--target", C, "target", help="device name (its table in latency_tables/) or a table CSV")
    add_setting(ap, "--runtime", C, "runtime", help="runtime of the table when the device has several")
    add_setting(ap, "--supernet", C, "supernet",
                help="trained supernet checkpoint (file or run folder); default: runs/supernet when it holds a "
                     "run, else the shipped one. --supernet runs/supernet trains it first when absent")
    ap.add_argument("--strategy", default=d.strategy, choices=(*list_strategies(), "all"))
    add_setting(ap, "--params-budget", C, "params_budget")
    add_setting(ap, "--latency-budget", C, "latency_budget")
    add_setting(ap, "--actions", C, "actions")
    add_setting(ap, "--reevaluate", C, "reevaluate", choices=("lazy", "all"))
    add_setting(ap, "--evals", C, "evals")
    add_setting(ap, "--storage", C, "storage")
    add_setting(ap, "--study-name", C, "study_name")
    add_setting(ap, "--heldout", C, "heldout")
    add_setting(ap, "--final-heldout", C, "final_heldout")
    add_setting(ap, "--calib-batches", C, "calib_batches")
    add_setting(ap, "--batch-size", C, "batch_size")
    add_setting(ap, "--max-steps", C, "max_steps")
    add_setting(ap, "--out-dir", C, "out_dir")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the results of another search in --out-dir (by default a folder holding a "
                         "search with other settings is refused; the same settings resume it)")
    ap.add_argument("--export", dest="export", action="store_true", default=d.export,
                    help="export the chosen arch (PyTorch, ONNX, TFLite, Core ML)")
    ap.add_argument("--no-export", dest="export", action="store_false")
    ap.add_argument("--formats", default=",".join(d.formats), help=f"export formats, of {','.join(FORMATS)}")
    ap.add_argument("--measure", dest="measure", action="store_true", default=d.measure,
                    help="measure the picks end to end on the target's runtime when it can run here")
    ap.add_argument("--no-measure", dest="measure", action="store_false")
    add_setting(ap, "--measure-threads", C, "measure_threads")
    ap.add_argument("--allow-foreign-table", action="store_true",
                    help="use a local device's table measured on another host anyway (loud warning); by default "
                         "such a table is an error, and this host's table is measured on first use")
    add_setting(ap, "--seed", C, "seed")
    add_setting(ap, "--threads", C, "threads")
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
        allow_foreign_table=args.allow_foreign_table, overwrite=args.overwrite, seed=args.seed, threads=args.threads,
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
