"""Architecture search over a trained supernet: the paper's fine-grained joint search and baselines.

    from nas.search import SearchConfig, run_search
    summary = run_search(SearchConfig(target="pixel6", latency_budget=1.0, strategy="all"))

Strategies are :class:`SearchStrategy` subclasses registered by name (:func:`register_strategy`,
:func:`get_strategy`, :func:`list_strategies`); each lives in its own module (``paper``, ``nsga2``,
``random_search``), declares its options (a :class:`StrategyOptions` dataclass of :func:`option` fields,
set through ``SearchConfig(strategy_options=...)`` or ``--option NAME.OPTION=VALUE``) and returns a
:class:`SearchOutcome`. They see architectures through an :class:`Objective` and must meet a
:class:`Budget`.
"""
from nas.search.base import (Flag, SearchError, SearchOutcome, SearchStrategy, StrategyOptions, get_strategy,
                             list_strategies, option, register_strategy, strategy_class)
from nas.search.config import SearchConfig
from nas.search.objective import Budget, Evaluation, Objective, Step
from nas.search.run import run_search

__all__ = ["SearchConfig", "run_search", "SearchStrategy", "SearchOutcome", "SearchError", "StrategyOptions",
           "option", "Flag", "register_strategy", "get_strategy", "strategy_class", "list_strategies", "Budget",
           "Evaluation", "Objective", "Step"]
