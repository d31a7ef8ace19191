"""Optuna's NSGA-II over the search space, a multi-objective baseline at a given evaluation budget.

Trials share an Optuna storage when one is given (``sqlite:///study.db``, a database URL), so several
workers on several machines can run one study.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

from nas.core.values import POSITIVE_INT, TEXT
from nas.search.base import SearchOutcome, SearchStrategy, StrategyOptions, option, register_strategy
from nas.search.objective import Budget, Evaluation, Objective, Step
from nas.space.arch import Arch, BlockChoice
from nas.space.spaces import SearchSpace

__all__ = ["NSGA2Search", "NSGA2Options", "nsga2_search", "suggest_arch"]

#: Optuna's NSGA-II needs at least two individuals per generation
POPULATION = dataclasses.replace(POSITIVE_INT, rule="at least 2", ok=lambda v: v >= 2)


@dataclass(frozen=True)
class NSGA2Options(StrategyOptions):
    """The options of NSGA-II (``--option nsga2.NAME=VALUE``, or the shorthand flags)."""
    population_size: int = option(20, POPULATION, help="individuals per generation")
    storage: str | None = option(None, TEXT, optional=True, flag="--storage",
                                 help="Optuna storage URL (share one study between workers)")
    study_name: str | None = option(None, TEXT, optional=True, flag="--study-name",
                                    help="Optuna study name (default: search-DEVICE-RUNTIME-PARAMS-LATENCY, from "
                                         "the target and the budgets)")


@register_strategy
class NSGA2Search(SearchStrategy):
    """Optuna NSGA-II over the space (maximise accuracy, minimise latency and params; the budget as
    constraints) until ``evals`` distinct architectures have been accuracy-evaluated. Trials are asked
    ``batch`` at a time and evaluated together (``Objective.evaluate_many``, which can spread them over
    processes). Options (:class:`NSGA2Options`): ``population_size`` individuals per generation;
    ``storage`` (an Optuna storage URL) lets several workers share the study ``study_name`` (default: the
    search-wide ``search_name``). The search-wide ``seed`` seeds the sampler. The pick is the most accurate
    evaluation within the budget.
    """

    name = "nsga2"
    Options = NSGA2Options
    takes = ("seed", "search_name")
    color = "tab:orange"

    def run(self, objective: Objective, space: SearchSpace, budget: Budget, evals: int | None = None, *,
            batch: int = 1, on_step: Callable[[Step], None] | None = None) -> SearchOutcome:
        if evals is None:
            raise ValueError("NSGA-II needs a number of accuracy evaluations (evals)")
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)

        t0 = time.perf_counter()
        o = self.options
        sampler = optuna.samplers.NSGAIISampler(population_size=o.population_size, seed=self.seed)
        study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler,
                                    storage=o.storage, study_name=o.study_name or self.search_name,
                                    load_if_exists=o.storage is not None)
        pb, lb = budget.params, budget.latency_ms
        results: list[Evaluation] = []
        start, asked = objective.evaluations, 0
        while objective.evaluations - start < evals and asked < 20 * evals:
            k = max(1, min(batch, evals - (objective.evaluations - start)))
            trials = [study.ask() for _ in range(k)]
            archs = [suggest_arch(t, space) for t in trials]
            asked += k
            for trial, ev in zip(trials, objective.evaluate_many(archs)):
                # feasible when <= 0 (Optuna's constrained NSGA-II ranks feasible trials first)
                trial.set_constraint("params", (ev.params - pb) / pb if pb else -1.0)
                trial.set_constraint("latency", (ev.latency_ms - lb) / lb if lb else -1.0)
                trial.set_user_attr("arch", ev.arch.to_json())
                study.tell(trial, (ev.accuracy, ev.latency_ms, ev.params))
                results.append(ev)
        return SearchOutcome(self.name, results, budget.best(results), objective.evaluations - start,
                             seconds=time.perf_counter() - t0)


def nsga2_search(objective: Objective, space: SearchSpace, n_evals: int, seed: int = 0,
                 params_budget: float | None = None, latency_budget: float | None = None,
                 storage: str | None = None, study_name: str | None = None,
                 population_size: int = 20, batch: int = 1) -> list[Evaluation]:
    """Every evaluation :class:`NSGA2Search` makes with ``n_evals`` accuracy evaluations, in order."""
    strategy = NSGA2Search(seed=seed, storage=storage, study_name=study_name, population_size=population_size)
    return strategy.run(objective, space, Budget(params_budget, latency_budget), n_evals,
                        batch=batch).evaluations


def suggest_arch(trial, space: SearchSpace) -> Arch:
    """An architecture from an Optuna trial (one categorical per width, slot keep, ratio, attention)."""
    widths = tuple(trial.suggest_categorical(f"w{s}", list(space.widths[s])) for s in range(4))
    blocks = []
    for s, d in enumerate(space.max_depths):
        stage = []
        for j in range(d):
            keep = trial.suggest_categorical(f"k{s}_{j}", [True, False])
            ratio = trial.suggest_categorical(f"r{s}_{j}", list(space.ratios))
            attn = space.may_attend(s, j) and trial.suggest_categorical(f"a{s}_{j}", [True, False])
            stage.append(BlockChoice(keep, ratio, attn))
        short = space.min_depths[s] - sum(b.keep for b in stage)
        for j in range(d - 1, -1, -1):              # repair: keep the last slots if too few are kept
            if short <= 0:
                break
            if not stage[j].keep:
                stage[j] = BlockChoice(True, stage[j].ratio, stage[j].attn)
                short -= 1
        blocks.append(tuple(stage))
    return Arch(widths, tuple(blocks))
