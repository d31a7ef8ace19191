"""Deprecated: the former home of the search's runner, kept so that its imports keep working.

The search now lives in rooms of its own: :mod:`nas.search.config` (:class:`SearchConfig`),
:mod:`nas.search.inputs` (the supernet, the table, the outputs), :mod:`nas.search.run` (:func:`run_search`)
and the modules they name. Import ``SearchConfig`` and ``run_search`` from :mod:`nas.search`; the names below
still resolve here, with a ``DeprecationWarning``.
"""
from __future__ import annotations

import warnings

from nas.search import config as _config
from nas.search import inputs as _inputs
from nas.search import run as _run

__all__ = ["SearchConfig", "run_search", "resolve_supernet", "DEFAULT_SUPERNET", "DEFAULT_EVALS"]

_MOVED = {"SearchConfig": _config, "DEFAULT_EVALS": _config, "run_search": _run, "resolve_supernet": _inputs,
          "DEFAULT_SUPERNET": _inputs}


def __getattr__(name: str):
    if name in _MOVED:
        module = _MOVED[name]
        warnings.warn(f"nas.search.runner.{name} is deprecated; use {module.__name__}.{name}"
                      + (" (or nas.search)" if name in ("SearchConfig", "run_search") else ""),
                      DeprecationWarning, stacklevel=2)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
