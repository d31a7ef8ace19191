"""Search strategies over a :class:`~nas.space.SearchSpace`: the paper's fine-grained joint search and
two baselines (Optuna's NSGA-II and random search) with the same evaluation budget.

All strategies see an architecture only through an :class:`Objective`, which returns its accuracy
(from the trained supernet), predicted latency, analytic params and MES, and counts how many distinct
accuracy evaluations were spent.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from nas.space.metrics import MES, count_params
from nas.space.spaces import Arch, SearchSpace

__all__ = ["Action", "Objective", "Evaluation", "action_pool", "paper_search", "random_search",
           "nsga2_search", "within_budget"]

ACTION_KINDS = {
    "C": "shrink a stage's width to the next smaller choice",
    "N": "drop a block (with its attention, if any)",
    "E": "lower a block's FFN expansion ratio to the next smaller choice",
    "A": "remove a block's attention, keeping its FFN",
}
PAPER_ACTIONS = "CNE"


@dataclass(frozen=True)
class Action:
    kind: str
    stage: int
    slot: int | None = None

    def __str__(self):
        return f"A_{self.kind}[stage {self.stage + 1}" + (f", block {self.slot}]" if self.slot is not None else "]")

    def apply(self, arch: Arch, space: SearchSpace) -> Arch | None:
        """The architecture after this action, or None if it cannot apply."""
        s = self.stage
        if self.kind == "C":
            choices = space.widths[s]
            i = choices.index(arch.widths[s])
            if i == 0:
                return None
            widths = list(arch.widths)
            widths[s] = choices[i - 1]
            return arch.replace(widths=tuple(widths))
        b = arch.blocks[s][self.slot]
        if not b.keep:
            return None
        if self.kind == "N":
            if arch.depths[s] <= space.min_depths[s]:
                return None
            return arch.replace(stage=s, slot=self.slot, keep=False, attn=False)
        if self.kind == "E":
            i = space.ratios.index(b.ratio)
            return None if i == 0 else arch.replace(stage=s, slot=self.slot, ratio=space.ratios[i - 1])
        if self.kind == "A":
            return arch.replace(stage=s, slot=self.slot, attn=False) if b.attn else None
        raise ValueError(f"unknown action kind {self.kind!r}")


def action_pool(arch: Arch, space: SearchSpace, kinds: str = PAPER_ACTIONS) -> list[tuple[Action, Arch]]:
    """Every applicable action from ``arch`` with its resulting architecture."""
    out = []
    for s in range(len(arch.widths)):
        candidates = [Action("C", s)] if "C" in kinds else []
        for j in range(len(arch.blocks[s])):
            candidates += [Action(k, s, j) for k in "NEA" if k in kinds]
        for a in candidates:
            new = a.apply(arch, space)
            if new is not None:
                out.append((a, new))
    return out


@dataclass
class Evaluation:
    arch: Arch
    accuracy: float
    latency_ms: float
    params: int
    mes: float

    def row(self) -> dict:
        return {"accuracy": self.accuracy, "latency_ms": self.latency_ms, "params": self.params,
                "mes": self.mes, "arch": self.arch.to_json()}


class Objective:
    """Accuracy from ``accuracy_fn`` (cached per architecture), latency from ``latency_fn``.

    ``evaluations`` counts the distinct architectures whose accuracy this objective was asked for (the
    budget the strategies are compared on). ``known`` pre-fills the accuracy cache (a resumed search reads
    it from disk; such architectures still count once when first asked for), and ``on_evaluated(arch,
    accuracy)`` is called for every accuracy actually computed.
    """

    def __init__(self, accuracy_fn: Callable[[Arch], float] | None, latency_fn: Callable[[Arch], float],
                 num_classes: int = 1000, img_size: int = 224, mes: MES | None = None,
                 accuracy_many: Callable[[Sequence[Arch]], Sequence[float]] | None = None,
                 known: dict[str, float] | None = None,
                 on_evaluated: Callable[[Arch, float], None] | None = None):
        if accuracy_fn is None and accuracy_many is None:
            raise ValueError("give accuracy_fn or accuracy_many")
        self.accuracy_fn, self.latency_fn = accuracy_fn, latency_fn
        self.accuracy_many = accuracy_many
        self.num_classes, self.img_size = num_classes, img_size
        self.mes_fn = mes or MES()
        self._acc: dict[str, float] = dict(known or {})
        self._seen: set[str] = set()
        self.on_evaluated = on_evaluated
        self.computed = 0

    @property
    def evaluations(self) -> int:
        return len(self._seen)

    def params(self, arch: Arch) -> int:
        return count_params(arch, self.num_classes, self.img_size)

    def cheap(self, arch: Arch) -> tuple[float, int, float]:
        lat, p = float(self.latency_fn(arch)), self.params(arch)
        return lat, p, self.mes_fn(params=p, latency_ms=lat)

    def evaluate_many(self, archs: Sequence[Arch]) -> list[Evaluation]:
        keys = [a.to_json() for a in archs]
        todo = [(k, a) for k, a in dict(zip(keys, archs)).items() if k not in self._acc]
        if todo:
            accs = (self.accuracy_many([a for _, a in todo]) if self.accuracy_many
                    else [self.accuracy_fn(a) for _, a in todo])
            for (k, a), acc in zip(todo, accs):
                self._acc[k] = float(acc)
                if self.on_evaluated:
                    self.on_evaluated(a, float(acc))
            self.computed += len(todo)
        self._seen.update(keys)
        out = []
        for k, a in zip(keys, archs):
            lat, p, m = self.cheap(a)
            out.append(Evaluation(a, self._acc[k], lat, p, m))
        return out

    def evaluate(self, arch: Arch) -> Evaluation:
        return self.evaluate_many([arch])[0]


def within_budget(ev: Evaluation, params_budget: float | None, latency_budget: float | None) -> bool:
    return ((params_budget is None or ev.params <= params_budget)
            and (latency_budget is None or ev.latency_ms <= latency_budget))


@dataclass
class Step:
    step: int
    action: str
    evaluation: Evaluation
    evaluations_so_far: int
    candidates: int
    evaluated: int = 0

    def row(self) -> dict:
        return {"step": self.step, "action": self.action, "candidates": self.candidates,
                "evaluated": self.evaluated, "evaluations": self.evaluations_so_far, **self.evaluation.row()}


def paper_search(objective: Objective, space: SearchSpace, start: Arch | None = None,
                 params_budget: float | None = None, latency_budget: float | None = None,
                 kinds: str = PAPER_ACTIONS, max_steps: int = 1000, lazy: bool = False, batch: int = 1,
                 on_step: Callable[[Step], None] | None = None) -> list[Step]:
    """Greedy fine-grained joint search (EfficientFormerV2 §4): from ``start`` (default: the largest
    subnet), evaluate every action of the pool and apply the one with the smallest accuracy drop per
    MES gain, until the budgets hold. Returns the trajectory (step 0 is the start).

    Only actions that raise MES are candidates. An action whose accuracy does not drop (on a finite
    held-out set many differences are noise around zero) scores 0, and ties go to the larger MES gain.

    ``lazy=True`` is the lazy-greedy variant for when accuracy evaluations are expensive: the first step
    evaluates the whole pool; later steps rank the actions by their last measured accuracy drop (stale,
    from an earlier state) over their current MES gain, and evaluate in that order, ``batch`` at a time,
    until the best freshly evaluated score is no worse than the best stale score left. The applied action
    always has a fresh evaluation; the approximation is only in which actions are not re-evaluated.
    """
    if params_budget is None and latency_budget is None:
        raise ValueError("give a params budget, a latency budget, or both")
    cur = objective.evaluate(start or space.max_arch())
    traj = [Step(0, "start", cur, objective.evaluations, 0)]
    if on_step:
        on_step(traj[-1])
    stale: dict[Action, float] = {}           # action -> accuracy drop when last evaluated
    batch = max(1, int(batch))
    while not within_budget(cur, params_budget, latency_budget) and len(traj) <= max_steps:
        pool = []
        for action, new in action_pool(cur.arch, space, kinds):
            gain = objective.cheap(new)[2] - cur.mes
            if gain > 0:                      # only actions that improve efficiency are candidates
                pool.append((action, new, gain))
        if not pool:
            break
        fresh: dict[Action, Evaluation] = {}

        def run(items):
            for (action, _, _), ev in zip(items, objective.evaluate_many([new for _, new, _ in items])):
                fresh[action] = ev
                stale[action] = cur.accuracy - ev.accuracy

        def key(item, drop):                  # an action that costs no accuracy is free: largest gain wins
            return (max(drop, 0.0) / item[2], -item[2])

        if not lazy or not stale:
            run(pool)
        else:
            unknown = [it for it in pool if it[0] not in stale]
            known = sorted((it for it in pool if it[0] in stale), key=lambda it: key(it, stale[it[0]]))
            todo = unknown + known
            while todo:
                run(todo[:batch])
                todo = todo[batch:]
                best_fresh = min(key(it, cur.accuracy - fresh[it[0]].accuracy) for it in pool if it[0] in fresh)
                if not todo or (todo[0][0] in stale and best_fresh <= key(todo[0], stale[todo[0][0]])):
                    break
        scored = [(key(it, cur.accuracy - fresh[it[0]].accuracy), i, it) for i, it in enumerate(pool)
                  if it[0] in fresh]
        _, _, (action, _, _) = min(scored)
        cur = fresh[action]
        traj.append(Step(len(traj), str(action), cur, objective.evaluations, len(pool), len(fresh)))
        if on_step:
            on_step(traj[-1])
    return traj


def random_search(objective: Objective, space: SearchSpace, n_evals: int, seed: int = 0,
                  params_budget: float | None = None, latency_budget: float | None = None,
                  max_draws: int = 100_000) -> list[Evaluation]:
    """Accuracy-evaluate ``n_evals`` random architectures that meet the budgets (rejection sampling on
    the cheap metrics, so no evaluation is wasted outside the budget)."""
    rng = random.Random(seed)
    picked, draws = [], 0
    while len(picked) < n_evals and draws < max_draws:
        draws += 1
        a = space.sample(rng, keep_prob=rng.uniform(0.2, 0.9), attn_prob=rng.uniform(0.0, 0.6))
        lat, p, _ = objective.cheap(a)
        if (params_budget is None or p <= params_budget) and (latency_budget is None or lat <= latency_budget):
            picked.append(a)
    return objective.evaluate_many(picked)


def nsga2_search(objective: Objective, space: SearchSpace, n_evals: int, seed: int = 0,
                 params_budget: float | None = None, latency_budget: float | None = None,
                 storage: str | None = None, study_name: str | None = None,
                 population_size: int = 20, batch: int = 1) -> list[Evaluation]:
    """Optuna NSGA-II over the space (maximise accuracy, minimise latency and params; budgets as
    constraints) until ``n_evals`` distinct architectures have been accuracy-evaluated. Trials are asked
    ``batch`` at a time and evaluated together (``Objective.evaluate_many``, which can spread them over
    processes). ``storage`` (an Optuna storage URL) lets several workers share one study."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    sampler = optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler,
                                storage=storage, study_name=study_name, load_if_exists=storage is not None)
    results: list[Evaluation] = []
    start, asked = objective.evaluations, 0
    while objective.evaluations - start < n_evals and asked < 20 * n_evals:
        k = max(1, min(batch, n_evals - (objective.evaluations - start)))
        trials = [study.ask() for _ in range(k)]
        archs = [suggest_arch(t, space) for t in trials]
        asked += k
        for trial, ev in zip(trials, objective.evaluate_many(archs)):
            # feasible when <= 0 (Optuna's constrained NSGA-II ranks feasible trials first)
            trial.set_constraint("params", (ev.params - params_budget) / params_budget if params_budget else -1.0)
            trial.set_constraint("latency", (ev.latency_ms - latency_budget) / latency_budget
                                 if latency_budget else -1.0)
            trial.set_user_attr("arch", ev.arch.to_json())
            study.tell(trial, (ev.accuracy, ev.latency_ms, ev.params))
            results.append(ev)
    return results


def suggest_arch(trial, space: SearchSpace) -> Arch:
    """An architecture from an Optuna trial (one categorical per width, slot keep, ratio, attention)."""
    from nas.space.spaces import BlockChoice
    widths = tuple(trial.suggest_categorical(f"w{s}", list(space.widths[s])) for s in range(4))
    blocks = []
    for s, d in enumerate(space.max_depths):
        stage = []
        for j in range(d):
            keep = trial.suggest_categorical(f"k{s}_{j}", [True, False])
            ratio = trial.suggest_categorical(f"r{s}_{j}", list(space.ratios))
            attn = s in space.attn_stages and trial.suggest_categorical(f"a{s}_{j}", [True, False])
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


def best_under(evals: Iterable[Evaluation], latency_ms: float, params: float | None = None) -> Evaluation | None:
    """Most accurate evaluation at or under the given latency (and params)."""
    ok = [e for e in evals if e.latency_ms <= latency_ms and (params is None or e.params <= params)]
    return max(ok, key=lambda e: e.accuracy) if ok else None
