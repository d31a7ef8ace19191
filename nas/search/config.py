"""What a search is asked to do: :class:`SearchConfig`, every setting checked when it is made."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nas.core.values import FLAG, NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, TEXT, WHOLE, check_settings, setting
from nas.export.subnet import FORMATS
from nas.search.base import SearchError, StrategyOptions, list_strategies, strategy_class

__all__ = ["SearchConfig", "DEFAULT_EVALS"]

DEFAULT_EVALS = 200


@dataclass(frozen=True)
class SearchConfig:
    """Everything :func:`~nas.search.run_search` needs; the defaults are those of ``python -m nas.search``.

    Target: ``target`` is a device name (its table in ``latency_tables/``) or a table CSV, ``runtime``
    the table's runtime when the device has several; a local device's table that was measured on
    another host is an error unless ``allow_foreign_table``. ``supernet`` is a trained checkpoint (file
    or run folder). Left at None it is ``runs/supernet`` when that holds a run, else the supernet the
    package ships (:mod:`nas.supernet.shipped`); ``runs/supernet`` named and absent is trained first.

    Search: ``strategy`` is a registered strategy's name (:func:`~nas.search.base.list_strategies`) or
    ``"all"``; budgets are ``params_budget`` (millions of parameters of the deployed network) and
    ``latency_budget`` (ms on the target; when neither is given, S0's predicted latency). Each strategy's
    own options are set in ``strategy_options``, a mapping from its name to its options by name (e.g.
    ``{"paper": {"lazy": False}, "nsga2": {"population_size": 64}}``), checked against its ``Options``
    dataclass (:meth:`options_of`); what is not set keeps its default. Strategies that spend a given
    number of accuracy evaluations get ``evals`` (default: as many as the strategies that stop on their
    own used, or :data:`DEFAULT_EVALS`); strategies that take them get the search-wide ``seed`` and a
    name of the search (``search-{device}-{runtime}-{params budget}-{latency budget}``, e.g. NSGA-II's
    default study name).

    Accuracy: ``heldout`` test images per evaluation, BatchNorms recalibrated on ``calib_batches``
    training batches of ``batch_size``; the picks are finally compared on ``final_heldout`` other test
    images (0: not compared): each accuracy with its standard error, each pair of picks (and each pick
    against S0) by a paired bootstrap over those images, a difference within the noise being a tie.
    Outputs go to ``out_dir`` (default ``runs/search/{device}.{runtime}``): the chosen architecture is
    exported to ``formats`` when ``export``, and the picks are measured end to end (with
    ``measure_threads`` threads, default the device's) when ``measure`` and the target's runtime can run
    here. ``threads``: torch threads per process (default: cores / processes). A folder holds the results
    of one search (:meth:`identity`, recorded in its ``run.json``): the same settings again resume it,
    other settings are refused unless ``overwrite``, which replaces its results.

    Every value is checked when the config is made, with the same rules as the command line's
    (:mod:`nas.core.values`): a :class:`~nas.search.base.SearchError` names the first impossible one (an
    unknown strategy or option, ``paper.max_steps must be at least 1, got 0`` ...).
    """

    target: str = setting("local-cpu", TEXT)
    runtime: str | None = setting(None, TEXT, optional=True)
    supernet: str | None = setting(None, TEXT, optional=True)
    strategy: str = setting("paper", TEXT)
    strategy_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    params_budget: float | None = setting(None, POSITIVE_FLOAT, optional=True,
                                          help="millions of parameters (deployed network)")
    latency_budget: float | None = setting(None, POSITIVE_FLOAT, optional=True,
                                           help="ms on the target (default, when no budget is given: S0's "
                                                "predicted latency)")
    evals: int | None = setting(None, POSITIVE_INT, optional=True,
                                help="accuracy evaluations for the strategies that spend a given number (nsga2, "
                                     "random; default: as many as the paper loop used, or 200)")
    heldout: int = setting(4000, POSITIVE_INT, help="held-out test images per accuracy evaluation")
    final_heldout: int = setting(6000, NONNEGATIVE_INT,
                                 help="other test images on which the picks are finally compared (0: skip)")
    calib_batches: int = setting(2, POSITIVE_INT, help="training batches for BN recalibration")
    batch_size: int = setting(64, POSITIVE_INT, help="calibration batch size")
    out_dir: str | None = setting(None, TEXT, optional=True, help="default runs/search/{device}.{runtime}")
    export: bool = setting(True, FLAG)
    formats: tuple[str, ...] = FORMATS
    measure: bool = setting(True, FLAG)
    measure_threads: int | None = setting(None, POSITIVE_INT, optional=True,
                                          help="override the device's thread count when measuring")
    allow_foreign_table: bool = setting(False, FLAG)
    rescale: bool = setting(True, FLAG, help="scale predictions by this host's speed now against its table's "
                                             "calibration (local targets; a few seconds at the start)")
    forbid_fallback: bool = setting(False, FLAG, help="never pick a network that uses a unit which fell back from "
                                                      "the accelerator to the CPU on the target")
    overwrite: bool = setting(False, FLAG)
    seed: int = setting(0, WHOLE)
    threads: int | None = setting(None, POSITIVE_INT, optional=True,
                                  help="torch threads per process (default: cores / processes)")
    progress: bool = setting(True, FLAG)
    plot: bool = setting(True, FLAG)

    def __post_init__(self):
        for name in ("target", "supernet", "out_dir"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        if isinstance(self.formats, str):
            object.__setattr__(self, "formats", tuple(f.strip() for f in self.formats.split(",") if f.strip()))
        else:
            object.__setattr__(self, "formats", tuple(self.formats))
        check_settings(self, SearchError)
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise SearchError(f"formats must be one or more of {', '.join(FORMATS)}, got {list(self.formats)}")
        if self.strategy != "all" and self.strategy not in list_strategies():
            raise SearchError(f"unknown search strategy {self.strategy!r}; choose one of "
                              f"{', '.join(list_strategies())} or all")
        object.__setattr__(self, "strategy_options", self._checked_options())

    def _checked_options(self) -> dict[str, dict[str, Any]]:
        """``strategy_options`` checked against the registered strategies' options (their values as the
        rules convert them: an int given for a float ...)."""
        given = self.strategy_options
        if not isinstance(given, Mapping) or not all(isinstance(v, Mapping) for v in given.values()):
            raise SearchError(f"strategy_options must map strategy names to {{option: value}} mappings, "
                              f"got {given!r}")
        checked = {}
        for name, values in given.items():
            options = strategy_class(name).make_options(values)
            checked[name] = {k: getattr(options, k) for k in values}
        return checked

    def options_of(self, name: str) -> StrategyOptions:
        """The options strategy ``name`` runs with: its ``Options`` with what ``strategy_options`` sets."""
        return strategy_class(name).make_options(self.strategy_options.get(name))

    #: the settings that decide a search's picks and numbers (with the supernet's and the table's content)
    IDENTITY = ("strategy", "strategy_options", "params_budget", "latency_budget", "evals", "heldout",
                "final_heldout", "calib_batches", "batch_size", "seed")

    def identity(self) -> dict:
        """The settings that decide a search's picks and numbers (:data:`IDENTITY`, with the options of every
        strategy that runs, defaults included); with the content of the supernet and of the table, what a
        run folder's results are of (``run.json``)."""
        options = {n: dataclasses.asdict(self.options_of(n)) for n in self.strategies}
        out = {k: options if k == "strategy_options" else getattr(self, k) for k in self.IDENTITY}
        if self.forbid_fallback:                 # only when set: folders of searches without it still resume
            out["forbid_fallback"] = True
        return out

    @property
    def strategies(self) -> tuple[str, ...]:
        """The names of the strategies to run, in order."""
        return tuple(list_strategies()) if self.strategy == "all" else (self.strategy,)
