"""What the project's registries of plugins (runtimes, search strategies) share: the check that a name is not
taken by another class, and the discovery of the plugins a package ships (and entry points name), once.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import sys
from pathlib import Path
from typing import Iterable

__all__ = ["defined_in", "check_free", "Discovery"]


def defined_in(cls) -> str:
    """The module a class is defined in, by its import name also when it runs as ``python -m package.module``
    (then ``__main__``): the plugin a command runs and the same plugin found by discovery are one plugin."""
    if cls.__module__ == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            return spec.name
    return cls.__module__


def check_free(old: type | None, name: str, cls: type, what: str) -> None:
    """ValueError when ``name`` is registered to ``old``, another class than ``cls`` (the same class registered
    again, by a module imported twice, is not another)."""
    if old is not None and (defined_in(old), old.__qualname__) != (defined_in(cls), cls.__qualname__):
        raise ValueError(f"{what} {name!r} is already {old.__module__}.{old.__qualname__}")


class Discovery:
    """Import the public top-level modules of ``package`` (not those of ``skip``, not subpackages) and the
    modules of the ``entry_points`` group, the first time it is called; again after an attempt that failed."""

    def __init__(self, package: str, skip: Iterable[str] = (), entry_points: str | None = None):
        self.package, self.skip, self.entry_points = package, frozenset(skip), entry_points
        self.done = False

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            root = Path(importlib.import_module(self.package).__file__).parent
            for info in pkgutil.iter_modules([str(root)]):
                if not info.name.startswith("_") and not info.ispkg and info.name not in self.skip:
                    importlib.import_module(f"{self.package}.{info.name}")
            if self.entry_points:
                for ep in importlib.metadata.entry_points(group=self.entry_points):
                    ep.load()
        except BaseException:
            self.done = False
            raise
