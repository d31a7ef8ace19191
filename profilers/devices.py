"""The device registry: ``profilers/devices.json`` maps a device name to how it is profiled.

    >>> get_device("pixel6").runtime
    'tflite'

``python -m profilers.devices`` (or any profiler's ``--list-devices``) prints the registry.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from nas.core.errors import UserError

__all__ = ["Device", "DeviceError", "get_device", "list_devices", "format_devices", "DEVICES_JSON", "RUNTIMES"]

DEVICES_JSON = Path(__file__).with_name("devices.json")
RUNTIMES = ("onnxruntime", "tflite", "coreml", "tensorrt")


class DeviceError(UserError, KeyError):
    """An unknown device name (the message lists the known ones)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Device:
    """One registry entry. ``runtime`` is the default runtime; ``runtimes`` every one it supports."""
    name: str
    runtime: str
    runtimes: tuple[str, ...] = ()
    precision: str = "fp32"
    threads: int = 1
    delegate: str | None = None
    compute_units: str | None = None
    providers: tuple[str, ...] = ()
    cpus: tuple[int, ...] | None = None
    connection: dict = field(default_factory=dict)
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def connection_type(self) -> str:
        return str(self.connection.get("type", "local"))

    def with_threads(self, threads: int | None) -> "Device":
        return self if threads is None else replace(self, threads=int(threads))

    def to_dict(self) -> dict:
        d = {"name": self.name, "runtime": self.runtime, "runtimes": list(self.runtimes),
             "precision": self.precision, "threads": self.threads, "delegate": self.delegate,
             "compute_units": self.compute_units, "providers": list(self.providers),
             "cpus": list(self.cpus) if self.cpus is not None else None, "connection": dict(self.connection)}
        d.update(self.extra)
        return {k: v for k, v in d.items() if v not in (None, [], {})}


def _from_entry(name: str, e: dict) -> Device:
    known = {"runtime", "runtimes", "precision", "threads", "delegate", "compute_units", "providers", "cpus",
             "connection", "description"}
    runtime = e.get("runtime")
    if runtime not in RUNTIMES:
        raise ValueError(f"{DEVICES_JSON}: device {name!r} has runtime {runtime!r}; expected one of {list(RUNTIMES)}")
    runtimes = tuple(e.get("runtimes") or (runtime,))
    if runtime not in runtimes:
        runtimes = (runtime,) + runtimes
    return Device(name=name, runtime=runtime, runtimes=runtimes, precision=e.get("precision", "fp32"),
                  threads=int(e.get("threads") or 1), delegate=e.get("delegate"),
                  compute_units=e.get("compute_units"), providers=tuple(e.get("providers") or ()),
                  cpus=tuple(e["cpus"]) if e.get("cpus") is not None else None,
                  connection=dict(e.get("connection") or {}), description=e.get("description", ""),
                  extra={k: v for k, v in e.items() if k not in known})


@lru_cache(maxsize=None)
def _registry(path: str) -> dict[str, Device]:
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"device registry {path} is not valid JSON: {e}") from None
    return {k: _from_entry(k, v) for k, v in raw.items() if not k.startswith("_")}


def list_devices(path: str | Path | None = None) -> dict[str, Device]:
    """Every registered device by name."""
    return dict(_registry(str(path or DEVICES_JSON)))


def get_device(name: str, path: str | Path | None = None) -> Device:
    """The registry entry ``name``; :class:`DeviceError` naming the known devices otherwise."""
    if isinstance(name, Device):
        return name
    devs = list_devices(path)
    if name not in devs:
        raise DeviceError(f"unknown device {name!r}; known devices: {', '.join(sorted(devs))} "
                          f"(registry: {path or DEVICES_JSON}; add an entry there for a new device)")
    return devs[name]


def format_devices(path: str | Path | None = None) -> str:
    """The registry as a readable table (what ``--list-devices`` prints)."""
    rows = []
    for d in list_devices(path).values():
        how = d.delegate if d.runtime == "tflite" else d.compute_units if d.runtime == "coreml" else \
            ",".join(d.providers) if d.providers and d.runtime == "onnxruntime" else ""
        rows.append((d.name, "/".join(d.runtimes), d.precision, str(d.threads), how or "-", d.connection_type,
                     d.description))
    head = ("device", "runtimes", "precision", "threads", "delegate/units", "connection", "description")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(6)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6]
    return "\n".join([fmt(head)] + [fmt(r) for r in rows])


if __name__ == "__main__":
    print(format_devices())
