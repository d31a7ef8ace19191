"""Fine-grained joint search over a trained slimmable supernet (EfficientFormerV2 §4), with baselines.

    from nas.search import SearchConfig, run_search
    summary = run_search(SearchConfig(target="pixel6", params_budget=3.5, latency_budget=1.0))

:class:`SearchConfig` holds the settings (defaults = ``python -m nas.search``); :func:`run_search` runs
one search and returns its summary. Under ``torchrun`` every process calls it: rank 0 searches, and the
accuracy evaluations are shared by all processes.

Accuracy comes from the supernet at its training resolution and classes (a proxy task); params, latency
and MES are those of the deployed network: the latency table's resolution and classes (224 px, 1000
classes for the shipped tables). Everything a run computes is kept in its output folder: every accuracy
evaluation is appended to a cache as it is made, so a killed search, rerun with the same settings,
replays its finished steps from the cache and goes on where it stopped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from nas.core.distributed import init_distributed, launch, local_cores
from nas.core.files import Busy, atomic_write_text, claim_output, exclusive, file_digest, read_json
from nas.core.stats import A_BETTER, B_BETTER, binomial_stderr, paired_bootstrap
from nas.data.datasets import FMNIST_INSTALL
from nas.data.folder import open_dataset
from nas.export.subnet import FORMATS, export_subnet
from nas.latency.local_tables import ensure_local_table
from nas.latency.calibration import calibration_path
from nas.latency.measure import make_profiler, measure_archs, table_key
from nas.latency.predictor import LatencyPredictor
from nas.latency.tables import is_local, resolve_table
from nas.core.values import (FLAG, NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, TEXT, WHOLE, check_settings,
                             letters, one_of, setting)
from nas.search.actions import ACTION_KINDS, PAPER_ACTIONS
from nas.search.base import SearchError, SearchOutcome, SearchStrategy, list_strategies, strategy_class
from nas.search.cache import EvaluationCache
from nas.search.distributed_accuracy import DistributedAccuracy
from nas.search.objective import Budget, Evaluation, Objective, Step
from nas.search.report import (conclusion, describe, describe_comparison, plot_comparison,
                               plot_trajectory, write_csv, write_evaluations, write_json, write_trajectory)
from nas.space.arch import Arch
from nas.space.spaces import SearchSpace, get_space
from nas.supernet.checkpoint import checkpoint_file, checkpoint_space, load_checkpoint, load_supernet
from nas.supernet.evaluate import SubnetEvaluator
from nas.supernet.shipped import shipped_card, shipped_supernet
from nas.supernet.supernet import SlimmableSupernet
from nas.training import TrainConfig, train
from nas.training.config import default_space
from profilers.base import ProfilerUnavailable
from profilers.devices import DeviceError, get_device
from profilers.table import host_tables_dir, read_meta

__all__ = ["SearchConfig", "run_search", "DEFAULT_SUPERNET", "DEFAULT_EVALS"]

log = logging.getLogger(__name__)

DEFAULT_SUPERNET = "runs/supernet"
DEFAULT_EVALS = 200
#: what a search folder records of the search whose results it holds
RUN_RECORD = "run.json"
#: files that only a search's results are
RESULTS = ("summary.json", "best_arch.json", "comparison.csv", "export")
BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class SearchConfig:
    """Everything :func:`run_search` needs; the defaults are those of ``python -m nas.search``.

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


@dataclass
class _Setup:
    """What every process builds before searching: the predictor, the supernet and its evaluators."""
    table: Path
    pred: LatencyPredictor
    net: SlimmableSupernet
    meta: dict
    evaluator: SubnetEvaluator
    final: SubnetEvaluator | None
    pool: DistributedAccuracy
    world: int

    @property
    def space(self) -> SearchSpace:
        return self.net.space


