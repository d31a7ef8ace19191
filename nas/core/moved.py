"""Old import paths of modules that moved keep working, with a ``DeprecationWarning`` naming the new one.

A package lists its moved modules once (``moved("profilers", {"profilers.table": "profilers.tables.table"})``
in its ``__init__``); ``import profilers.table`` then gives the module at its new place (the same module
object, so ``isinstance`` checks and monkeypatching see one module). No file is left at the old place.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Mapping

__all__ = ["moved"]


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, renames: Mapping[str, str]):
        self.renames = dict(renames)
        self._specs: dict[str, object] = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.renames:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = self.renames[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # the module at its new place is already executed; the import system set its __spec__ to the old
        # name's: give it back its own
        old = next(name for name, spec in self._specs.items() if spec.name == module.__name__)
        module.__spec__ = self._specs.pop(old)


def moved(renames: Mapping[str, str]) -> None:
    """Make each old module name in ``renames`` import the module at its new name."""
    sys.meta_path.append(_Alias(renames))
