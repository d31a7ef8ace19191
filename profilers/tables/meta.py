"""What a latency table measures: :class:`TableMeta`, the typed form of a table's ``.meta.json`` sidecar.

Every field that code reads is a typed attribute: the device (a :class:`~profilers.devices.Device`, as it
was when the table was measured), runtime and version, precision, threads, the runtime plugin's settings,
the search space (name and full description), image sizes and classes, the timing protocol, the host
fingerprint, the probe reference, drift and dates. Fields this version does not know are kept as they are
(:attr:`TableMeta.extra`) and written back. :meth:`TableMeta.from_json` checks every type and names the
file; a sidecar of a newer ``format`` is refused. :meth:`TableMeta.joined` is the one rule by which the
metadata of a table grows when rows join it (a run, an import, a merge).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from nas.core.errors import UserError
from nas.core.files import atomic_write_text, read_json

from profilers.devices import Device, DeviceError, get_device
from profilers.timing.protocol import Protocol

__all__ = ["TableMeta", "ProbeRecord", "TableError", "FORMAT", "TABLE_FIELDS", "meta_path", "now_iso"]

#: the sidecar format this version writes (1: before it recorded one)
FORMAT = 2
#: fields that describe a table as it was first made: rows added later leave them as they are
TABLE_FIELDS = ("created", "space", "img_size", "num_classes", "space_def")


class TableError(UserError, ValueError):
    """A latency table that is missing, malformed or inconsistent (the message says which and why)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def meta_path(path: str | Path) -> Path:
    """The metadata sidecar of a table: ``X.csv`` -> ``X.meta.json``."""
    p = Path(path)
    return p.with_name((p.name[:-4] if p.name.endswith(".csv") else p.name) + ".meta.json")


@dataclass(frozen=True)
class ProbeRecord:
    """A table's probe: its probe units' medians (ms) measured with the table, and when."""
    p50_ms: Mapping[str, float]
    measured_at: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**dict(self.extra), "p50_ms": dict(self.p50_ms),
                **({"measured_at": self.measured_at} if self.measured_at else {})}

    @classmethod
    def from_dict(cls, d: Mapping) -> "ProbeRecord":
        p50 = d.get("p50_ms")
        if not isinstance(p50, Mapping) or not all(isinstance(k, str) and _positive(v) for k, v in p50.items()):
            raise ValueError(f"'probe.p50_ms' must map probe units to positive milliseconds, got {p50!r}")
        return cls({k: float(v) for k, v in p50.items()}, d.get("measured_at"),
                   {k: v for k, v in d.items() if k not in ("p50_ms", "measured_at")})

    def scaled(self, factor: float) -> "ProbeRecord":
        return dataclasses.replace(self, p50_ms={k: v * factor for k, v in self.p50_ms.items()})


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


#: attribute -> (JSON types it may hold, what the message calls them); None is allowed for every one
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "runtime": ((str,), "a string"), "runtime_version": ((str,), "a string"), "precision": ((str,), "a string"),
    "threads": ((int,), "a whole number"), "settings": ((dict,), "an object"), "space": ((str,), "a string"),
    "space_def": ((dict,), "an object"), "img_size": ((int,), "a whole number"),
    "num_classes": ((int,), "a whole number"), "img_sizes": ((list,), "a list"), "spaces": ((list,), "a list"),
    "host": ((dict,), "an object"), "drift": ((dict,), "an object"),
    "host_speed_within_batches": ((dict,), "an object"), "software": ((dict,), "an object"),
    "created": ((str,), "a string"), "updated": ((str,), "a string"), "rows": ((int,), "a whole number"),
    "profiling_seconds": ((int, float), "a number"), "tool": ((str,), "a string"),
    "tool_version": ((str,), "a string")}


