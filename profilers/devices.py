"""The device registry: ``profilers/devices.json`` (plus ``$EFFV2_DEVICES``) maps a device name to how it is profiled.

    >>> get_device("pixel6").runtime
    'tflite'

A :class:`Device` holds what every device has: its name, the runtimes it is profiled with (the first is
the default), precision, threads, the CPU cores a profiler pins itself to, how it is reached
(``connection``: ``local``, ``reference``, ``adb``, ``bundle`` ...) and a description. Everything else in
an entry belongs to a runtime: each runtime plugin reads its own options from the entry
(:class:`profilers.plugin.options.RuntimeOptions`), so a new runtime needs no field here.

Your own devices go in a JSON file of the same shape named by ``EFFV2_DEVICES`` (paths separated by
``:``); its entries are added to the shipped ones (and replace a shipped entry of the same name).
``python -m profilers.onnxruntime --list-devices`` prints the registry.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from nas.core.errors import UserError
from nas.core.files import parsing, read_json
from nas.core.values import POSITIVE_INT, TEXT

__all__ = ["Device", "DeviceError", "RegistryError", "get_device", "list_devices", "registry_paths", "DEVICES_JSON",
           "DEVICES_ENV", "CONNECTIONS"]

DEVICES_JSON = Path(__file__).with_name("devices.json")
#: extra registry files (``:``-separated) whose entries are added to the shipped ones
DEVICES_ENV = "EFFV2_DEVICES"
#: how a device is reached: measured on this machine, another machine's shipped tables, an Android phone over
#: adb, an iPhone (connected to a Mac, or by a bundle timed on it; ``bundle`` is an older name of it), a phone
#: hosted by Qualcomm AI Hub
CONNECTIONS = ("local", "reference", "adb", "iphone", "bundle", "aihub")
#: the entry keys a Device reads; every other key belongs to a runtime's options
COMMON_FIELDS = ("runtime", "runtimes", "precision", "threads", "cpus", "connection", "description")


class RegistryError(UserError, ValueError):
    """A device registry file that cannot be read (the message names the file, the device and the field)."""


class DeviceError(UserError, KeyError):
    """An unknown device name (the message lists the known ones)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Device:
    """One registry entry: what every device has. ``entry`` is the entry as written, from which each
    runtime plugin reads its own options."""
    name: str
    runtimes: tuple[str, ...]
    precision: str = "fp32"
    threads: int = 1
    cpus: tuple[int, ...] | None = None
    connection: Mapping = field(default_factory=dict)
    description: str = ""
    entry: Mapping = field(default_factory=dict, repr=False, compare=False)

    @property
    def runtime(self) -> str:
        """The default runtime (the first of :attr:`runtimes`)."""
        return self.runtimes[0]

    @property
    def connection_type(self) -> str:
        return str(self.connection.get("type", "local"))

    @property
    def local(self) -> bool:
        """Whether the device is the machine the code runs on (its tables are measured here)."""
        return self.connection_type == "local"

    def with_threads(self, threads: int | None) -> "Device":
        return self if threads is None else replace(self, threads=POSITIVE_INT.check("threads", threads))

    def to_dict(self) -> dict:
        """The entry, with the name, as a table records it (:meth:`from_dict` reads it back)."""
        d = {**dict(self.entry), "name": self.name, "runtime": self.runtime, "runtimes": list(self.runtimes),
             "precision": self.precision, "threads": self.threads,
             "cpus": list(self.cpus) if self.cpus is not None else None, "connection": dict(self.connection),
             "description": self.description}
        return {k: v for k, v in d.items() if v not in (None, [], {}, "")}

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "device") -> "Device":
        """A device from :meth:`to_dict`'s form (a table's record of its device)."""
        d = dict(d)
        name = d.pop("name", None)
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{source}: a device needs a name")
        return cls.from_entry(name, d, source)

    @classmethod
    def from_entry(cls, name: str, e: Mapping, source: str | Path = DEVICES_JSON) -> "Device":
        """The device of registry entry ``e``; :class:`RegistryError` naming ``source`` and the device for a
        field of the wrong kind."""
        with parsing(source, f"device registry (device {name!r})", RegistryError):
            if not isinstance(e, Mapping):
                raise ValueError("an entry is a JSON object")
            runtime = e.get("runtime")
            runtimes = list(e.get("runtimes") or ([runtime] if runtime else []))
            if runtime:
                runtimes = [runtime] + [r for r in runtimes if r != runtime]
            if not runtimes or not all(isinstance(r, str) and r for r in runtimes):
                raise ValueError("'runtime' (and 'runtimes') must name the runtimes it is profiled with")
            cpus = e.get("cpus")
            if cpus is not None and not (isinstance(cpus, list) and all(isinstance(c, int) and not isinstance(c, bool)
                                                                        and c >= 0 for c in cpus)):
                raise ValueError(f"'cpus' must list core numbers, got {cpus!r}")
            conn = dict(e.get("connection") or {})
            if conn.get("type", "local") not in CONNECTIONS:
                raise ValueError(f"connection type {conn.get('type')!r} is not one of {', '.join(CONNECTIONS)}")
            precision = TEXT.check("precision", e.get("precision", "fp32"), RegistryError)
            threads = POSITIVE_INT.check("threads", e.get("threads", 1), RegistryError)
            description = e.get("description", "")
            if not isinstance(description, str):
                raise ValueError("'description' must be a string")
        return cls(name=name, runtimes=tuple(runtimes), precision=precision, threads=threads,
                   cpus=tuple(cpus) if cpus is not None else None, connection=conn, description=description,
                   entry=dict(e))


def registry_paths() -> list[Path]:
    """The registry files read, in order: the shipped one, then those of ``$EFFV2_DEVICES``."""
    extra = [Path(p).expanduser() for p in os.environ.get(DEVICES_ENV, "").split(os.pathsep) if p]
    return [DEVICES_JSON, *extra]


@lru_cache(maxsize=None)
def _registry(path: str) -> dict[str, Device]:
    raw = read_json(path, "device registry", RegistryError)
    return {k: Device.from_entry(k, v, path) for k, v in raw.items() if not k.startswith("_")}


def list_devices(path: str | Path | None = None) -> dict[str, Device]:
    """Every registered device by name (of ``path`` alone when given)."""
    out: dict[str, Device] = {}
    for p in ([Path(path)] if path else registry_paths()):
        out.update(_registry(str(p)))
    return out


def get_device(name: str | Device, path: str | Path | None = None) -> Device:
    """The registry entry ``name``; :class:`DeviceError` naming the known devices otherwise."""
    if isinstance(name, Device):
        return name
    devs = list_devices(path)
    if name not in devs:
        raise DeviceError(f"unknown device {name!r}; known devices: {', '.join(sorted(devs))} "
                          f"(registry: {', '.join(map(str, [path] if path else registry_paths()))}; add an entry there, "
                          f"or in a file named by {DEVICES_ENV}, for a new device)")
    return devs[name]
