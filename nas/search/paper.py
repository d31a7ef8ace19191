"""The paper's fine-grained joint search (EfficientFormerV2 §4), exhaustive or lazy-greedy.

From the largest subnet, each step enumerates the action pool (:mod:`nas.search.actions`), scores each
action by its accuracy drop over its MES gain, applies the best and repeats until the budget holds.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from nas.core.values import FLAG, POSITIVE_INT, letters
from nas.search.actions import ACTION_KINDS, PAPER_ACTIONS, Action, action_pool
from nas.search.base import Flag, SearchOutcome, SearchStrategy, StrategyOptions, option, register_strategy
from nas.search.objective import Budget, Evaluation, Objective, Step
from nas.space.arch import Arch
from nas.space.spaces import SearchSpace

__all__ = ["PaperSearch", "PaperOptions", "paper_search"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaperOptions(StrategyOptions):
    """The options of the paper's loop (``--option paper.NAME=VALUE``, or the shorthand flags)."""
    actions: str = option(PAPER_ACTIONS, letters("".join(ACTION_KINDS), "C width, N depth, E ratio, A attention"),
                          help="action kinds: C width, N depth, E ratio, A attention", flag="--actions")
    lazy: bool = option(True, FLAG, help="true: each step re-evaluates the actions in order of their last "
                                         "measured score until the best is fresh; false: every action",
                        flag=Flag("--reevaluate", {"lazy": True, "all": False},
                                  help="re-evaluate every action each step (all), or lazily in order of the last "
                                       "measured score until the best is fresh (lazy)"))
    max_steps: int = option(1000, POSITIVE_INT, help="steps at most", flag="--max-steps")


@register_strategy
class PaperSearch(SearchStrategy):
    """Greedy fine-grained joint search (EfficientFormerV2 §4): from ``start`` (default: the largest
    subnet), evaluate every action of the pool (kinds ``options.actions``, see
    :data:`~nas.search.actions.ACTION_KINDS`) and apply the one with the smallest accuracy drop per MES
    gain, until the budget holds or ``options.max_steps`` steps were taken. The outcome's trajectory starts with
    step 0 (the start); its pick is the end of the trajectory when that is within the budget.

    Only actions that raise MES are candidates. An action whose accuracy does not drop (on a finite
    held-out set many differences are noise around zero) scores 0, and ties go to the larger MES gain.

    ``lazy=True`` (the default) is the lazy-greedy variant for when accuracy evaluations are expensive: the first step
    evaluates the whole pool; later steps rank the actions by their last measured accuracy drop (stale,
    from an earlier state) over their current MES gain, and evaluate in that order, ``batch`` at a time,
    until the best freshly evaluated score is no worse than the best stale score left. The applied action
    always has a fresh evaluation; the approximation is only in which actions are not re-evaluated.
    ``lazy=False`` re-evaluates every action at every step, as the paper does.

    The search stops on its own: ``evals`` is not used.
    """

    name = "paper"
    Options = PaperOptions
    needs_evals = False
    order = 0
    color = "tab:blue"

    def __init__(self, options: PaperOptions | Mapping[str, Any] | None = None, /, *, start: Arch | None = None,
                 **values: Any):
        super().__init__(options, **values)
        self.start = start

    def run(self, objective: Objective, space: SearchSpace, budget: Budget, evals: int | None = None, *,
            batch: int = 1, on_step: Callable[[Step], None] | None = None) -> SearchOutcome:
        if budget.unbounded:
            raise ValueError("give a params budget, a latency budget, or both")
        first, t0 = objective.evaluations, time.perf_counter()
        made: list[Evaluation] = []
        cur = objective.evaluate(self.start or space.max_arch())
        made.append(cur)
        traj = [Step(0, "start", cur, objective.evaluations, 0)]
        if on_step:
            on_step(traj[-1])
        stale: dict[Action, float] = {}           # action -> accuracy drop when last evaluated
        batch = max(1, int(batch))
        while not budget.within(cur) and len(traj) <= self.options.max_steps:
            pool = []
            for action, new in action_pool(cur.arch, space, self.options.actions):
                gain = objective.cheap(new)[2] - cur.mes
                if gain > 0:                      # only actions that improve efficiency are candidates
                    pool.append((action, new, gain))
            if not pool:
                break
            fresh: dict[Action, Evaluation] = {}

            def evaluate(items):
                evs = objective.evaluate_many([new for _, new, _ in items])
                made.extend(evs)
                for (action, _, _), ev in zip(items, evs):
                    fresh[action] = ev
                    stale[action] = cur.accuracy - ev.accuracy

            def key(item, drop):                  # an action that costs no accuracy is free: largest gain wins
                return (max(drop, 0.0) / item[2], -item[2])

            if not self.options.lazy or not stale:
                evaluate(pool)
            else:
                unknown = [it for it in pool if it[0] not in stale]
                known = sorted((it for it in pool if it[0] in stale), key=lambda it: key(it, stale[it[0]]))
                todo = unknown + known
                while todo:
                    evaluate(todo[:batch])
                    todo = todo[batch:]
                    best_fresh = min(key(it, cur.accuracy - fresh[it[0]].accuracy) for it in pool
                                     if it[0] in fresh)
                    if not todo or (todo[0][0] in stale and best_fresh <= key(todo[0], stale[todo[0][0]])):
                        break
            scored = [(key(it, cur.accuracy - fresh[it[0]].accuracy), i, it) for i, it in enumerate(pool)
                      if it[0] in fresh]
            _, _, (action, _, _) = min(scored)
            cur = fresh[action]
            traj.append(Step(len(traj), str(action), cur, objective.evaluations, len(pool), len(fresh)))
            if on_step:
                on_step(traj[-1])
        ok = budget.within(cur)
        if not ok:
            log.warning("no action could raise MES further before the budgets held")
        return SearchOutcome(self.name, made, cur if ok else None, objective.evaluations - first, traj,
                             time.perf_counter() - t0)


def paper_search(objective: Objective, space: SearchSpace, start: Arch | None = None,
                 params_budget: float | None = None, latency_budget: float | None = None,
                 kinds: str = PAPER_ACTIONS, max_steps: int = 1000, lazy: bool = False, batch: int = 1,
                 on_step: Callable[[Step], None] | None = None) -> list[Step]:
    """The trajectory of :class:`PaperSearch` (step 0 is the start) under a params and/or latency budget."""
    strategy = PaperSearch(actions=kinds, lazy=lazy, max_steps=max_steps, start=start)
    return strategy.run(objective, space, Budget(params_budget, latency_budget), batch=batch,
                        on_step=on_step).trajectory
