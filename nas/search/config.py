"""What a search is asked to do: :class:`SearchConfig`, every setting checked when it is made."""
from __future__ import annotations

import os
from dataclasses import dataclass

from nas.core.values import (FLAG, NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, TEXT, WHOLE, check_settings,
                             letters, one_of, setting)
from nas.export.subnet import FORMATS
from nas.search.actions import ACTION_KINDS, PAPER_ACTIONS
from nas.search.base import SearchError, list_strategies

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
    ``latency_budget`` (ms on the target; when neither is given, S0's predicted latency). The paper's
    loop takes the action kinds ``actions`` and re-evaluates every action each step
    (``reevaluate="all"``) or lazily (``"lazy"``), for at most ``max_steps`` steps. Strategies that
    spend a given number of accuracy evaluations get ``evals`` (default: as many as the strategies that
    stop on their own used, or :data:`DEFAULT_EVALS`). ``storage`` and ``study_name`` name an Optuna
    storage and study shared between workers (the name defaults to one derived from target and budgets).

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
    (:mod:`nas.core.values`): a :class:`~nas.search.base.SearchError` names the first impossible one.
    """

    target: str = setting("local-cpu", TEXT)
    runtime: str | None = setting(None, TEXT, optional=True)
    supernet: str | None = setting(None, TEXT, optional=True)
    strategy: str = setting("paper", TEXT)
    params_budget: float | None = setting(None, POSITIVE_FLOAT, optional=True,
                                          help="millions of parameters (deployed network)")
    latency_budget: float | None = setting(None, POSITIVE_FLOAT, optional=True,
                                           help="ms on the target (default, when no budget is given: S0's "
                                                "predicted latency)")
    actions: str = setting(PAPER_ACTIONS, letters("".join(ACTION_KINDS), "C width, N depth, E ratio, A attention"),
                           help="action kinds: C width, N depth, E ratio, A attention")
    reevaluate: str = setting("lazy", one_of(("lazy", "all")),
                              help="paper loop: re-evaluate every action each step (all), or lazily in order of "
                                   "the last measured score until the best is fresh (lazy)")
    evals: int | None = setting(None, POSITIVE_INT, optional=True,
                                help="accuracy evaluations for nsga2/random (default: as many as the paper loop "
                                     "used, or 200)")
    storage: str | None = setting(None, TEXT, optional=True,
                                  help="Optuna storage URL for NSGA-II (share one study between workers)")
    study_name: str | None = setting(None, TEXT, optional=True,
                                     help="Optuna study name (default derived from target and budgets)")
    heldout: int = setting(4000, POSITIVE_INT, help="held-out test images per accuracy evaluation")
    final_heldout: int = setting(6000, NONNEGATIVE_INT,
                                 help="other test images on which the picks are finally compared (0: skip)")
    calib_batches: int = setting(2, POSITIVE_INT, help="training batches for BN recalibration")
    batch_size: int = setting(64, POSITIVE_INT, help="calibration batch size")
    max_steps: int = setting(1000, POSITIVE_INT, help="paper loop: steps at most")
    out_dir: str | None = setting(None, TEXT, optional=True, help="default runs/search/{device}.{runtime}")
    export: bool = setting(True, FLAG)
    formats: tuple[str, ...] = FORMATS
    measure: bool = setting(True, FLAG)
    measure_threads: int | None = setting(None, POSITIVE_INT, optional=True,
                                          help="override the device's thread count when measuring")
    allow_foreign_table: bool = setting(False, FLAG)
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

    #: the settings that decide a search's picks and numbers (with the supernet's and the table's content)
    IDENTITY = ("strategy", "params_budget", "latency_budget", "actions", "reevaluate", "evals", "storage",
                "study_name", "heldout", "final_heldout", "calib_batches", "batch_size", "max_steps", "seed")

    def identity(self) -> dict:
        """The settings that decide a search's picks and numbers (:data:`IDENTITY`); with the content of the
        supernet and of the table, what a run folder's results are of (``run.json``)."""
        return {k: getattr(self, k) for k in self.IDENTITY}

    @property
    def strategies(self) -> tuple[str, ...]:
        """The names of the strategies to run, in order."""
        return tuple(list_strategies()) if self.strategy == "all" else (self.strategy,)
