"""Random search, the baseline every search is judged against at an equal evaluation budget."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable

from nas.core.values import POSITIVE_INT
from nas.search.base import SearchOutcome, SearchStrategy, StrategyOptions, option, register_strategy
from nas.search.objective import Budget, Evaluation, Objective, Step
from nas.space.spaces import SearchSpace

__all__ = ["RandomSearch", "RandomOptions", "random_search"]


@dataclass(frozen=True)
class RandomOptions(StrategyOptions):
    """The options of random search (``--option random.NAME=VALUE``)."""
    max_draws: int = option(100_000, POSITIVE_INT,
                            help="random architectures drawn at most to find the evaluations within the budget")


@register_strategy
class RandomSearch(SearchStrategy):
    """Accuracy-evaluate ``evals`` random architectures that meet the budget (rejection sampling on the
    cheap metrics, at most ``max_draws`` draws, so no evaluation is wasted outside the budget). The pick
    is the most accurate of them. The search-wide ``seed`` seeds the draws. Its evaluations are random
    subnets within the budget: the spread of their accuracies is the search's ``signal``."""

    name = "random"
    Options = RandomOptions
    takes = ("seed",)
    samples_within_budget = True
    color = "tab:gray"

    def run(self, objective: Objective, space: SearchSpace, budget: Budget, evals: int | None = None, *,
            batch: int = 1, on_step: Callable[[Step], None] | None = None) -> SearchOutcome:
        if evals is None:
            raise ValueError("random search needs a number of accuracy evaluations (evals)")
        start, t0 = objective.evaluations, time.perf_counter()
        rng = random.Random(self.seed)
        picked, draws = [], 0
        while len(picked) < evals and draws < self.options.max_draws:
            draws += 1
            a = space.sample(rng, keep_prob=rng.uniform(0.2, 0.9), attn_prob=rng.uniform(0.0, 0.6))
            lat, p, _ = objective.cheap(a)
            if budget.allows(p, lat):
                picked.append(a)
        results = objective.evaluate_many(picked)
        return SearchOutcome(self.name, results, budget.best(results), objective.evaluations - start,
                             seconds=time.perf_counter() - t0)


def random_search(objective: Objective, space: SearchSpace, n_evals: int, seed: int = 0,
                  params_budget: float | None = None, latency_budget: float | None = None,
                  max_draws: int = 100_000) -> list[Evaluation]:
    """The evaluations :class:`RandomSearch` makes with ``n_evals`` accuracy evaluations, in order."""
    return RandomSearch(seed=seed, max_draws=max_draws).run(
        objective, space, Budget(params_budget, latency_budget), n_evals).evaluations
