import math

import numpy as np
import pytest

from nas.space.units import space_units
from nas.space.metrics import count_macs
from nas.latency.predictor import LatencyPredictor
from nas.space.spaces import DEFAULT_SPACE, TINY_SPACE
from nas.search import base
from nas.search.actions import Action, action_pool
from nas.search.base import (SearchError, SearchOutcome, SearchStrategy, get_strategy, list_strategies,
                             register_strategy, strategy_class)
from nas.search.nsga2 import nsga2_search
from nas.search.objective import Budget, Objective, best_under, within_budget
from nas.search.paper import paper_search
from nas.search.random_search import RandomSearch, random_search


def make_objective(space, seed=0):
    rng = np.random.default_rng(seed)
    table = {u.key: float(u.macs / 1e8 + rng.uniform(0.01, 0.05)) for u in space_units(space, 64, 10)}
    pred = LatencyPredictor(table, space, img_size=64, num_classes=10)

    def acc(arch):            # a smooth stand-in for supernet accuracy: grows with log-MACs
        return 0.5 + 0.05 * math.log(count_macs(arch, img_size=64, num_classes=10))

    return Objective(acc, pred.predict, num_classes=10, img_size=64), pred


def test_action_pool_from_s0():
    s0 = DEFAULT_SPACE.canonical("s0")
    pool = dict(action_pool(s0, DEFAULT_SPACE, "CNEA"))
    kinds = [a.kind for a in pool]
    assert kinds.count("C") == 4                               # every S0 width has a smaller choice
    assert kinds.count("N") == 14                              # every kept block can be dropped
    assert kinds.count("E") == 14                              # ratios 3 and 4 can be lowered
    assert kinds.count("A") == 4
    for action, arch in pool.items():
        DEFAULT_SPACE.validate(arch)
    dropped = pool[Action("N", 2, 13)]
    assert dropped.depths[2] == 5 and not dropped.blocks[2][13].attn
    assert pool[Action("E", 2, 1)].blocks[2][1].ratio == 2
    assert pool[Action("C", 3)].widths[3] == 128
    assert Action("C", 0).apply(DEFAULT_SPACE.min_arch(), DEFAULT_SPACE) is None


def test_paper_search_takes_the_smallest_drop_per_mes_gain():
    obj, pred = make_objective(TINY_SPACE)
    budget = pred.predict(TINY_SPACE.min_arch()) * 1.6
    traj = paper_search(obj, TINY_SPACE, latency_budget=budget, kinds="CNEA")
    assert traj[0].evaluation.arch == TINY_SPACE.max_arch()
    assert within_budget(traj[-1].evaluation, None, budget)
    assert not within_budget(traj[-2].evaluation, None, budget)
    for prev, step in zip(traj, traj[1:]):
        cur = prev.evaluation
        assert step.evaluation.mes > cur.mes
        pool = [new for _, new in action_pool(cur.arch, TINY_SPACE, "CNEA")]
        evs = [obj.evaluate(a) for a in pool if obj.cheap(a)[2] > cur.mes]
        scores = [(cur.accuracy - e.accuracy) / (e.mes - cur.mes) for e in evs]
        chosen = (cur.accuracy - step.evaluation.accuracy) / (step.evaluation.mes - cur.mes)
        assert chosen == pytest.approx(min(scores))
    assert traj[-1].evaluations_so_far == obj.evaluations


def test_baselines_respect_budget_and_evaluation_count(tmp_path):
    obj, pred = make_objective(TINY_SPACE, seed=1)
    budget = pred.predict(TINY_SPACE.max_arch()) * 0.6
    rs = random_search(obj, TINY_SPACE, n_evals=15, seed=0, latency_budget=budget)
    assert len(rs) == 15 and all(e.latency_ms <= budget for e in rs)
    obj2, _ = make_objective(TINY_SPACE, seed=1)
    ns = nsga2_search(obj2, TINY_SPACE, n_evals=15, seed=0, latency_budget=budget,
                      storage=f"sqlite:///{tmp_path}/study.db", study_name="t")
    assert obj2.evaluations == 15
    best = best_under(ns, budget)
    assert best is None or best.latency_ms <= budget
    # a second worker on the same storage continues the same study
    import optuna
    obj3, _ = make_objective(TINY_SPACE, seed=1)
    nsga2_search(obj3, TINY_SPACE, n_evals=5, seed=1, latency_budget=budget,
                 storage=f"sqlite:///{tmp_path}/study.db", study_name="t")
    assert len(optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path}/study.db").trials) >= 20


