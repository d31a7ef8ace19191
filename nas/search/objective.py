"""What a search strategy sees of an architecture, and the budgets it must meet.

A strategy sees an architecture only through an :class:`Objective`, which returns an
:class:`Evaluation`: its accuracy (from the trained supernet, or any function), its predicted latency,
analytic params and MES. The objective counts the distinct architectures whose accuracy was asked for:
the evaluation budget the strategies are compared on. A :class:`Budget` holds the deployment limits
(params, latency) a chosen architecture must meet.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from nas.space.arch import Arch
from nas.space.metrics import MES, count_params

__all__ = ["Evaluation", "Step", "Objective", "Budget", "within_budget", "best_under"]


@dataclass
class Evaluation:
    """An architecture with its accuracy, predicted latency (ms), parameter count and MES."""
    arch: Arch
    accuracy: float
    latency_ms: float
    params: int
    mes: float

    def row(self) -> dict:
        return {"accuracy": self.accuracy, "latency_ms": self.latency_ms, "params": self.params,
                "mes": self.mes, "arch": self.arch.to_json()}


@dataclass
class Step:
    """One step of a search trajectory: the action applied (``"start"`` for step 0), the evaluation it
    led to, the objective's evaluation count after it, and how many candidate actions there were and how
    many of them were evaluated afresh for this step."""
    step: int
    action: str
    evaluation: Evaluation
    evaluations_so_far: int
    candidates: int
    evaluated: int = 0

    def row(self) -> dict:
        return {"step": self.step, "action": self.action, "candidates": self.candidates,
                "evaluated": self.evaluated, "evaluations": self.evaluations_so_far, **self.evaluation.row()}


class Objective:
    """Accuracy from ``accuracy_fn`` (cached per architecture), latency from ``latency_fn``.

    ``evaluations`` counts the distinct architectures whose accuracy this objective was asked for (the
    budget the strategies are compared on). ``accuracy_many(archs)``, when given, computes several
    accuracies at once (e.g. spread over processes) instead of ``accuracy_fn``. ``known`` pre-fills the
    accuracy cache (a resumed search reads it from disk; such architectures still count once when first
    asked for), and ``on_evaluated(arch, accuracy)`` is called for every accuracy actually computed.
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
        return count_params(arch, num_classes=self.num_classes, img_size=self.img_size)

    def cheap(self, arch: Arch) -> tuple[float, int, float]:
        """``(latency_ms, params, mes)`` of ``arch``: no accuracy evaluation, nothing counted."""
        lat, p = float(self.latency_fn(arch)), self.params(arch)
        return lat, p, self.mes_fn(params=p, latency_ms=lat)

    def evaluate_many(self, archs: Sequence[Arch]) -> list[Evaluation]:
        """The evaluations of ``archs``, in order; the accuracies not known yet are computed together."""
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


@dataclass(frozen=True)
class Budget:
    """Upper bounds for a searched network: ``params`` (parameters of the deployed network, a count) and
    ``latency_ms`` (predicted latency on the target); None leaves that quantity free."""
    params: float | None = None
    latency_ms: float | None = None

    @property
    def unbounded(self) -> bool:
        """True when neither params nor latency is bounded."""
        return self.params is None and self.latency_ms is None

    def allows(self, params: float, latency_ms: float) -> bool:
        """True when a network of ``params`` parameters and ``latency_ms`` predicted latency fits (an infinite
        latency, a network on a forbidden unit, never does)."""
        return (latency_ms < math.inf and (self.params is None or params <= self.params)
                and (self.latency_ms is None or latency_ms <= self.latency_ms))

    def within(self, ev: Evaluation) -> bool:
        """True when the evaluated architecture fits."""
        return self.allows(ev.params, ev.latency_ms)

    def best(self, evals: Iterable[Evaluation]) -> Evaluation | None:
        """The most accurate evaluation that fits (the first of equals), or None."""
        ok = [e for e in evals if self.within(e)]
        return max(ok, key=lambda e: e.accuracy) if ok else None


def within_budget(ev: Evaluation, params_budget: float | None, latency_budget: float | None) -> bool:
    """True when ``ev`` has at most ``params_budget`` params and ``latency_budget`` ms (None: no bound)."""
    return Budget(params_budget, latency_budget).within(ev)


def best_under(evals: Iterable[Evaluation], latency_ms: float, params: float | None = None) -> Evaluation | None:
    """Most accurate evaluation at or under the given latency (and params)."""
    return Budget(params, latency_ms).best(evals)
