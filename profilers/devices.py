"""The device registry: ``profilers/devices.json`` maps a device name to how it is profiled.

    >>> get_device("pixel6").runtime
    'tflite'

``python -m profilers.devices`` (or any profiler's ``--list-devices``) prints the registry.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from nas.core.errors import UserError
from nas.core.files import parsing, read_json

__all__ = ["Device", "DeviceError", "RegistryError", "get_device", "list_devices", "format_devices", "DEVICES_JSON", "RUNTIMES"]

DEVICES_JSON = Path(__file__).with_name("devices.json")
RUNTIMES = ("onnxruntime", "tflite", "coreml", "tensorrt", "torch")
#: ``mode`` values of a device entry (the torch runtime's execution modes)
TORCH_MODES = ("eager", "cudagraph", "compile")


class RegistryError(UserError, ValueError):
    """A device registry file that cannot be read (the message names the file, the device and the field)."""


class DeviceError(UserError, KeyError):
    """An unknown device name (the message lists the known ones)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Device:
    """One registry entry. ``runtime`` is the default runtime; ``runtimes`` every one it supports.

    ``mode``, ``batch``, ``channels_last``, ``compile_mode`` and ``cuda`` are read by the torch runtime
    (:mod:`profilers.torch`; None where the entry leaves them out): the execution mode (eager, cudagraph,
    compile), the batch of every timed call, the memory format, the ``torch.compile`` mode, and the CUDA
    GPU (``True``: the current one, or an index; None: a CPU device).
    """
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
    mode: str | None = None
    batch: int | None = None
    channels_last: bool | None = None
    compile_mode: str | None = None
    cuda: bool | int | None = None
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
             "cpus": list(self.cpus) if self.cpus is not None else None, "connection": dict(self.connection),
             "mode": self.mode, "batch": self.batch, "channels_last": self.channels_last,
             "compile_mode": self.compile_mode, "cuda": self.cuda}
        d.update(self.extra)
        return {k: v for k, v in d.items() if v not in (None, [], {})}


def _torch_fields(name: str, e: dict) -> dict:
    """The torch runtime's fields of entry ``e``, checked (ValueError naming the device otherwise)."""
    where = f"{DEVICES_JSON}: device {name!r}"
    mode, batch, cl, cuda = e.get("mode"), e.get("batch"), e.get("channels_last"), e.get("cuda")
    if mode is not None and mode not in TORCH_MODES:
        raise ValueError(f"{where} has mode {mode!r}; expected one of {list(TORCH_MODES)}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"{where} has batch {batch!r}; expected a whole number of at least 1")
    if cl is not None and not isinstance(cl, bool):
        raise ValueError(f"{where} has channels_last {cl!r}; expected true or false")
    if cuda is not None and not isinstance(cuda, bool) and not (isinstance(cuda, int) and cuda >= 0):
        raise ValueError(f"{where} has cuda {cuda!r}; expected true, false or a GPU index")
    cm = e.get("compile_mode")
    return {"mode": mode, "batch": batch, "channels_last": cl, "compile_mode": str(cm) if cm is not None else None,
            "cuda": cuda}


def _from_entry(name: str, e: dict) -> Device:
    known = {"runtime", "runtimes", "precision", "threads", "delegate", "compute_units", "providers", "cpus",
             "connection", "description", "mode", "batch", "channels_last", "compile_mode", "cuda"}
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
                  **_torch_fields(name, e),
                  extra={k: v for k, v in e.items() if k not in known})


@lru_cache(maxsize=None)
def _registry(path: str) -> dict[str, Device]:
    raw = read_json(path, "device registry", RegistryError)
    with parsing(path, "device registry", RegistryError):
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


def _torch_how(d: Device) -> str:
    how = f"{d.mode or 'eager'}{'/' + d.compile_mode if d.mode == 'compile' and d.compile_mode else ''} b{d.batch or 1}"
    return how + (" channels_last" if d.channels_last else "")


def format_devices(path: str | Path | None = None) -> str:
    """The registry as a readable table (what ``--list-devices`` prints)."""
    rows = []
    for d in list_devices(path).values():
        how = d.delegate if d.runtime == "tflite" else d.compute_units if d.runtime == "coreml" else \
            ",".join(d.providers) if d.providers and d.runtime == "onnxruntime" else \
            _torch_how(d) if d.runtime == "torch" else ""
        rows.append((d.name, "/".join(d.runtimes), d.precision, str(d.threads), how or "-", d.connection_type,
                     d.description))
    head = ("device", "runtimes", "precision", "threads", "delegate/units", "connection", "description")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(6)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6]
    return "\n".join([fmt(head)] + [fmt(r) for r in rows])


if __name__ == "__main__":
    print(format_devices())
