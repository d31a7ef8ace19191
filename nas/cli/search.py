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

Each strategy's options are reached by ``--option STRATEGY.OPTION=VALUE`` (repeatable; listed with their
defaults at the end of ``--help``, from the registry of strategies); an option that declares a shorthand
flag (``--actions``, ``--reevaluate``, ``--max-steps``, ``--storage``, ``--study-name``) is set by it the
same way. The last value given for an option wins.
"""
from __future__ import annotations

import argparse
import textwrap
from typing import Any, Sequence

import torch.distributed as dist

from nas.core.cli import ArgumentParser, add_common_args, command
from nas.core.values import add_setting, one_of
from nas.export.subnet import FORMATS
from nas.search import SearchConfig, SearchError, list_strategies, run_search, strategy_class
from nas.search.base import Flag, option_fields

__all__ = ["main", "build_parser", "config_from_args"]

DEFAULTS = SearchConfig()


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help of every argument; the epilog (the strategies' options) as written."""


def _option_value(text: str) -> tuple[str, str, Any]:
    """``STRATEGY.OPTION=VALUE`` as (strategy, option, value), the value parsed by the option's rule."""
    key, eq, value = text.partition("=")
    strategy, dot, name = key.partition(".")
    if not (eq and dot and strategy and name):
        raise argparse.ArgumentTypeError(f"expected STRATEGY.OPTION=VALUE, got {text!r}")
    try:
        rule = strategy_class(strategy).option_field(name).metadata["rule"]
    except SearchError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    try:
        return strategy, name, rule.arg(value)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{key} {e}") from None
    except LookupError:                          # a rule that parses words by lookup (true/false)
        raise argparse.ArgumentTypeError(f"{key} expected {rule.what}, got {value!r}") from None


class _SetOption(argparse.Action):
    """Appends (strategy, option, value) to ``strategy_options``: ``--option`` parses all three, a shorthand
    flag knows its option (``key``) and maps its word to the value (``words``) when it has words."""

    def __init__(self, option_strings, dest, key: tuple[str, str] | None = None,
                 words: dict | None = None, **kw):
        super().__init__(option_strings, dest, **kw)
        self.key, self.words = key, words

    def __call__(self, parser, namespace, value, option_string=None):
        if self.key is not None:
            value = (*self.key, self.words[value] if self.words else value)
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), value])