def test_budget_is_required():
    obj, _ = make_objective(TINY_SPACE)
    with pytest.raises(ValueError, match="budget"):
        paper_search(obj, TINY_SPACE)


def _additive_objective(space, seed):
    """Accuracy as a sum of per-choice penalties: every action's accuracy drop is the same in every
    state, so the lazy variant's stale scores are exact and it must follow the exhaustive trajectory."""
    rng = np.random.default_rng(seed)
    w_pen = rng.uniform(0.001, 0.02, len(space.widths))            # per step down a stage's widths
    drop = [rng.uniform(0.001, 0.03, d) for d in space.max_depths]
    ratio = [rng.uniform(0.001, 0.01, d) for d in space.max_depths]

    def acc(arch):
        a = 0.9
        for s, w in enumerate(arch.widths):
            a -= w_pen[s] * (len(space.widths[s]) - 1 - space.widths[s].index(w))
        for s, stage in enumerate(arch.blocks):
            for j, b in enumerate(stage):
                a -= (not b.keep) * drop[s][j] + (max(space.ratios) - b.ratio) * ratio[s][j]
        return a

    table = {u.key: float(u.macs / 1e8 + rng.uniform(0.01, 0.05)) for u in space_units(space, 64, 10)}
    pred = LatencyPredictor(table, space, img_size=64, num_classes=10)
    return (lambda: Objective(acc, pred.predict, num_classes=10, img_size=64)), pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lazy_search_matches_exhaustive_when_drops_do_not_change(seed):
    make, pred = _additive_objective(TINY_SPACE, seed)
    budget = pred.predict(TINY_SPACE.min_arch()) * 1.3
    full_obj, lazy_obj = make(), make()
    full = paper_search(full_obj, TINY_SPACE, latency_budget=budget)
    lazy = paper_search(lazy_obj, TINY_SPACE, latency_budget=budget, lazy=True, batch=2)
    assert [s.action for s in lazy] == [s.action for s in full] and len(full) > 4
    assert lazy_obj.evaluations < full_obj.evaluations
    assert all(s.evaluated >= 1 for s in lazy[1:])                # the applied action is always fresh
    assert lazy[1].evaluated == lazy[1].candidates                # first step evaluates the whole pool


def test_lazy_search_applies_only_freshly_evaluated_actions():
    obj, pred = make_objective(TINY_SPACE)                        # log-MACs accuracy: drops change
    budget = pred.predict(TINY_SPACE.min_arch()) * 1.6
    seen = []
    traj = paper_search(obj, TINY_SPACE, latency_budget=budget, kinds="CNEA", lazy=True,
                        on_step=lambda st: seen.append(obj.evaluations))
    assert within_budget(traj[-1].evaluation, None, budget)
    for prev, step in zip(traj, traj[1:]):
        assert step.evaluation.mes > prev.evaluation.mes
        assert step.evaluation.accuracy == obj.accuracy_fn(step.evaluation.arch)


def test_the_shipped_strategies_are_found_by_name():
    import subprocess
    import sys
    code = "from nas.search.base import list_strategies; print(','.join(list_strategies()))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["paper,nsga2,random"]            # the paper's loop first: it sets the count
    s = get_strategy("random", seed=3)
    assert isinstance(s, RandomSearch) and s.seed == 3
    with pytest.raises(SearchError, match="unknown search strategy 'nope'; known strategies: paper, nsga2"):
        get_strategy("nope")
    with pytest.raises(SearchError, match="unknown option 'seed' of search strategy 'paper'; its options: actions, "
                                          "lazy, max_steps"):
        get_strategy("paper", seed=1)                             # the paper's loop takes no seed
    p = get_strategy("paper", max_steps=7)
    assert (p.options.lazy, p.options.max_steps, p.options.actions) == (True, 7, "CNE")


