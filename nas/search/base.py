"""Search strategies: the :class:`SearchStrategy` interface, the :class:`SearchOutcome` every strategy
returns, the options a strategy declares, and the registry of strategies by name.

A strategy is a subclass of :class:`SearchStrategy` with a ``name``, a frozen dataclass of its options
(``Options``: fields declared with :func:`option`, checked by the shared rules of :mod:`nas.core.values`)
and a :meth:`~SearchStrategy.run` method; :func:`register_strategy` makes it known to
:func:`get_strategy`, :func:`list_strategies`, ``SearchConfig(strategy_options=...)`` and ``python -m
nas.search`` (``--strategy``, ``--option NAME.OPTION=VALUE``, and the option's shorthand flag when it
declares one). The modules of this package are imported the first time the registry is read, so a new
strategy is one new module in ``nas/search/``::

    from nas.core.values import POSITIVE_INT
    from nas.search.base import SearchOutcome, SearchStrategy, StrategyOptions, option, register_strategy

    @dataclass(frozen=True)
    class ExhaustiveOptions(StrategyOptions):
        limit: int = option(1000, POSITIVE_INT, help="architectures at most")

    @register_strategy
    class Exhaustive(SearchStrategy):
        name = "exhaustive"
        Options = ExhaustiveOptions
        takes = ("seed",)                     # the search-wide seed, as self.seed

        def run(self, objective, space, budget, evals=None, *, batch=1, on_step=None):
            start, t0 = objective.evaluations, time.perf_counter()
            evaluations = objective.evaluate_many(...)          # self.options.limit, self.seed
            return SearchOutcome(self.name, evaluations, budget.best(evaluations),
                                 objective.evaluations - start, seconds=time.perf_counter() - t0)

A strategy defined elsewhere is registered when its module is imported.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from nas.core.errors import UserError
from nas.core.plugins import Discovery, check_free
from nas.core.values import TEXT, WHOLE, Rule, check_settings, setting
from nas.search.objective import Budget, Evaluation, Objective, Step
from nas.space.spaces import SearchSpace

__all__ = ["SearchError", "SearchOutcome", "SearchStrategy", "StrategyOptions", "Flag", "option", "option_fields",
           "SEARCH_WIDE", "register_strategy", "get_strategy", "strategy_class", "list_strategies"]


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


@dataclass(frozen=True)
class Flag:
    """A shorthand flag of ``python -m nas.search`` for one strategy option, declared on the option itself
    (:func:`option`): ``--actions CNEA`` sets ``paper.actions`` as ``--option paper.actions=CNEA`` does.
    ``words``: when given, the words the flag takes instead of the option's own values, each with the value
    it sets (``--reevaluate lazy|all`` sets the flag ``paper.lazy``: ``{"lazy": True, "all": False}``);
    ``help``: the flag's help when it is not the option's (e.g. when it takes words)."""
    name: str
    words: Mapping[str, Any] | None = None
    help: str | None = None

    def word_of(self, value) -> str | None:
        """The word that sets ``value`` (None when the flag takes the option's own values or none does)."""
        return next((w for w, v in (self.words or {}).items() if v == value), None)


def option(default, rule: Rule, *, optional: bool = False, help: str | None = None,
           flag: str | Flag | None = None):
    """A field of a strategy's options: :func:`nas.core.values.setting` (its values obey ``rule``; None is
    allowed too when ``optional``), with ``help`` for ``--help`` and, optionally, a shorthand ``flag`` of the
    command line (a :class:`Flag`, or its name)."""
    field = setting(default, rule, optional=optional, help=help)
    flag = Flag(flag) if isinstance(flag, str) else flag
    return dataclasses.field(default=default, metadata={**field.metadata, "flag": flag})


@dataclass(frozen=True)
class StrategyOptions:
    """The options of a strategy: subclass it as a frozen dataclass whose fields are declared with
    :func:`option`. Every value is checked when the options are made (a :class:`SearchError` naming the
    first that breaks its rule). A strategy without options keeps this empty class."""

    def __post_init__(self):
        check_settings(self, SearchError)


def option_fields(options: type) -> list[dataclasses.Field]:
    """The fields of an options class, in their order."""
    return list(dataclasses.fields(options))


#: the search-wide values a strategy may take besides its own options (``SearchStrategy.takes``), with
#: their defaults and rules: ``seed`` (``SearchConfig.seed``) and ``search_name`` (a name of the search,
#: from its target, runtime and budgets, e.g. the default of an Optuna study's name)
SEARCH_WIDE: dict[str, tuple[Any, Rule]] = {"seed": (0, WHOLE), "search_name": (None, TEXT)}


class SearchStrategy(ABC):
    """A way to search a :class:`~nas.space.spaces.SearchSpace` through an
    :class:`~nas.search.objective.Objective` for an architecture within a
    :class:`~nas.search.objective.Budget`.

    Subclasses set ``name`` (the registry key and the ``--strategy`` value), ``Options`` (a
    :class:`StrategyOptions` dataclass; the instance's ``options``), ``takes`` (the search-wide values of
    :data:`SEARCH_WIDE` they use, set as attributes of the same name) and implement :meth:`run`. They are
    made as ``Strategy(options, **values)``: ``options`` an ``Options`` instance or a mapping, ``values``
    further options and the search-wide values it takes; an unknown option is a :class:`SearchError`
    naming the known ones, a value that breaks its option's rule one naming the option and the rule.

    ``needs_evals``: True when :meth:`run` spends the ``evals`` accuracy evaluations it is given; False
    for a strategy that stops on its own (its evaluation count then sets the others' when they are
    compared). ``order``: rank in :func:`list_strategies` (then the name); strategies that stop on their
    own come first so that their count is known before the others run. ``samples_within_budget``: True
    when its evaluations are random subnets within the budget, whose spread of accuracies the search's
    summary reports against the noise of one evaluation (``signal``). ``color``: its colour in plots.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = StrategyOptions
    takes: ClassVar[tuple[str, ...]] = ()
    needs_evals: ClassVar[bool] = True
    order: ClassVar[int] = 100
    samples_within_budget: ClassVar[bool] = False
    color: ClassVar[str | None] = None

    def __init__(self, options: StrategyOptions | Mapping[str, Any] | None = None, /, **values: Any):
        cls = type(self)
        wide = {k: values.pop(k) for k in cls.takes if k in values}
        if dataclasses.is_dataclass(options) and not isinstance(options, type):
            options = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
        self.options = cls.make_options({**(options or {}), **values})
        for k in cls.takes:
            default, rule = SEARCH_WIDE[k]
            v = wide.get(k, default)
            setattr(self, k, v if v is None else rule.check(k, v, SearchError))

    @classmethod
    def make_options(cls, values: Mapping[str, Any] | None = None) -> StrategyOptions:
        """This strategy's ``Options`` with ``values`` (the defaults elsewhere); a :class:`SearchError`
        naming an unknown option and the known ones, or the option (``name.option``) and its rule."""
        values = dict(values or {})
        for k in values:
            cls.option_field(k)
        try:
            return cls.Options(**values)
        except SearchError as e:                      # "max_steps must be ..." -> "paper.max_steps must be ..."
            raise SearchError(f"{cls.name}.{e}") from None

    @classmethod
    def option_field(cls, name: str) -> dataclasses.Field:
        """The field of option ``name`` (its rule, help and flag in its metadata); a :class:`SearchError`
        naming the known options when this strategy has no such option."""
        fields = {f.name: f for f in option_fields(cls.Options)}
        if name not in fields:
            raise SearchError(f"unknown option {name!r} of search strategy {cls.name!r}; its options: "
                              + (", ".join(fields) or "none"))
        return fields[name]

    @abstractmethod
    def run(self, objective: Objective, space: SearchSpace, budget: Budget, evals: int | None = None, *,
            batch: int = 1, on_step: Callable[[Step], None] | None = None) -> SearchOutcome:
        """Search ``space`` for an architecture within ``budget``.

        ``evals``: accuracy evaluations to spend (required when ``needs_evals``). ``batch``: how many
        architectures to hand to ``objective.evaluate_many`` at once when the strategy can choose (e.g.
        the number of processes evaluating them). ``on_step``: called with every step of a trajectory as
        it is taken, for strategies that have one.
        """

    def __repr__(self) -> str:
        opts = [f"{f.name}={getattr(self.options, f.name)!r}" for f in option_fields(type(self).Options)]
        opts += [f"{k}={getattr(self, k)!r}" for k in type(self).takes]
        return f"{type(self).__name__}({', '.join(opts)})"


S = TypeVar("S", bound=type)
_REGISTRY: dict[str, type[SearchStrategy]] = {}
#: imports every public module of this package once, so that the strategies they define register
_discover = Discovery(__name__.rpartition(".")[0])


def register_strategy(cls: S) -> S:
    """Class decorator: register a :class:`SearchStrategy` subclass under its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, SearchStrategy)):
        raise TypeError(f"@register_strategy applies to SearchStrategy subclasses, not {cls!r}")
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if not (isinstance(cls.Options, type) and issubclass(cls.Options, StrategyOptions)
            and dataclasses.is_dataclass(cls.Options)):
        raise TypeError(f"{cls.__qualname__}.Options must be a StrategyOptions dataclass")
    if set(cls.takes) - set(SEARCH_WIDE):
        raise ValueError(f"{cls.__qualname__}.takes names {sorted(set(cls.takes) - set(SEARCH_WIDE))}; the "
                         f"search-wide values are {', '.join(SEARCH_WIDE)}")
    check_free(_REGISTRY.get(cls.name), cls.name, cls, "search strategy")
    _REGISTRY[cls.name] = cls
    return cls


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
    """A new instance of the strategy registered as ``name``, with ``options`` (its ``Options`` fields and
    the search-wide values it ``takes``, e.g. ``seed``), checked: an unknown strategy or option is a
    :class:`SearchError` naming the known ones, a value that breaks its rule one naming the rule."""
    return strategy_class(name)(**options)
