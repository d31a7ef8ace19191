"""Search strategies: the :class:`SearchStrategy` interface, the :class:`SearchOutcome` every strategy
returns, and the registry of strategies by name.

A strategy is a subclass of :class:`SearchStrategy` with a ``name``, its options as constructor
arguments, and a :meth:`~SearchStrategy.run` method; :func:`register_strategy` makes it known to
:func:`get_strategy`, :func:`list_strategies` and ``python -m nas.search --strategy``. The modules of
this package are imported the first time the registry is read, so a
new strategy is one new module in ``nas/search/``::

    from nas.search.base import SearchOutcome, SearchStrategy, register_strategy

    @register_strategy
    class Exhaustive(SearchStrategy):
        name = "exhaustive"

        def __init__(self, seed: int = 0):
            self.seed = seed

        def run(self, objective, space, budget, evals=None, *, batch=1, on_step=None):
            start, t0 = objective.evaluations, time.perf_counter()
            evaluations = objective.evaluate_many(...)
            return SearchOutcome(self.name, evaluations, budget.best(evaluations),
                                 objective.evaluations - start, seconds=time.perf_counter() - t0)

A strategy defined elsewhere is registered when its module is imported.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from nas.core.errors import UserError
from nas.search.objective import Budget, Evaluation, Objective, Step
from nas.space.spaces import SearchSpace

__all__ = ["SearchError", "SearchOutcome", "SearchStrategy", "register_strategy", "get_strategy",
           "strategy_class", "list_strategies"]


class SearchError(UserError):
    """A search that cannot start or go on: no supernet, a table for another space, no budget, a busy
    folder, an unknown strategy, an unreadable evaluation cache."""


@dataclass
class SearchOutcome:
    """What a strategy's :meth:`~SearchStrategy.run` returns.

    ``evaluations``: every evaluation the strategy made, in order. ``chosen``: its pick within the
    budget, or None. ``n_evals``: the distinct architectures whose accuracy it asked the objective for
    (the budget strategies are compared on). ``trajectory``: the steps taken, for a strategy that walks
    from one architecture to the next (step 0 is the start), else None. ``seconds``: wall time.
    """
    strategy: str
    evaluations: list[Evaluation]
    chosen: Evaluation | None
    n_evals: int
    trajectory: list[Step] | None = None
    seconds: float = 0.0

    @property
    def steps(self) -> int | None:
        """Steps taken after the start, for a strategy with a trajectory."""
        return None if self.trajectory is None else len(self.trajectory) - 1

    @property
    def final(self) -> Evaluation | None:
        """Where the trajectory ended (within the budget or not); for other strategies, ``chosen``."""
        return self.trajectory[-1].evaluation if self.trajectory else self.chosen


class SearchStrategy(ABC):
    """A way to search a :class:`~nas.space.spaces.SearchSpace` through an
    :class:`~nas.search.objective.Objective` for an architecture within a
    :class:`~nas.search.objective.Budget`.

    Subclasses set ``name`` (the registry key and the ``--strategy`` value), take their options as
    constructor arguments (keyword arguments with defaults), and implement :meth:`run`.

    ``needs_evals``: True when :meth:`run` spends the ``evals`` accuracy evaluations it is given; False
    for a strategy that stops on its own (its evaluation count then sets the others' when they are
    compared). ``order``: rank in :func:`list_strategies` (then the name); strategies that stop on their
    own come first so that their count is known before the others run. ``samples_within_budget``: True
    when its evaluations are random subnets within the budget, whose spread of accuracies the search's
    summary reports against the noise of one evaluation (``signal``). ``color``: its colour in plots.
    """

    name: ClassVar[str] = ""
    needs_evals: ClassVar[bool] = True
    order: ClassVar[int] = 100
    samples_within_budget: ClassVar[bool] = False
    color: ClassVar[str | None] = None

    @abstractmethod
    def run(self, objective: Objective, space: SearchSpace, budget: Budget, evals: int | None = None, *,
            batch: int = 1, on_step: Callable[[Step], None] | None = None) -> SearchOutcome:
        """Search ``space`` for an architecture within ``budget``.

        ``evals``: accuracy evaluations to spend (required when ``needs_evals``). ``batch``: how many
        architectures to hand to ``objective.evaluate_many`` at once when the strategy can choose (e.g.
        the number of processes evaluating them). ``on_step``: called with every step of a trajectory as
        it is taken, for strategies that have one.
        """

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "SearchStrategy":
        """The strategy configured from search-wide ``settings``: each constructor argument is taken from
        the key of the same name when present (its default otherwise); the other keys are not its own
        and are left alone."""
        params = inspect.signature(cls).parameters.values()
        names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        return cls(**{k: settings[k] for k in names if k in settings})

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


S = TypeVar("S", bound=type)
_REGISTRY: dict[str, type[SearchStrategy]] = {}
_discovered = False


def register_strategy(cls: S) -> S:
    """Class decorator: register a :class:`SearchStrategy` subclass under its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, SearchStrategy)):
        raise TypeError(f"@register_strategy applies to SearchStrategy subclasses, not {cls!r}")
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    old = _REGISTRY.get(cls.name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"search strategy {cls.name!r} is already {old.__module__}.{old.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    """Import every public module of this package once, so that the strategies they define register."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = __name__.rpartition(".")[0]
    try:
        for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package}.{info.name}")
    except BaseException:
        _discovered = False
        raise


def list_strategies() -> list[str]:
    """The registered strategies' names, in their ``order`` (then by name)."""
    _discover()
    return sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].order, n))


def strategy_class(name: str) -> type[SearchStrategy]:
    """The strategy class registered as ``name``; :class:`SearchError` naming the known ones otherwise."""
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SearchError(f"unknown search strategy {name!r}; known strategies: "
                          f"{', '.join(list_strategies())}") from None


def get_strategy(name: str, **options: Any) -> SearchStrategy:
    """A new instance of the strategy registered as ``name``, with ``options`` (its constructor's
    keyword arguments)."""
    return strategy_class(name)(**options)