def _shown(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _add_strategy_options(ap: argparse.ArgumentParser) -> None:
    """``--option`` and every shorthand flag the registered strategies' options declare."""
    g = ap.add_argument_group("setting a strategy's options", "every strategy's options are listed at the end")
    g.add_argument("--option", action=_SetOption, dest="strategy_options", type=_option_value,
                   default=argparse.SUPPRESS, metavar="STRATEGY.OPTION=VALUE",
                   help="set an option of a strategy, e.g. nsga2.population_size=64 (repeatable)")
    for strategy in list_strategies():
        for f in option_fields(strategy_class(strategy).Options):
            flag: Flag | None = f.metadata.get("flag")
            if flag is None:
                continue
            help = flag.help or f.metadata.get("help") or ""
            if flag.words:                      # words in place of the option's values: --reevaluate lazy|all
                kw = dict(type=one_of(flag.words), words=dict(flag.words), metavar="{" + ",".join(flag.words) + "}")
                default = flag.word_of(f.default)
            else:
                kw = dict(type=f.metadata["rule"], metavar=flag.name.lstrip("-").upper().replace("-", "_"))
                default = f.default
            g.add_argument(flag.name, action=_SetOption, dest="strategy_options", key=(strategy, f.name),
                           default=argparse.SUPPRESS, **kw,
                           help=f"{help}: --option {strategy}.{f.name}"
                                + ("" if "default" in help else f" (default: {default})"))


def _options_epilog() -> str:
    """Every registered strategy's options: name and default, help, the values it takes, shorthand flag."""
    lines = ["options of the strategies (--option STRATEGY.OPTION=VALUE, shown with the default; or the shorthand "
             "flag in brackets):"]
    for strategy in list_strategies():
        fields = option_fields(strategy_class(strategy).Options)
        if not fields:
            lines.append(f"  {strategy}: no options")
        for f in fields:
            rule, flag, help = f.metadata["rule"], f.metadata.get("flag"), f.metadata.get("help")
            key = f"{strategy}.{f.name}" + (f"={_shown(f.default)}" if f.default is not None else "")
            text = "; ".join(filter(None, [help, f"{rule.what}, {rule.rule}" if rule.rule else rule.what]))
            if flag:
                text += f" [{flag.name}" + (" " + "|".join(flag.words) if flag.words else "") + "]"
            lines += textwrap.wrap(text, 108, initial_indent=f"  {key:<28} ", subsequent_indent=" " * 31)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command's options; defaults are those of :class:`~nas.search.SearchConfig`."""
    d = DEFAULTS
    ap = ArgumentParser(prog="python -m nas.search", description=__doc__.split("\n\n")[0],
                        formatter_class=_Formatter, epilog=_options_epilog())
    C = SearchConfig
    add_setting(ap, "--target", C, "target", help="device name (its table in latency_tables/) or a table CSV")
    add_setting(ap, "--runtime", C, "runtime", help="runtime of the table when the device has several")
    add_setting(ap, "--supernet", C, "supernet",
                help="trained supernet checkpoint (file or run folder); default: runs/supernet when it holds a "
                     "run, else the shipped one. --supernet runs/supernet trains it first when absent")
    ap.add_argument("--strategy", default=d.strategy, choices=(*list_strategies(), "all"))
    add_setting(ap, "--params-budget", C, "params_budget")
    add_setting(ap, "--latency-budget", C, "latency_budget")
    add_setting(ap, "--evals", C, "evals")
    add_setting(ap, "--heldout", C, "heldout")
    add_setting(ap, "--final-heldout", C, "final_heldout")
    add_setting(ap, "--calib-batches", C, "calib_batches")
    add_setting(ap, "--batch-size", C, "batch_size")
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
    ap.add_argument("--no-rescale", action="store_true",
                    help="predict at the level of the table's calibration, without timing this host's reference "
                         "networks first (by default a local target's predictions follow its speed now)")
    ap.add_argument("--forbid-fallback", action="store_true",
                    help="never pick a network that uses a unit which fell back from the accelerator (Neural "
                         "Engine, NPU, GPU) to the CPU on the target (the table's compute_units column; python -m "
                         "profilers.coverage lists them)")
    add_setting(ap, "--seed", C, "seed")
    add_setting(ap, "--threads", C, "threads")
    ap.add_argument("--no-plot", action="store_true")
    _add_strategy_options(ap)
    add_common_args(ap)
    return ap


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The :class:`~nas.search.SearchConfig` of parsed command-line arguments (the strategies' options
    in the order given: the last value of an option wins)."""
    options: dict[str, dict[str, Any]] = {}
    for strategy, name, value in getattr(args, "strategy_options", None) or []:
        options.setdefault(strategy, {})[name] = value
    return SearchConfig(
        target=args.target, runtime=args.runtime, supernet=args.supernet, strategy=args.strategy,
        strategy_options=options, params_budget=args.params_budget, latency_budget=args.latency_budget,
        evals=args.evals, heldout=args.heldout, final_heldout=args.final_heldout, calib_batches=args.calib_batches,
        batch_size=args.batch_size, out_dir=args.out_dir, export=args.export,
        formats=args.formats, measure=args.measure, measure_threads=args.measure_threads,
        allow_foreign_table=args.allow_foreign_table, rescale=not args.no_rescale,
        forbid_fallback=args.forbid_fallback, overwrite=args.overwrite, seed=args.seed, threads=args.threads,
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