def test_strategies_declare_their_options_and_check_them():
    from nas.search.nsga2 import NSGA2Options, NSGA2Search
    from nas.search.paper import PaperOptions, PaperSearch
    from nas.search.random_search import RandomOptions
    assert (PaperSearch.Options, NSGA2Search.Options, RandomSearch.Options) == (PaperOptions, NSGA2Options,
                                                                                RandomOptions)
    n = get_strategy("nsga2", population_size=64, storage="sqlite:///s.db", seed=2, search_name="s")
    assert (n.options.population_size, n.options.storage, n.options.study_name, n.seed, n.search_name) == (
        64, "sqlite:///s.db", None, 2, "s")
    assert get_strategy("random", max_draws=5).options.max_draws == 5
    assert PaperSearch(PaperOptions(lazy=False), max_steps=3).options == PaperOptions(lazy=False, max_steps=3)
    for name, kw, says in [("nsga2", dict(population_size=1), "nsga2.population_size must be at least 2, got 1"),
                           ("random", dict(max_draws=0), "random.max_draws must be at least 1, got 0"),
                           ("paper", dict(actions="XYZ"), "paper.actions must be one or more distinct letters"),
                           ("paper", dict(lazy="yes"), "paper.lazy must be true or false, got 'yes'"),
                           ("random", dict(max_drawz=3), "unknown option 'max_drawz' of search strategy 'random'; "
                                                         "its options: max_draws"),
                           ("random", dict(seed=1.5), "seed must be a whole number")]:
        with pytest.raises(SearchError, match=says):
            get_strategy(name, **kw)


def test_a_small_population_and_few_draws_reach_the_strategies(monkeypatch):
    obj, pred = make_objective(TINY_SPACE, seed=1)
    budget = Budget(latency_ms=pred.predict(TINY_SPACE.max_arch()) * 0.6)
    out = get_strategy("random", max_draws=3).run(obj, TINY_SPACE, budget, 50)
    assert len(out.evaluations) <= 3                              # stopped after 3 draws, not 50 evaluations
    import optuna
    seen = []
    real = optuna.samplers.NSGAIISampler

    def sampler(**kw):
        seen.append(kw)
        return real(**kw)

    monkeypatch.setattr(optuna.samplers, "NSGAIISampler", sampler)
    obj, _ = make_objective(TINY_SPACE, seed=1)
    get_strategy("nsga2", population_size=4, seed=7).run(obj, TINY_SPACE, budget, 5)
    assert seen == [{"population_size": 4, "seed": 7}]


def test_every_strategy_returns_one_kind_of_outcome():
    budget = None
    for name in list_strategies():
        obj, pred = make_objective(TINY_SPACE, seed=1)
        budget = budget or Budget(latency_ms=pred.predict(TINY_SPACE.max_arch()) * 0.6)
        out = get_strategy(name).run(obj, TINY_SPACE, budget, 12)
        assert out.strategy == name and out.n_evals == obj.evaluations > 0
        assert out.chosen is None or (budget.within(out.chosen) and out.chosen in out.evaluations)
        if out.trajectory is not None:                          # a walk: its end is the pick
            assert out.steps == len(out.trajectory) - 1 and out.final is out.trajectory[-1].evaluation
            assert out.chosen is out.final
        else:
            assert out.chosen is budget.best(out.evaluations) and len(out.evaluations) >= 12


def test_budget():
    obj, pred = make_objective(TINY_SPACE)
    ev = obj.evaluate(TINY_SPACE.max_arch())
    assert Budget().unbounded and Budget().within(ev)
    assert Budget(params=ev.params, latency_ms=ev.latency_ms).within(ev)
    assert not Budget(params=ev.params - 1).within(ev) and not Budget(latency_ms=ev.latency_ms * 0.99).within(ev)
    assert within_budget(ev, ev.params, None) and not within_budget(ev, None, ev.latency_ms / 2)
    small = obj.evaluate(TINY_SPACE.min_arch())
    assert Budget(latency_ms=small.latency_ms).best([ev, small]) is small
    assert best_under([ev, small], small.latency_ms / 2) is None


def test_a_registered_strategy_is_run_through_the_same_interface(monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    @register_strategy
    class FirstK(SearchStrategy):
        name = "first-k"
        takes = ("seed",)

        def run(self, objective, space, budget, evals=None, *, batch=1, on_step=None):
            evs = objective.evaluate_many([space.sample(self.seed + i) for i in range(evals)])
            return SearchOutcome(self.name, evs, budget.best(evs), objective.evaluations)

    assert "first-k" in list_strategies() and list_strategies()[0] == "paper"
    s = strategy_class("first-k")(seed=4)
    assert s.seed == 4 and get_strategy("first-k").seed == 0
    with pytest.raises(SearchError, match="unknown option 'lazy' of search strategy 'first-k'; its options: none"):
        strategy_class("first-k")(lazy=True)
    obj, _ = make_objective(TINY_SPACE)
    out = s.run(obj, TINY_SPACE, Budget(), 3)
    assert out.chosen.accuracy == max(e.accuracy for e in out.evaluations)
    with pytest.raises(ValueError, match="already"):
        register_strategy(type("Other", (FirstK,), {}))
