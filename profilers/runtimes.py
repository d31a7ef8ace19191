"""The runtime registry: the one owner of which runtimes exist.

A runtime plugin is a :class:`profilers.plugin.base.Profiler` subclass decorated with
:func:`register_runtime`. The plugins shipped in this package (the top-level modules of ``profilers``)
are found by importing those modules the first time the registry is read; a plugin of another package
registers when its module is imported, or is listed under the ``effv2_nas.runtimes`` entry-point group
of its distribution (``[project.entry-points."effv2_nas.runtimes"] myrt = "mypkg.myrt"``), which the
registry imports too. Importing this module imports no runtime (and no torch).
"""
from __future__ import annotations

from typing import TypeVar

from nas.core.errors import UserError
from nas.core.plugins import Discovery, check_free

__all__ = ["register_runtime", "get_profiler", "list_runtimes", "UnknownRuntime", "ProfilerUnavailable", "UnitFailed",
           "ENTRY_POINTS"]

ENTRY_POINTS = "effv2_nas.runtimes"
#: modules of this package that are not runtime plugins (not imported to discover plugins)
_NOT_PLUGINS = {"devices", "runtimes"}

C = TypeVar("C", bound=type)
_REGISTRY: dict[str, type] = {}
_ALIASES: dict[str, str] = {}
#: imports the plugin modules of this package and of the ``effv2_nas.runtimes`` entry points, once
_discover = Discovery(__name__.split(".")[0], skip=_NOT_PLUGINS, entry_points=ENTRY_POINTS)


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


def register_runtime(cls: C) -> C:
    """Class decorator: register a runtime plugin under its ``name`` (and its ``aliases``)."""
    name = getattr(cls, "name", "")
    if not isinstance(cls, type) or not name or not callable(getattr(cls, "export", None)):
        raise TypeError(f"@register_runtime applies to Profiler subclasses with a name, not {cls!r}")
    for n in (name, *getattr(cls, "aliases", ())):
        check_free(_REGISTRY.get(_ALIASES.get(n, n)), n, cls, "runtime")
    _REGISTRY[name] = cls
    for a in getattr(cls, "aliases", ()):
        _ALIASES[a] = name
    return cls


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