@dataclass(frozen=True)
class TableMeta:
    """The metadata of one latency table (see the module docstring)."""
    device: Device
    runtime: str
    runtime_version: str | None = None
    precision: str | None = None
    threads: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    space: str | None = None
    space_def: Mapping[str, Any] | None = None
    img_size: int | None = None
    num_classes: int | None = None
    img_sizes: tuple[int, ...] = ()
    spaces: tuple[str, ...] = ()
    protocol: Protocol | None = None
    host: Mapping[str, Any] = field(default_factory=dict)
    probe: ProbeRecord | None = None
    drift: Mapping[str, Any] | None = None
    host_speed_within_batches: Mapping[str, Any] | None = None
    software: Mapping[str, Any] = field(default_factory=dict)
    tool: str | None = None
    tool_version: str | None = None
    created: str | None = None
    updated: str | None = None
    rows: int | None = None
    profiling_seconds: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    # -- views ----------------------------------------------------------------------------------------
    @property
    def connection(self) -> str:
        """How the table's device is reached (``local``: measured on the machine the code runs on)."""
        return self.device.connection_type

    @property
    def local(self) -> bool:
        return self.connection == "local"

    @property
    def probe_p50(self) -> dict[str, float] | None:
        """The probe reference (ms per probe unit), or None when the table records none."""
        return dict(self.probe.p50_ms) if self.probe else None

    def identity(self) -> dict:
        """What must agree between tables merged together or a table and rows appended to it."""
        return {"device": self.device.name, "runtime": self.runtime, "precision": self.precision,
                "threads": self.threads}

    def differences(self, new: "TableMeta") -> list[str]:
        """What in :meth:`identity` differs between this table and rows described by ``new`` (fields this
        table does not record are not compared)."""
        mine, theirs = self.identity(), new.identity()
        return [f"{f}: table has {v!r}, this run {theirs[f]!r}" for f, v in mine.items()
                if v is not None and v != theirs[f]]

    def profile_command(self) -> str:
        """The command that measures this host's table for the same device, runtime and space."""
        extra = ""
        if self.space and self.space != "efficientformerv2":
            extra += f" --space {self.space}"
        if self.img_size and int(self.img_size) != 224:
            extra += f" --img-size {self.img_size}"
        return (f"python -m profilers.{self.runtime} --device {self.device.name}{extra} (then python -m "
                f"nas.calibrate --target {self.device.name})")

    # -- growing ------------------------------------------------------------------------------------------
    def replace(self, **changes) -> "TableMeta":
        return dataclasses.replace(self, **changes)

    def joined(self, new: "TableMeta", keep: tuple[str, ...] = TABLE_FIELDS) -> "TableMeta":
        """The metadata of a table that had these once the rows ``new`` describes join it: ``new``'s values
        replace these, except the fields of ``keep`` (by default :data:`TABLE_FIELDS`), which a table keeps
        where it has them; ``img_sizes`` and ``spaces`` list every resolution and space of both in order
        of first appearance; ``created`` stays the first one recorded and ``updated`` is now."""
        changes = {f.name: getattr(new, f.name) for f in dataclasses.fields(self)}
        changes["extra"] = {**dict(self.extra), **dict(new.extra)}
        for f in keep:
            if f in changes and getattr(self, f) is not None:
                changes[f] = getattr(self, f)
        for many, one in (("img_sizes", "img_size"), ("spaces", "space")):
            vals: list = []
            for m in (self, new):
                for v in (getattr(m, many) or ((getattr(m, one),) if getattr(m, one) is not None else ())):
                    if v not in vals:
                        vals.append(v)
            changes[many] = tuple(vals)
        changes["created"] = self.created or new.created or now_iso()
        changes["updated"] = now_iso()
        return TableMeta(**changes)

    # -- JSON ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d: dict[str, Any] = {"format": FORMAT, "device": self.device.name, "runtime": self.runtime}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("device", "runtime", "extra") or v is None or v == () or (f.name in ("host", "software",
                                                                                           "settings") and not v):
                continue
            if f.name == "protocol":
                v = v.to_dict()
            elif f.name == "probe":
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, Mapping):
                v = dict(v)
            d[f.name] = v
        d["device_entry"] = self.device.to_dict()
        d.update(self.extra)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write(self, table: str | Path) -> Path:
        """Write the sidecar of the table at ``table`` atomically."""
        return atomic_write_text(meta_path(table), self.to_json())

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "table metadata") -> "TableMeta":
        """Parse :meth:`to_dict`'s form (also a format-1 sidecar); ValueError / TableError naming the field."""
        d = dict(d)
        fmt = d.pop("format", 1)
        if not isinstance(fmt, int) or fmt > FORMAT:
            raise TableError(f"{source} is of format {fmt!r}, newer than this version reads ({FORMAT}); update "
                             f"effv2-nas")
        name, runtime = d.pop("device", None), d.pop("runtime", None)
        if not isinstance(name, str) or not name or not isinstance(runtime, str) or not runtime:
            raise ValueError("'device' and 'runtime' must name the table's device and runtime")
        entry = d.pop("device_entry", None)
        if entry is not None and not isinstance(entry, Mapping):
            raise ValueError("'device_entry' must be an object")
        if entry:
            device = Device.from_dict({**entry, "name": name}, source)
        else:                                       # older tables: the entry of that name as it is now
            try:
                device = get_device(name)
            except DeviceError:
                device = Device(name, (runtime,))
        kw: dict[str, Any] = {}
        for k, (types, what) in _TYPES.items():
            if k not in d:
                continue
            v = d.pop(k)
            if v is not None and (not isinstance(v, types) or isinstance(v, bool)):
                raise ValueError(f"{k!r} must be {what}, got {v!r}")
            kw[k] = v
        for many in ("img_sizes", "spaces"):
            if kw.get(many) is not None:
                kw[many] = tuple(kw[many])
        protocol = d.pop("protocol", None)
        if protocol is not None:
            if not isinstance(protocol, Mapping):
                raise ValueError(f"'protocol' must be an object, got {protocol!r}")
            known = {f.name for f in dataclasses.fields(Protocol)}
            kw["protocol"] = Protocol(**{k: v for k, v in protocol.items() if k in known})
        probe = d.pop("probe", None)
        if probe is not None:
            if not isinstance(probe, Mapping):
                raise ValueError(f"'probe' must be an object, got {probe!r}")
            kw["probe"] = ProbeRecord.from_dict(probe)
        return cls(device=device, runtime=runtime, **{k: v for k, v in kw.items() if v is not None}, extra=d)

    @classmethod
    def read(cls, table: str | Path) -> "TableMeta | None":
        """The sidecar of the table at ``table`` (None when there is none); :class:`TableError` naming the
        file when it cannot be read or holds fields of the wrong type."""
        mp = meta_path(table)
        if not mp.exists():
            return None
        fix = "restore it, or measure the table again"
        d = read_json(mp, "table metadata", TableError, fix=fix)
        try:
            return cls.from_dict(d, f"table metadata {mp}")
        except TableError:
            raise
        except (TypeError, ValueError, KeyError, UserError) as e:
            raise TableError(f"table metadata {mp}: {e}; {fix}") from None
