"""A runtime plugin's own settings: one frozen dataclass per runtime, read from the device entry.

    @dataclass(frozen=True)
    class MyOptions(RuntimeOptions):
        delegate: str = setting("cpu", one_of(("cpu", "gpu")), help="...", flag="--delegate")

A device entry in ``devices.json`` holds the common fields (:class:`profilers.devices.Device`) and the
options of the runtimes it is profiled with, by field name; :meth:`RuntimeOptions.from_entry` picks its
own and checks them with the shared rules (:mod:`nas.core.values`). A table records them in its
``settings`` and :meth:`RuntimeOptions.from_settings` reads them back, so calibration and validation time
whole networks the way the table's units were timed. A field with a ``flag`` can be changed for one run
on the command line (:mod:`profilers.plugin.cli`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

from nas.core.values import ConfigError, check_settings

from profilers.devices import DEVICES_JSON, Device

__all__ = ["RuntimeOptions", "OptionsError"]

O = TypeVar("O", bound="RuntimeOptions")


class OptionsError(ConfigError):
    """A runtime option that cannot work (the message names the device or table, the option and its rule)."""


@dataclass(frozen=True)
class RuntimeOptions:
    """The options of a runtime that has none; plugins subclass it (see the module docstring)."""

    def __post_init__(self):
        check_settings(self, OptionsError)
        self.check()

    def check(self) -> None:
        """Checks across fields (OptionsError); the fields' own rules are checked before."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def _make(cls: type[O], values: Mapping[str, Any], where: str) -> O:
        try:
            return cls(**{k: values[k] for k in cls.names() if k in values and values[k] is not None})
        except OptionsError as e:
            raise OptionsError(f"{where}: {e}") from None

    @classmethod
    def from_entry(cls: type[O], device: Device) -> O:
        """The options ``device``'s registry entry gives (its keys of the same names; defaults elsewhere)."""
        return cls._make(device.entry, f"{DEVICES_JSON.name}: device {device.name!r}")

    @classmethod
    def from_settings(cls: type[O], settings: Mapping[str, Any], source: str = "table") -> O:
        """The options a table recorded in its ``settings`` (see :meth:`to_dict`)."""
        return cls._make(settings, f"{source}: settings")

    def replace(self: O, **changes: Any) -> O:
        """These options with ``changes`` (None: unchanged)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def summary(self) -> str:
        """One short line (``--list-devices``)."""
        return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                        for k, v in self.to_dict().items() if v not in (None, False, (), [])) or "-"