def run_search(config: SearchConfig) -> dict | None:
    """Run the search ``config`` describes; its summary (also written as ``summary.json``) on rank 0,
    None on the other ranks of a ``torchrun`` group (they evaluate accuracies for rank 0).

    Before any long work (profiling this host's table, training the supernet, searching), rank 0 claims
    its outputs: the results folder (created, probe-written and locked for the whole run), the folder a
    supernet to train goes to and this host's table folder."""
    config = dataclasses.replace(config, supernet=resolve_supernet(config.supernet))
    device, runtime = _target_names(config)
    out = Path(config.out_dir or f"runs/search/{device}.{runtime}")
    with contextlib.ExitStack() as held:
        if int(os.environ.get("RANK", "0")) == 0:
            _claim_outputs(config, out)
            try:
                held.enter_context(exclusive(out, "search results in", folder=True))
            except Busy as e:
                raise SearchError(f"{e} (--out-dir)") from None
        return _run(config, out, device, runtime)


def _target_names(config: SearchConfig) -> tuple[str, str]:
    """The device and runtime a search's table is of, from the settings alone (no profiling): a table path's
    metadata, or the device entry (a missing table of a device that is not this machine is said here)."""
    if Path(config.target).suffix != ".csv":
        try:
            dev = get_device(config.target)
        except DeviceError as e:
            raise SearchError(f"{e}; or give a table CSV path as --target") from None
        if config.runtime is not None and config.runtime not in dev.runtimes:
            raise SearchError(f"device {dev.name!r} is profiled with {', '.join(dev.runtimes)}, not "
                              f"{config.runtime!r}; pass one of those as --runtime")
        if dev.connection_type == "local" and not os.environ.get("EFFV2_TABLES"):
            return dev.name, config.runtime or dev.runtime       # this host's table: made on first use
    path = resolve_table(config.target, config.runtime)
    meta = read_meta(path)
    parts = path.name.split(".")
    return (str(meta.get("device") or parts[0]),
            str(meta.get("runtime") or (parts[1] if len(parts) == 3 else config.runtime or "table")))


def _claim_outputs(config: SearchConfig, out: Path) -> None:
    """Create and probe-write every folder the search will write (:func:`nas.core.files.claim_output`)."""
    claim_output(out, folder=True)
    if not checkpoint_file(config.supernet).exists() and Path(config.supernet) == Path(DEFAULT_SUPERNET):
        claim_output(DEFAULT_SUPERNET, folder=True)          # the supernet is trained there first
    if Path(config.target).suffix != ".csv" and not os.environ.get("EFFV2_TABLES"):
        if get_device(config.target).connection_type == "local":
            claim_output(host_tables_dir(), folder=True)      # this host's table may be measured there


def _run(config: SearchConfig, out: Path, device: str, runtime: str) -> dict | None:
    rank0 = int(os.environ.get("RANK", "0")) == 0
    table, probed = _prepare_table(config)    # before any training: a missing table is the first thing to say
    pred = LatencyPredictor.from_table(table, verify="probe" if rank0 and not probed else "fingerprint",
                                       allow_foreign=config.allow_foreign_table or None)
    _ensure_supernet(config)
    rank, world, dev = init_distributed()
    torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // world))
    net, meta = load_supernet(config.supernet)
    space = net.space
    if space.to_dict() != pred.space.to_dict():       # a table of another space serves if it holds every unit
        pred = pred.for_space(space)
    missing = pred.missing_keys()
    if missing:
        raise SearchError(f"the table {table} (space {pred.meta.get('space', '?')!r}) lacks {len(missing)} units "
                          f"of the supernet's space {space.name!r} (e.g. {missing[0]}); {pred.fill_hint()}")
    net.to(dev)
    dataset = meta.get("dataset", "fashion-mnist")
    heldout, final_heldout = _split_test(dataset, config.heldout, config.final_heldout, log if rank == 0 else None)
    evaluator = SubnetEvaluator.from_dataset(net, dataset, heldout=heldout,
                                             calib_batches=config.calib_batches, batch_size=config.batch_size,
                                             seed=config.seed)
    fns = {"search": evaluator.accuracy}
    final = None
    if final_heldout:                      # test images disjoint from the search's, to compare the picks on
        try:
            final = SubnetEvaluator.from_dataset(net, dataset, heldout=final_heldout,
                                                 heldout_start=evaluator.num_heldout,
                                                 calib_batches=config.calib_batches, batch_size=config.batch_size,
                                                 seed=config.seed)
            fns["final"] = final.correct          # per image: the picks are compared image by image
        except ValueError as e:
            if rank == 0:
                log.info(f"No final evaluation of the picks: {e}")
    pool = DistributedAccuracy(fns, progress=config.progress)
    if rank != 0:
        pool.serve()
        return None
    setup = _Setup(table, pred, net, meta, evaluator, final, pool, world)
    try:
        return _Search(config, setup, out, device, runtime).run()
    finally:
        pool.close()


