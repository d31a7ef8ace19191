"""Running the strategies of a search: its budgets, the accuracy cache that makes it resumable, the
objective every strategy sees, and each strategy's run with its files (``{strategy}/trajectory.csv`` and
``.json`` for a strategy that walks, ``{strategy}/evaluations.csv`` for the others).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from nas.latency.predictor import LatencyPredictor
from nas.search.base import SEARCH_WIDE, SearchError, SearchOutcome, SearchStrategy, strategy_class
from nas.search.cache import EvaluationCache
from nas.search.config import DEFAULT_EVALS, SearchConfig
from nas.search.inputs import Setup
from nas.search.objective import Budget, Objective, Step
from nas.search.report import describe, plot_trajectory, write_evaluations, write_trajectory
from nas.space.arch import Arch

__all__ = ["SearchRun", "search_budgets", "open_cache", "run_strategies"]

log = logging.getLogger(__name__)


def search_budgets(config: SearchConfig, setup: Setup, s0: Arch | None) -> dict:
    """The budgets (``params_m``, ``latency_ms``; None where free): the configured ones, or S0's predicted
    latency when neither is given."""
    budgets = {"params_m": config.params_budget, "latency_ms": config.latency_budget}
    if budgets["params_m"] is None and budgets["latency_ms"] is None:
        if s0 is None:
            raise SearchError("give --params-budget or --latency-budget (S0 is not in this space)")
        latency = setup.pred.predict(s0)
        if latency == math.inf:          # S0 runs on a forbidden unit: its latency as measured is still the bar
            hf = setup.pred.host_factor
            latency = LatencyPredictor.of_table(setup.table).for_space(setup.space).predict(s0) * \
                (hf.factor if hf is not None and hf.applied else 1.0)
        budgets["latency_ms"] = round(float(latency), 4)
    return budgets


def open_cache(config: SearchConfig, setup: Setup, out: Path, supernet_sha256: str) -> EvaluationCache:
    """The accuracy cache in ``out``, keyed by the supernet's content and the evaluation settings."""
    settings = {"supernet_sha256": supernet_sha256, "supernet_step": setup.meta.get("step"),
                "dataset": setup.meta.get("dataset"), "heldout": setup.evaluator.num_heldout,
                "calib_batches": config.calib_batches, "batch_size": config.batch_size, "seed": config.seed}
    return EvaluationCache(out, settings)


@dataclass
class SearchRun:
    """A search on rank 0 in its (claimed and locked) folder ``out``: what its strategies run against."""
    config: SearchConfig
    setup: Setup
    out: Path
    device: str
    runtime: str
    budgets: dict
    cache: EvaluationCache

    @property
    def budget(self) -> Budget:
        b = self.budgets
        return Budget(params=b["params_m"] * 1e6 if b["params_m"] else None, latency_ms=b["latency_ms"])

    @property
    def title(self) -> str:
        """The target as the plots name it."""
        return f"{self.device} ({self.runtime})"

    def objective(self) -> Objective:
        """A fresh objective (its own evaluation count) over the shared accuracy cache."""
        pred = self.setup.pred
        return Objective(None, pred.predict, num_classes=pred.num_classes, img_size=pred.img_size,
                         mes=pred.mes_fn, accuracy_many=self.setup.pool, known=self.cache.known,
                         on_evaluated=self.cache.add)

    def search_wide(self) -> dict:
        """The search-wide values a strategy may take (:data:`~nas.search.base.SEARCH_WIDE`)."""
        values = {"seed": self.config.seed,
                  "search_name": f"search-{self.device}-{self.runtime}-{self.budgets['params_m']}-"
                                 f"{self.budget.latency_ms}"}
        assert set(values) == set(SEARCH_WIDE)
        return values

    def strategy(self, name: str) -> SearchStrategy:
        """Strategy ``name`` with its configured options and the search-wide values it takes."""
        cls, wide = strategy_class(name), self.search_wide()
        return cls(self.config.options_of(name), **{k: wide[k] for k in cls.takes})


def run_strategies(run: SearchRun) -> dict[str, SearchOutcome]:
    """Every strategy of the search, in order, each with a fresh objective; those that spend a given number
    of evaluations get ``evals``, or as many as the first strategy that stops on its own used."""
    outcomes: dict[str, SearchOutcome] = {}
    own_evals = None                   # the evaluation count of the first strategy that stops on its own
    for name in run.config.strategies:
        strategy = run.strategy(name)
        evals = (run.config.evals or own_evals or DEFAULT_EVALS) if strategy.needs_evals else None
        outcomes[name] = outcome = _run_strategy(run, strategy, evals)
        if not strategy.needs_evals and own_evals is None:
            own_evals = outcome.n_evals
    return outcomes


def _run_strategy(run: SearchRun, strategy: SearchStrategy, evals: int | None) -> SearchOutcome:
    """One strategy's run, its trajectory (rewritten after every step) or evaluations in its folder."""
    name, folder = strategy.name, run.out / strategy.name
    objective = run.objective()
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
        write_trajectory(traj, folder, run.budgets)

    outcome = strategy.run(objective, run.setup.space, run.budget, evals, batch=run.setup.world, on_step=on_step)
    if outcome.trajectory is not None:
        write_trajectory(outcome.trajectory, folder, run.budgets)
        if run.config.plot:
            plot_trajectory(outcome.trajectory, folder / "trajectory.png", run.budgets,
                            f"{run.title}: {name} search, {outcome.steps} steps")
        log.info(f"{name}:  {describe(outcome.final)}  after {outcome.steps} steps, {outcome.n_evals} "
                 f"evaluations, {outcome.seconds:.0f} s")
    else:
        write_evaluations(outcome.evaluations, folder)
        log.info(f"{name}: {describe(outcome.chosen)}  ({outcome.n_evals} evaluations, "
                 f"{outcome.seconds:.0f} s)")
    return outcome
