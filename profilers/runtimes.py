"""The runtime registry: the one owner of which runtimes exist.

A runtime plugin is a :class:`profilers.plugin.base.Profiler` subclass decorated with
:func:`register_runtime`. The plugins shipped in this package (the top-level modules of ``profilers``)
are found by importing those modules the first time the registry is read; a plugin of another package
registers when its module is imported, or is listed under the ``effv2_nas.runtimes`` entry-point group
of its distribution (``[project.entry-points."effv2_nas.runtimes"] myrt = "mypkg.myrt"``), which the
registry imports too. Importing this module imports no runtime (and no torch).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import sys
from pathlib import Path
from typing import TypeVar

from nas.core.errors import UserError

__all__ = ["register_runtime", "get_profiler", "list_runtimes", "UnknownRuntime", "ProfilerUnavailable", "UnitFailed",
           "ENTRY_POINTS"]

ENTRY_POINTS = "effv2_nas.runtimes"
#: modules of this package that are not runtime plugins (not imported to discover plugins)
_NOT_PLUGINS = {"devices", "runtimes"}

C = TypeVar("C", bound=type)
_REGISTRY: dict[str, type] = {}
_ALIASES: dict[str, str] = {}
_discovered = False


class ProfilerUnavailable(UserError, RuntimeError):
    """A runtime, tool or device that a profiler needs is missing (the message says what to install or
    connect)."""


class UnitFailed(UserError, RuntimeError):
    """One model could not be converted, loaded or run on the device (the message names it and says why); the
    others can still be measured, and a rerun tries it again."""


class UnknownRuntime(UserError, KeyError):
    """A runtime name no plugin registered (the message lists the known ones)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _module_of(cls) -> str:
    """The module a class is defined in, by its import name also when it runs as ``python -m package.module``
    (then ``__main__``): the plugin a command runs and the same plugin found by discovery are one runtime."""
    if cls.__module__ == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            return spec.name
    return cls.__module__


def register_runtime(cls: C) -> C:
    """Class decorator: register a runtime plugin under its ``name`` (and its ``aliases``)."""
    name = getattr(cls, "name", "")
    if not isinstance(cls, type) or not name or not callable(getattr(cls, "export", None)):
        raise TypeError(f"@register_runtime applies to Profiler subclasses with a name, not {cls!r}")
    for n in (name, *getattr(cls, "aliases", ())):
        old = _REGISTRY.get(_ALIASES.get(n, n))
        if old is not None and (_module_of(old), old.__qualname__) != (_module_of(cls), cls.__qualname__):
            raise ValueError(f"runtime {n!r} is already {old.__module__}.{old.__qualname__}")
    _REGISTRY[name] = cls
    for a in getattr(cls, "aliases", ()):
        _ALIASES[a] = name
    return cls


def _discover() -> None:
    """Import the plugin modules of this package and of the ``effv2_nas.runtimes`` entry points, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = __name__.split(".")[0]
    try:
        root = Path(importlib.import_module(package).__file__).parent
        for info in pkgutil.iter_modules([str(root)]):
            if not info.name.startswith("_") and not info.ispkg and info.name not in _NOT_PLUGINS:
                importlib.import_module(f"{package}.{info.name}")
        for ep in importlib.metadata.entry_points(group=ENTRY_POINTS):
            ep.load()
    except BaseException:
        _discovered = False
        raise


def list_runtimes() -> list[str]:
    """The registered runtimes' names, sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_profiler(runtime: str) -> type:
    """The plugin class registered as ``runtime`` (or one of its aliases); :class:`UnknownRuntime` naming
    the known ones otherwise."""
    name = _ALIASES.get(runtime, runtime)
    if name not in _REGISTRY:
        _discover()
        name = _ALIASES.get(runtime, runtime)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownRuntime(f"unknown runtime {runtime!r}; known runtimes: {', '.join(list_runtimes())}") from None