def _split_test(dataset: str, heldout: int, final: int, logger: logging.Logger | None) -> tuple[int, int]:
    """Search and final images from the test split: as asked where it holds enough; a smaller split (the
    bundled Fashion-MNIST subset's 2,000 images) is shared, at most half to the search, the rest final."""
    n = len(open_dataset(dataset, "test"))
    if not final or heldout + final <= n:
        return heldout, final
    h = min(heldout, n // 2)
    if logger:
        logger.warning(f"the {dataset} test split holds {n} images, fewer than --heldout {heldout} + --final-heldout "
                       f"{final}: {h} for the search, {n - h} for the final comparison"
                       + (f" (the full set: {FMNIST_INSTALL})" if dataset == "fashion-mnist" else ""))
    return h, n - h


def resolve_supernet(path: str | None) -> str:
    """The supernet a search uses: ``path`` when given; else ``runs/supernet`` when it holds a run (a user's
    own training), else the shipped supernet of the space a run on this machine would train
    (:func:`nas.training.config.default_space`), else ``runs/supernet`` (trained first)."""
    if path is not None:
        return path
    if checkpoint_file(DEFAULT_SUPERNET).exists():
        return DEFAULT_SUPERNET
    shipped = shipped_supernet(default_space())
    if shipped is None:
        return DEFAULT_SUPERNET
    card = shipped_card(shipped)
    about = card.get("summary") or f"see its card {shipped.with_suffix('.json').name}"
    log.info(f"Supernet: the shipped {shipped.name} ({about}). Train your own with --supernet {DEFAULT_SUPERNET} "
             f"(about {card.get('train_minutes', 30):.0f} minutes on two CPU cores).")
    return str(shipped)


def _ensure_supernet(config: SearchConfig) -> None:
    """Train the default supernet when it is asked for and absent: one process per core, two at most (the
    CPU recipe's), under torchrun's launcher."""
    path = config.supernet
    if checkpoint_file(path).exists():
        return
    if Path(path) != Path(DEFAULT_SUPERNET):
        raise SearchError(f"no supernet checkpoint at {path}. Train one with: "
                          f"python -m nas.train_supernet --out {path}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SearchError(f"no supernet at {path}. Train it first, e.g. torchrun --nproc_per_node N "
                          f"-m nas.train_supernet --out {path}, then rerun the search")
    nproc = min(2, local_cores())
    log.info(f"No trained supernet at {path}: training the default one first (torchrun --standalone "
             f"--nproc_per_node {nproc} -m nas.train_supernet --out {path} --resume; about half an hour on two "
             f"CPU cores). Interrupt and rerun at any time: it resumes.")
    try:
        launch(train, TrainConfig(out=path, resume=True, progress=config.progress), nproc=nproc)
    except ChildFailedError:
        raise SearchError(f"training the supernet in {path} failed (the error is above); rerun to resume it, or "
                          f"train it alone: torchrun --standalone --nproc_per_node {nproc} -m nas.train_supernet "
                          f"--out {path} --resume") from None


def _supernet_space(path: str) -> SearchSpace:
    """The search space of the supernet at ``path``, or the space it will be trained on when it is still to
    be trained."""
    ck = checkpoint_file(path)
    if not ck.exists():
        if Path(path) != Path(DEFAULT_SUPERNET):
            raise SearchError(f"no supernet checkpoint at {path}. Train one with: "
                              f"python -m nas.train_supernet --out {path}")
        return get_space(default_space())
    return checkpoint_space(load_checkpoint(path)["meta"])        # the space only: no model is built


def _prepare_table(config: SearchConfig) -> tuple[Path, bool]:
    """The target's table path, and whether this host's probe was checked against it on the way. A
    ``local`` device's table is this host's: made (profiled and calibrated) on first use, and its probe
    checked against this host otherwise."""
    if Path(config.target).suffix == ".csv" or os.environ.get("EFFV2_TABLES"):
        return resolve_table(config.target, config.runtime), False
    dev = get_device(config.target)
    if dev.connection_type != "local" or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return resolve_table(config.target, config.runtime), False   # N processes do not profile: it must exist
    return ensure_local_table(dev.name, config.runtime, _supernet_space(config.supernet), progress=config.progress,
                              allow_foreign=config.allow_foreign_table or None), True


class _Search:
    """One search on rank 0, in its (locked) output folder ``out``."""

    def __init__(self, config: SearchConfig, setup: _Setup, out: Path, device: str, runtime: str):
        self.config, self.setup, self.out = config, setup, out
        self.device, self.runtime = device, runtime
        self.final_scores: dict[str, dict] = {}       # a pick's final accuracy and its standard error
        self.comparisons: list[dict] = []               # paired bootstrap comparisons of the picks

    @functools.cached_property
    def supernet_sha256(self) -> str:
        """The supernet file's SHA-256 (what the accuracy cache and the run record are keyed by)."""
        return file_digest(checkpoint_file(self.config.supernet))

    # -- the budgets, the cache and the objective ----------------------------------------------------
    def _budgets(self, s0: Arch | None) -> dict:
        c = self.config
        budgets = {"params_m": c.params_budget, "latency_ms": c.latency_budget}
        if budgets["params_m"] is None and budgets["latency_ms"] is None:
            if s0 is None:
                raise SearchError("give --params-budget or --latency-budget (S0 is not in this space)")
            budgets["latency_ms"] = round(float(self.setup.pred.predict(s0)), 4)
        return budgets

    def _cache(self) -> EvaluationCache:
        c, s = self.config, self.setup
        settings = {"supernet_sha256": self.supernet_sha256, "supernet_step": s.meta.get("step"),
                    "dataset": s.meta.get("dataset"), "heldout": s.evaluator.num_heldout,
                    "calib_batches": c.calib_batches, "batch_size": c.batch_size, "seed": c.seed}
        return EvaluationCache(self.out, settings)

    def _claim_folder(self) -> None:
        """The folder holds one search's results (``run.json``: :meth:`SearchConfig.identity` and the
        content of the supernet, the table and its calibration). The same again resumes; another search is
        refused, unless ``overwrite``, which removes the other search's results (its keyed accuracy caches
        stay: they never serve another supernet or other evaluation settings)."""
        s, record = self.setup, self.out / RUN_RECORD
        cal = calibration_path(s.table)
        identity = json.loads(json.dumps({
            **self.config.identity(), "supernet_sha256": self.supernet_sha256,
            "table": str(Path(s.table).resolve()), "table_sha256": file_digest(s.table),
            "calibration_sha256": file_digest(cal) if cal.is_file() else None}))
        if record.exists():
            old = read_json(record, "search record", SearchError, fix=f"remove {self.out} or pass --overwrite")
            diffs = [k for k in sorted(set(old) | set(identity)) if old.get(k) != identity.get(k)]
        else:
            diffs = ["(unrecorded)"] if any((self.out / n).exists() for n in RESULTS) else []
        if diffs and not self.config.overwrite:
            said = "; ".join(f"{k}: {old.get(k)!r} there, {identity.get(k)!r} now" for k in diffs[:4]) \
                if record.exists() else "its settings were not recorded"
            raise SearchError(f"{self.out} holds the results of another search ({said}); rerun that search with "
                              f"its own settings to resume it, write elsewhere with --out-dir, or replace its "
                              f"results with --overwrite")
        if diffs:
            log.info(f"--overwrite: removing the results of the previous search in {self.out}")
            for p in self.out.iterdir():
                if p.name == ".lock" or p.name.startswith("evaluations-"):
                    continue
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        atomic_write_text(record, json.dumps(identity, indent=1) + "\n")

    def objective(self) -> Objective:
        """A fresh objective (its own evaluation count) over the shared accuracy cache."""
        pred = self.setup.pred
        return Objective(None, pred.predict, num_classes=pred.num_classes, img_size=pred.img_size,
                         mes=pred.mes_fn, accuracy_many=self.setup.pool, known=self.cache.known,
                         on_evaluated=self.cache.add)

    def _options(self) -> dict:
        """Search-wide settings the strategies take their options from (by name)."""
        c = self.config
        return {"actions": c.actions, "lazy": c.reevaluate == "lazy", "max_steps": c.max_steps, "seed": c.seed,
                "storage": c.storage,
                "study_name": c.study_name or (f"search-{self.device}-{self.runtime}-{self.budgets['params_m']}-"
                                               f"{self.budget.latency_ms}")}

    # -- the run ----------------------------------------------------------------------------------------
    def run(self) -> dict:
        try:
            return self._run()
        finally:
            if hasattr(self, "cache"):
                self.cache.close()

    def _run(self) -> dict:
        c, s = self.config, self.setup
        space, pred = s.space, s.pred
        s0 = space.canonical("s0") if space.fits("s0") else None
        self._claim_folder()
        self.budgets = self._budgets(s0)
        self.budget = Budget(params=self.budgets["params_m"] * 1e6 if self.budgets["params_m"] else None,
                             latency_ms=self.budgets["latency_ms"])
        self.cache = self._cache()
        if self.cache.known:
            log.info(f"Resuming: {len(self.cache.known)} accuracy evaluations cached in {self.cache.path}")
        log.info(f"Search on {self.device} ({self.runtime}, table {s.table}); supernet {c.supernet} (space "
                 f"{space.name}, {s.meta.get('dataset')} at {s.net.img_size} px, step {s.meta.get('step')}); "
                 f"accuracy on {s.evaluator.num_heldout} held-out images; {s.world} process(es)")
        log.info("Budgets: " + ", ".join(f"{k} <= {v}" for k, v in self.budgets.items() if v is not None)
                 + (f"   (S0: {pred.predict(s0):.3f} ms, {pred.params(s0) / 1e6:.3f} M params)" if s0 else ""))
        reference = None
        if s0 is not None:                 # the hand-designed network at the same budget, for comparison
            reference = self.objective().evaluate(s0)
            log.info(f"reference S0: {describe(reference)}")
        n = s.evaluator.num_heldout
        log.info(f"Each search accuracy is on {n} images: standard error "
                 + (f"about {s.evaluator.standard_error(reference.accuracy) * 100:.2f} points (at S0's accuracy)"
                    if reference else f"at most {binomial_stderr(0.5, n) * 100:.2f} points (at 50 %)"))

        options = self._options()
        outcomes: dict[str, SearchOutcome] = {}
        own_evals = None                   # the evaluation count of the first strategy that stops on its own
        for name in c.strategies:
            strategy = strategy_class(name).from_settings(options)
            evals = (c.evals or own_evals or DEFAULT_EVALS) if strategy.needs_evals else None
            outcomes[name] = outcome = self._run_strategy(strategy, evals)
            if not strategy.needs_evals and own_evals is None:
                own_evals = outcome.n_evals

        self._compare_finally(outcomes, reference)
        summary = self._summary(outcomes, reference)
        if summary["signal"] and summary["signal"]["spread_in_stderr"] is not None:
            g = summary["signal"]
            log.info(f"\nSubnets within the budget ({g['n']} random ones, accuracy on {n} images): "
                     f"5th-95th percentile {g['p5'] * 100:.2f}-{g['p95'] * 100:.2f} % ({g['spread'] * 100:.2f} "
                     f"points = {g['spread_in_stderr']:.1f} standard errors of one evaluation)")
        if len(outcomes) > 1:
            self._write_comparison(outcomes)
        self._log_comparisons()
        if c.measure:
            self._measure_picks(outcomes, reference, summary)
        main_pick = next((o.chosen for o in outcomes.values() if o.chosen is not None), None)
        if main_pick is not None:
            best = atomic_write_text(self.out / "best_arch.json", main_pick.arch.to_json(indent=1))
            summary["best_arch"] = str(best)
            if c.export:
                summary["export"] = self._export(main_pick)
        write_json(summary, self.out / "summary.json", default=str)
        log.info(f"Results in {self.out}/")
        return summary

    def _run_strategy(self, strategy: SearchStrategy, evals: int | None) -> SearchOutcome:
        name, folder = strategy.name, self.out / strategy.name
        objective = self.objective()
        t0 = time.perf_counter()
        traj: list[Step] = []
        if evals is not None:
            log.info(f"{name}: {evals} accuracy evaluations ...")

        def on_step(st: Step):
            ev = st.evaluation
            prev = traj[-1].evaluation.accuracy if traj else None
            d = f" ({(ev.accuracy - prev) * 100:+.2f})" if prev is not None else ""
            log.info(f"step {st.step:3d}  {st.action:24s} acc {ev.accuracy * 100:6.2f}%{d:9s} "
                     f"lat {ev.latency_ms:7.3f} ms  params {ev.params / 1e6:6.3f} M  MES {ev.mes:7.2f}  "
                     f"evals {st.evaluations_so_far} (+{st.evaluated} of {st.candidates})  "
                     f"[{time.perf_counter() - t0:5.0f} s]")
            traj.append(st)
            write_trajectory(traj, folder, self.budgets)

        outcome = strategy.run(objective, self.setup.space, self.budget, evals, batch=self.setup.world,
                               on_step=on_step)
        if outcome.trajectory is not None:
            write_trajectory(outcome.trajectory, folder, self.budgets)
            if self.config.plot:
                plot_trajectory(outcome.trajectory, folder / "trajectory.png", self.budgets,
                                f"{self.device} ({self.runtime}): {name} search, {outcome.steps} steps")
            log.info(f"{name}:  {describe(outcome.final)}  after {outcome.steps} steps, {outcome.n_evals} "
                     f"evaluations, {outcome.seconds:.0f} s")
        else:
            write_evaluations(outcome.evaluations, folder)
            log.info(f"{name}: {describe(outcome.chosen)}  ({outcome.n_evals} evaluations, "
                     f"{outcome.seconds:.0f} s)")
        return outcome

    def _picks(self, outcomes: dict[str, SearchOutcome], reference: Evaluation | None) -> dict[str, Evaluation]:
        picks = {n: o.chosen for n, o in outcomes.items() if o.chosen is not None}
        if reference is not None:
            picks["reference_s0"] = reference
        return picks

    def _compare_finally(self, outcomes: dict[str, SearchOutcome], reference: Evaluation | None) -> None:
        """The picks' (and S0's) accuracy on test images none was chosen on (an unbiased comparison), each
        with its standard error, and paired bootstrap intervals of their differences over those same
        images: every strategy's pick against S0's, and every pair of strategies."""
        final = self.setup.final
        picks = self._picks(outcomes, reference)
        if final is None or not picks:
            return
        n = final.num_heldout
        log.info(f"Final accuracy of the picks on {n} other test images (± one standard error) ...")
        distinct = {e.arch.to_json(): e.arch for e in picks.values()}         # a shared pick is evaluated once
        vectors = dict(zip(distinct, self.setup.pool(list(distinct.values()), which="final")))
        correct = {name: vectors[e.arch.to_json()] for name, e in picks.items()}
        for name, v in correct.items():
            acc = float(np.mean(v))
            se = final.standard_error(acc)
            self.final_scores[name] = {"final_accuracy": acc, "final_accuracy_stderr": se}
            shown = "S0 (reference)" if name == "reference_s0" else name
            log.info(f"  {shown:16s} {acc * 100:6.2f}% ± {se * 100:.2f}")
        names = [m for m in picks if m != "reference_s0"]
        pairs = [(m, "reference_s0") for m in names if "reference_s0" in picks]
        pairs += [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        for a, b in pairs:
            c = paired_bootstrap(correct[a], correct[b], n_boot=BOOTSTRAP_RESAMPLES, seed=self.config.seed,
                                 level=CONFIDENCE)
            better = {A_BETTER: a, B_BETTER: b}.get(c.verdict)
            self.comparisons.append({"a": a, "b": b, **c.to_dict(), "better": better})

    def _final_fields(self, name: str) -> dict:
        return self.final_scores.get(name, {"final_accuracy": None, "final_accuracy_stderr": None})

    def _summary(self, outcomes: dict[str, SearchOutcome], reference: Evaluation | None) -> dict:
        c, s = self.config, self.setup
        se = s.evaluator.standard_error
        return {"target": self.device, "runtime": self.runtime, "table": str(s.table), "budgets": self.budgets,
                "final_heldout": s.final.num_heldout if s.final is not None else 0,
                "reference_s0": ({**reference.row(), "accuracy_stderr": se(reference.accuracy),
                                  **self._final_fields("reference_s0")} if reference else None),
                "supernet": c.supernet, "heldout": s.evaluator.num_heldout, "processes": s.world,
                "strategies": {n: {"n_evals": o.n_evals, "seconds": round(o.seconds, 1),
                                   **({"steps": o.steps} if o.trajectory is not None else {}),
                                   "chosen": ({**o.chosen.row(), "accuracy_stderr": se(o.chosen.accuracy),
                                               **self._final_fields(n)} if o.chosen else None)}
                               for n, o in outcomes.items()},
                "comparisons": self.comparisons,
                "conclusion": conclusion(self.comparisons) if self.comparisons else None,
                "signal": self._signal(outcomes)}

    def _signal(self, outcomes: dict[str, SearchOutcome]) -> dict | None:
        """How far apart the subnets within the budget are against the noise of one evaluation: the 5th to
        95th percentile range of the accuracies random search measured (random subnets within the budget),
        in points and in standard errors at their median. None without at least 10 such evaluations."""
        o = outcomes.get("random")
        if o is None or len(o.evaluations) < 10:
            return None
        acc = np.array([e.accuracy for e in o.evaluations])
        p5, p50, p95 = (float(v) for v in np.percentile(acc, [5, 50, 95]))
        se = self.setup.evaluator.standard_error(p50)
        return {"n": len(acc), "min": float(acc.min()), "p5": p5, "median": p50, "p95": p95, "max": float(acc.max()),
                "spread": p95 - p5, "stderr": se, "spread_in_stderr": (p95 - p5) / se if se else None}

    def _write_comparison(self, outcomes: dict[str, SearchOutcome]) -> None:
        """``comparison.csv``, ``comparison.png`` and the table of the strategies side by side."""
        se = self.setup.evaluator.standard_error
        rows = [{"strategy": n, "evaluations": o.n_evals, "seconds": round(o.seconds, 1),
                 **({k: v for k, v in o.chosen.row().items() if k != "arch"} if o.chosen else {}),
                 "accuracy_stderr": se(o.chosen.accuracy) if o.chosen else None, **self._final_fields(n)}
                for n, o in outcomes.items()]
        write_csv(pd.DataFrame(rows), self.out / "comparison.csv")
        if self.config.plot:
            plot_comparison(outcomes, self.out / "comparison.png", self.budgets, f"{self.device} ({self.runtime})")
        log.info("\nstrategy  evaluations  time   pick within the budgets"
                 + ("   (final accuracy ± standard error)" if self.setup.final is not None else ""))
        for n, o in outcomes.items():
            f = self._final_fields(n)
            fa = (f"   ({f['final_accuracy'] * 100:.2f}% ± {f['final_accuracy_stderr'] * 100:.2f})"
                  if f["final_accuracy"] is not None else "")
            log.info(f"{n:8s}  {o.n_evals:11d}  {o.seconds:4.0f} s  {describe(o.chosen)}{fa}")

    def _log_comparisons(self) -> None:
        """The paired comparisons of the picks, one line each, and what they show."""
        if not self.comparisons:
            return
        c0 = self.comparisons[0]
        log.info(f"\nAccuracy differences on the same {c0['n']} final images, in points, with "
                 f"{c0['level'] * 100:.0f} % paired bootstrap intervals (a tie when the interval contains 0):")
        for c in self.comparisons:
            log.info(f"  {describe_comparison(c)}")
        log.info(conclusion(self.comparisons))

    def _export(self, pick: Evaluation) -> dict:
        folder = self.out / "export"
        log.info(f"Exporting the chosen arch to {folder} ({','.join(self.config.formats)}) ...")
        rep = export_subnet(self.setup.net, pick.arch, folder, calib_batches=self.setup.evaluator.calib,
                            formats=list(self.config.formats))
        for fmt, e in rep["formats"].items():
            check = (f"max |Δlogit| {e['max_abs_diff']:.2e}" if "max_abs_diff" in e
                     else e.get("note") or e.get("error", ""))
            log.info(f"  {fmt:8s} {e.get('file', '')}  {check}")
        return rep["formats"]

    def _measure_picks(self, outcomes: dict[str, SearchOutcome], reference: Evaluation | None,
                       summary: dict) -> None:
        """Measure the picks (and S0) end to end on the target's runtime, as deployed (the table's
        resolution and classes, random weights: latency does not depend on them), where that runtime
        can run here."""
        pred, dev, rt = self.setup.pred, self.device, self.runtime
        picks = self._picks(outcomes, reference)
        if not picks:
            return
        if not is_local(pred.meta):
            log.info(f"Picks not measured end to end: {dev} is not this machine, and its latencies are "
                     f"measured there")
            return
        try:
            profiler = make_profiler(dev, rt, self.config.measure_threads, pred.meta.get("settings"))
            profiler.check_ready()
        except (ProfilerUnavailable, KeyError, ValueError) as e:
            log.info(f"Picks not measured end to end on {dev} ({rt}): {e}")
            return
        log.info(f"Measuring the picks end to end on {dev} ({rt}, {pred.img_size} px) ...")
        try:
            rows = measure_archs([e.arch for e in picks.values()], profiler, self.out, "measured",
                                 pred.img_size, pred.num_classes, desc="measuring picks",
                                 table=table_key(self.setup.table, pred.meta), progress=self.config.progress,
                                 probe_reference=(pred.meta.get("probe") or {}).get("p50_ms"))
        except ProfilerUnavailable as e:
            log.info(f"Picks not measured end to end on {dev} ({rt}): {e}")
            return
        summary["measured_ms"] = {}
        for (n, ev), ms in zip(picks.items(), rows["p50_ms"]):
            summary["measured_ms"][n] = float(ms)
            log.info(f"  {'S0 (reference)' if n == 'reference_s0' else n:16s} measured {ms:8.3f} ms   predicted "
                     f"{ev.latency_ms:8.3f} ms   ({(ev.latency_ms - ms) / ms * 100:+.1f} %)")
