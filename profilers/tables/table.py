"""Latency tables: the one module that owns everything about them.

A table is ``{device}.{runtime}.csv`` (one row per unit: the :class:`nas.space.units.BlockSpec` fields
``key,kind,cin,cout,res,stride,hidden,attn,classes``, then ``p50_ms,p10_ms,p90_ms,mean_ms,std_ms,cv,n,
threads,measured_at``) with a ``.meta.json`` sidecar (:class:`~profilers.tables.meta.TableMeta`).

- **Where a device's table lives** (:func:`locate`): a device with a ``local`` connection (``local-cpu``, a
  GPU machine) is the machine the code runs on, so its tables live in this host's folder of the user
  cache (:func:`host_tables_dir`); the tables a user measures of other devices (a phone, an iPhone, a hosted
  device) in the user cache's device folder (:func:`device_tables_dir`); the reference machine's (and any
  device's table the package ships) in ``latency_tables/``, which every command leaves as it is;
  ``$EFFV2_TABLES`` overrides them all.
- **Reading** (:meth:`LatencyTable.read`): columns, numbers, finite positive medians, the metadata's
  types; one-line :class:`TableError` naming the file and the line.
- **Whether it describes this host** (:meth:`LatencyTable.check_host`, :meth:`LatencyTable.verify_host`):
  the fingerprint, the runtime's version and, when asked, the probe re-measured now. The one
  implementation used by table runs (before rows are appended) and by the predictor.
- **Appending** (:class:`TableWriter`, a :class:`~nas.core.journal.Journal`) and **merging** shards
  (:func:`merge_tables`).
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from nas.core.files import atomic_write_text, claim_output, exclusive, protect, read_text
from nas.core.journal import Journal, complete_text

from nas.space.spaces import get_space
from nas.space.units import space_units

from profilers.devices import Device, DeviceError, get_device
from profilers.runtimes import get_profiler
from profilers.tables.meta import TableError, TableMeta, meta_path, now_iso
from profilers.timing.host import differences, fingerprint, host_id
from profilers.timing.probe import DEFAULT_TOLERANCE, ProbeCheck, check_probe

__all__ = ["LatencyTable", "TableError", "TableWriter", "HostCheck", "ForeignTableError", "ForeignTableWarning", "refuse_foreign",
           "SPEC_COLUMNS", "STAT_COLUMNS", "COLUMNS", "TABLES_DIR", "ALLOW_ENV", "TRY_WITHOUT_A_DEVICE",
           "locate", "table_path", "tables_dir", "user_cache_dir", "host_tables_dir", "device_tables_dir", "read_rows", "read_table",
           "format_row", "check_stats", "existing_keys", "merge_tables", "scale_rows", "meta_path", "now_iso",
           "missing_keys", "coverage_report", "fallbacks", "format_compute", "parse_compute", "COMPUTE_COLUMN",
           "MAX_CPU_SHARE"]

log = logging.getLogger(__name__)

SPEC_COLUMNS = ["key", "kind", "cin", "cout", "res", "stride", "hidden", "attn", "classes"]
STAT_COLUMNS = ["p50_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "cv", "n", "threads", "measured_at"]
COLUMNS = SPEC_COLUMNS + STAT_COLUMNS
#: an optional last column: which compute units ran the unit, and their shares (``neural_engine=0.97;cpu=0.03``),
#: where the device says (an iPhone's compute plan, AI Hub's per-layer units); tables written before it lack it
COMPUTE_COLUMN = "compute_units"
_INT_COLUMNS = ["cin", "cout", "res", "stride", "hidden", "attn", "classes", "n", "threads"]
_FLOAT_COLUMNS = ["p50_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "cv"]

#: the shipped tables (in the repository, or installed beside this package): read-only to every command
TABLES_DIR = Path(__file__).resolve().parents[2] / "latency_tables"
protect(TABLES_DIR, "reference latency tables and calibrations")

#: set to 1 to use a local device's table measured on another host (with a loud warning)
ALLOW_ENV = "EFFV2_ALLOW_FOREIGN_TABLE"
#: what a user without the device can search with (said when a device's table is missing)
TRY_WITHOUT_A_DEVICE = ("to try the search without the device, use --target local-cpu (this machine, measured on "
                        "first use) or --target ref-epyc (a table shipped with the package)")


class ForeignTableError(TableError):
    """A table of a ``local`` device that was measured on another host (or whose probe moved)."""


class ForeignTableWarning(UserWarning):
    """A table of another host used on purpose (``allow_foreign``)."""


# ----------------------------------------------------------------------------------------------
# where tables live
# ----------------------------------------------------------------------------------------------
def user_cache_dir() -> Path:
    """Where this user's measurements of this machine live: ``$EFFV2_CACHE``, else
    ``$XDG_CACHE_HOME/effv2-nas``, else ``~/.cache/effv2-nas`` (never inside the installed package)."""
    if os.environ.get("EFFV2_CACHE"):
        return Path(os.environ["EFFV2_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "effv2-nas"


def host_tables_dir() -> Path:
    """The tables of this host's ``local`` devices: ``{user_cache_dir()}/tables/{host id}`` (one folder per
    kind of host, so a cache shared by several machines keeps their tables apart)."""
    return user_cache_dir() / "tables" / host_id()


def device_tables_dir() -> Path:
    """The tables this user measures of devices that are not this machine (a phone, an iPhone, a hosted
    device): ``{user_cache_dir()}/tables/devices`` (they describe the device, not the host that wrote them)."""
    return user_cache_dir() / "tables" / "devices"


def tables_dir(device: str | Device | None = None) -> Path:
    """The folder a ``device``'s table is written to: ``$EFFV2_TABLES`` when set; this host's cache folder for a
    device with a ``local`` connection (its table must be measured here); the shipped ``latency_tables/`` for a
    reference device (read-only: its tables ship as they are); the user's device folder
    (:func:`device_tables_dir`) for any other device."""
    if os.environ.get("EFFV2_TABLES"):
        return Path(os.environ["EFFV2_TABLES"]).expanduser()
    if device is not None:
        try:
            dev = get_device(device)
        except DeviceError:
            return TABLES_DIR
        if dev.local:
            return host_tables_dir()
        if dev.connection_type != "reference":
            return device_tables_dir()
    return TABLES_DIR


def _search_dirs(device: Device, root: str | Path | None) -> list[Path]:
    """Where ``device``'s tables are looked for: ``root`` alone when given; else where they are written
    (:func:`tables_dir`), then, for a device that is not this machine, the shipped ``latency_tables/``."""
    if root is not None:
        return [Path(root)]
    first = tables_dir(device)
    return [first] + ([TABLES_DIR] if first != TABLES_DIR and not device.local and
                      not os.environ.get("EFFV2_TABLES") else [])


def table_path(device: str | Device, runtime: str, root: str | Path | None = None) -> Path:
    """``{root}/{device}.{runtime}.csv``; ``root`` defaults to :func:`tables_dir` of the device."""
    name = device.name if isinstance(device, Device) else device
    return Path(root if root is not None else tables_dir(device)) / f"{name}.{runtime}.csv"


def locate(target: str | Path, runtime: str | None = None, root: str | Path | None = None) -> Path:
    """A table path from a path (``*.csv``) or a device name (and optional runtime, default the device's).

    A missing table is a :class:`TableError` saying what measures it (the device's plugin:
    :meth:`profilers.plugin.base.Profiler.how_to_measure`) and how to search without the device; a
    runtime the device is not profiled with is refused.
    """
    p = Path(str(target))
    if p.suffix == ".csv":
        if p.is_dir():
            raise TableError(f"latency table {p} is a folder, not a CSV file")
        if not p.exists():
            raise TableError(f"latency table {p} does not exist")
        return p
    try:
        dev = get_device(str(target))
    except DeviceError as e:
        raise TableError(f"no latency table for {str(target)!r}: {e}") from None
    if runtime is not None and runtime not in dev.runtimes:
        raise TableError(f"device {dev.name!r} is profiled with {', '.join(dev.runtimes)}, not {runtime!r}; pass one "
                         f"of those as the runtime")
    rt = runtime or dev.runtime
    dirs = _search_dirs(dev, root)
    for d in dirs:
        if (d / f"{dev.name}.{rt}.csv").exists():
            return d / f"{dev.name}.{rt}.csv"
    path = table_path(dev, rt, root)
    if runtime is None:                                 # another runtime's table of the device, if only one
        found = sorted({f.name: f for d in reversed(dirs) for f in d.glob(f"{dev.name}.*.csv")}.values())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(f.name.split(".")[1] for f in found)
            raise TableError(f"device {dev.name!r} has tables for several runtimes ({names}); pass a runtime")
    first_use = dev.name == "local-cpu"
    raise TableError(f"no latency table for device {dev.name!r} at {path}. Make "
                     f"{'this host' + chr(39) + 's' if dev.local else 'its'} table with: "
                     f"{get_profiler(rt).how_to_measure(dev)}"
                     + (" (python -m nas.search does it on first use)" if first_use else f"; {TRY_WITHOUT_A_DEVICE}"))


def _make_hint(path: Path) -> str:
    parts = path.name.split(".")
    if len(parts) == 3 and parts[2] == "csv":
        return f" Make it with: python -m profilers.{parts[1]} --device {parts[0]}"
    return " Make one with: python -m profilers.<runtime> --device <device> --out " + str(path)


# ----------------------------------------------------------------------------------------------
# rows
# ----------------------------------------------------------------------------------------------
def read_rows(path: str | Path) -> pd.DataFrame:
    """The rows of the table at ``path``, indexed by key (a duplicated key keeps its last row: a table is
    append-only); :class:`TableError` naming the file and the line for a malformed one."""
    path = Path(path)
    if not path.exists():
        raise TableError(f"latency table {path} does not exist.{_make_hint(path)}")
    text = complete_text(read_text(path, "latency table", TableError), path)
    if not text.strip():
        raise TableError(f"latency table {path} is empty (expected a header line: {','.join(COLUMNS)})."
                         f"{_make_hint(path)}")
    rows = csv.reader(io.StringIO(text))
    header = next(rows)
    for i, r in enumerate(rows, start=2):
        if r and len(r) != len(header):
            raise TableError(f"latency table {path} is not a valid CSV: line {i} has {len(r)} fields, "
                             f"the header has {len(header)}")
    try:
        df = pd.read_csv(io.StringIO(text), dtype={"key": str, "kind": str, "measured_at": str, COMPUTE_COLUMN: str},
                         index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise TableError(f"latency table {path} is not a valid CSV: {e}") from None
    if COMPUTE_COLUMN not in df.columns:
        df[COMPUTE_COLUMN] = ""
    df[COMPUTE_COLUMN] = df[COMPUTE_COLUMN].fillna("").astype(str)
    for i, v in enumerate(df[COMPUTE_COLUMN]):
        if v:
            try:
                parse_compute(v)
            except ValueError as e:
                raise TableError(f"latency table {path}, line {i + 2}: column {COMPUTE_COLUMN!r}: {e}") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise TableError(f"latency table {path} lacks column(s) {missing}; a table has the columns "
                         f"{','.join(COLUMNS)}")
    for c in _INT_COLUMNS + _FLOAT_COLUMNS:
        num = pd.to_numeric(df[c], errors="coerce")
        bad = num.isna() & df[c].notna()
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise TableError(f"latency table {path}, line {i + 2}: column {c!r} holds {df[c].iloc[i]!r}, "
                             f"which is not a number")
        df[c] = num
    for c in ["key", "kind", "cin", "cout", "res", "p50_ms", "n"]:
        empty = df[c].isna()
        if empty.any():
            i = int(empty.to_numpy().nonzero()[0][0])
            raise TableError(f"latency table {path}, line {i + 2}: column {c!r} is empty")
    bad = ~((df["p50_ms"] > 0) & np.isfinite(df["p50_ms"]))
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise TableError(f"latency table {path}, line {i + 2}: p50_ms must be a finite positive number, "
                         f"got {df['p50_ms'].iloc[i]!r}")
    for c in ["cin", "cout", "res", "stride", "hidden", "attn", "classes", "n"]:
        df[c] = df[c].fillna(0).astype(int)
    df["threads"] = df["threads"].astype("Int64")
    df["attn"] = df["attn"].astype(bool)
    return df.drop_duplicates("key", keep="last").set_index("key")


def existing_keys(path: str | Path) -> set[str]:
    """Keys already in the table at ``path`` (empty when it does not exist yet)."""
    p = Path(path)
    if not p.exists() or not p.stat().st_size:
        return set()
    return set(read_rows(p).index)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return "" if v != v else f"{v:.6g}"
    return str(v)


def check_stats(stats, where: str = "") -> dict:
    """The stats as a dict, or TableError when they cannot be a measurement: ``p50_ms`` finite and
    positive; ``p10_ms``/``p90_ms``/``mean_ms``/``std_ms``/``cv`` finite and non-negative, or NaN where the
    tool reports none; ``n`` a non-negative whole number; p10 <= p50 <= p90 where present."""
    s = stats.to_dict() if hasattr(stats, "to_dict") else dict(stats)
    at = f"{where}: " if where else ""
    p50 = s.get("p50_ms")
    if isinstance(p50, bool) or not isinstance(p50, (int, float)) or not math.isfinite(p50) or p50 <= 0:
        raise TableError(f"{at}p50_ms must be a finite positive number of milliseconds, got {p50!r}")
    for c in ("p10_ms", "p90_ms", "mean_ms", "std_ms", "cv"):
        v = s.get(c)
        if v is None or (isinstance(v, float) and v != v):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise TableError(f"{at}{c} must be a finite non-negative number (or absent), got {v!r}")
    n = s.get("n")
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n != n or n < 0 or int(n) != n:
        raise TableError(f"{at}n must be a whole number of timed runs, got {n!r}")
    p10, p90 = s.get("p10_ms"), s.get("p90_ms")
    have = [v for v in (p10, p50, p90) if v is not None and v == v]
    if have != sorted(have):
        raise TableError(f"{at}percentiles out of order: p10_ms {p10!r}, p50_ms {p50!r}, p90_ms {p90!r} (p10 <= p50 "
                         f"<= p90)")
    return s


def format_compute(shares) -> str:
    """``unit=share;...`` (shares to 3 decimals) of ``((unit, share), ...)`` or ``{unit: share}``; "" for None."""
    items = shares.items() if isinstance(shares, Mapping) else (shares or ())
    return ";".join(f"{str(k).lower()}={float(v):.3f}" for k, v in items)


def parse_compute(text: str) -> dict[str, float]:
    """``{unit: share}`` of a :func:`format_compute` string (ValueError for anything else)."""
    out = {}
    for part in str(text).split(";"):
        name, sep, value = part.partition("=")
        share = float(value)
        if not sep or not name or not (0.0 <= share <= 1.0):
            raise ValueError(f"{text!r} is not unit=share;... with shares between 0 and 1")
        out[name] = share
    return out


def format_row(spec_dict: dict, stats, threads: int | None, measured_at: str | None = None,
               compute_column: bool = True) -> str:
    """One CSV line (with newline) for a unit (``BlockSpec.to_dict()``) and its :class:`LatencyStats`,
    written by the csv module (a field holding a comma or a quote is quoted); with ``compute_column``, the
    compute units' shares last. Impossible stats are a :class:`TableError`, so nothing is written."""
    key = str(spec_dict.get("key", ""))
    s = check_stats(stats, f"unit {key}")
    vals = [spec_dict.get(c, 0) for c in SPEC_COLUMNS]
    vals[SPEC_COLUMNS.index("attn")] = int(bool(spec_dict.get("attn", False)))
    vals += [s["p50_ms"], s["p10_ms"], s["p90_ms"], s["mean_ms"], s["std_ms"], s["cv"], int(s["n"]),
             threads, measured_at or now_iso()]
    if compute_column:
        vals.append(format_compute(s.get("compute")))
    if not key or any(ch in key for ch in ',"\n\r'):
        raise TableError(f"unit key {key!r} cannot be written to a CSV table")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_fmt(v) for v in vals])
    return buf.getvalue()


class TableWriter(Journal):
    """Appends rows to a table, one flushed (and fsynced) line per finished unit: a
    :class:`~nas.core.journal.Journal` (its lock held while open, a torn last line cut off, the header
    written to a new file and checked in an existing one). A new table has the compute-units column; a table
    written before it existed keeps its header (and its rows get no shares)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        old = path.is_file() and path.stat().st_size and \
            read_text(path, "latency table", TableError).split("\n", 1)[0].strip() == ",".join(COLUMNS)
        super().__init__(path, COLUMNS if old else COLUMNS + [COMPUTE_COLUMN], what="latency table",
                         error=TableError, fix="write to a new file with --out")
        self.open()

    def append(self, spec_dict: dict, stats, threads: int | None, measured_at: str | None = None):
        self.write_line(format_row(spec_dict, stats, threads, measured_at, COMPUTE_COLUMN in self.columns))

    def __enter__(self):
        return self


def scale_rows(path: str | Path, keys: Iterable[str], factor: float) -> int:
    """Multiply the latency columns of the rows of ``keys`` by ``factor`` (an atomic rewrite of the table);
    returns how many rows changed."""
    path, keys, n = Path(path), set(keys), 0
    rows = list(csv.reader(io.StringIO(complete_text(read_text(path, "latency table", TableError), path))))
    header = rows[0]
    cols = [header.index(c) for c in ("p50_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms")]
    for r in rows[1:]:
        if r and r[0] in keys:
            for c in cols:
                if r[c] != "":
                    r[c] = _fmt(float(r[c]) * factor)
            n += 1
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return n


# ----------------------------------------------------------------------------------------------
# the table and this host
# ----------------------------------------------------------------------------------------------
@dataclass
class HostCheck:
    """What :meth:`LatencyTable.check_host` found: fingerprint and runtime-version differences, the probe."""
    local: bool
    differences: list[str] = field(default_factory=list)
    probe: ProbeCheck | None = None

    @property
    def ok(self) -> bool:
        return not self.differences and (self.probe is None or self.probe.ok)

    def describe(self) -> str:
        return "; ".join(self.differences + ([self.probe.describe()] if self.probe and not self.probe.ok else []))


#: measures the probe units now: ``() -> {key: LatencyStats}`` (a profiler's :meth:`measure_probe`)
ProbeMeasure = Callable[[], Mapping]


@dataclass(frozen=True)
class LatencyTable:
    """A latency table: its ``path``, its ``rows`` (a frame indexed by unit key) and its :class:`TableMeta`."""
    path: Path
    rows: pd.DataFrame
    meta: TableMeta

    @classmethod
    def read(cls, target: str | Path, runtime: str | None = None, root: str | Path | None = None) -> "LatencyTable":
        """The table of ``target`` (a path or a device name, :func:`locate`), rows and metadata read and
        checked; a table without its metadata is refused (nothing would say what its latencies are for)."""
        path = locate(target, runtime, root)
        rows = read_rows(path)
        meta = TableMeta.read(path)
        if meta is None:
            raise TableError(f"latency table {path} has no metadata file {meta_path(path).name} beside it: without "
                             f"it nothing says which device, runtime, space and resolution its latencies are for. "
                             f"Restore it, or measure the table again with python -m profilers.<runtime>")
        return cls(path, rows, meta)

    @property
    def latencies(self) -> dict[str, float]:
        """Unit key -> median latency (ms)."""
        return {str(k): float(v) for k, v in self.rows["p50_ms"].items()}

    # -- this host ------------------------------------------------------------------------------------
    def check_host(self, *, probe: bool | ProbeMeasure = False, tolerance: float = DEFAULT_TOLERANCE,
                   runtime_version: str | None = None) -> HostCheck:
        """What differs between the host this (``local``) table was measured on and this one: the
        fingerprint, the runtime's version (``runtime_version``, else the installed plugin's) and, with
        ``probe`` (True, or a function that measures the probe units now), the probe re-measured, only
        when nothing else differs. Tables of devices that are not ``local`` are not checked."""
        return check_host(self.path, self.meta, probe=probe, tolerance=tolerance, runtime_version=runtime_version)

    def verify_host(self, *, probe: bool | ProbeMeasure = False, tolerance: float = DEFAULT_TOLERANCE,
                    allow_foreign: bool | None = None) -> HostCheck:
        """:meth:`check_host`, raising :class:`ForeignTableError` (or, with ``allow_foreign`` or
        ``$EFFV2_ALLOW_FOREIGN_TABLE``, warning loudly) when the table does not describe this host."""
        check = self.check_host(probe=probe, tolerance=tolerance)
        if check.ok:
            return check
        refuse_foreign(f"latency table {self.path} does not describe this host ({check.describe()}). Its latencies "
                       f"are another machine's: profile this host with {self.meta.profile_command()}", allow_foreign,
                       stacklevel=3)
        return check

    def check_measurable_here(self, command: str) -> None:
        """:class:`TableError` when this is a reference device's table: it was measured on another machine
        and ships as it is, so networks measured here cannot ``command`` (calibrate, validate) it."""
        if self.meta.connection == "reference":
            of = self.meta.device.connection.get("of") or "local-cpu"
            raise TableError(f"{self.path} is the table of the reference device {self.meta.device.name!r}: it was "
                             f"measured on another machine and ships as it is, so networks timed here cannot "
                             f"{command} it. To {command} this machine's table: --target {of}")


def refuse_foreign(msg: str, allow_foreign: bool | None = None, stacklevel: int = 2) -> None:
    """:class:`ForeignTableError` saying ``msg`` (why the table is not this host's and what to do) and how to
    use it anyway; with ``allow_foreign`` (None: ``$EFFV2_ALLOW_FOREIGN_TABLE``) a loud
    :class:`ForeignTableWarning` instead, attributed ``stacklevel`` frames up from the caller."""
    if allow_foreign is None:
        allow_foreign = os.environ.get(ALLOW_ENV, "") not in ("", "0")
    if not allow_foreign:
        raise ForeignTableError(msg + f"; or, to use it anyway, pass allow_foreign=True / --allow-foreign-table "
                                      f"(or set {ALLOW_ENV}=1)")
    warnings.warn("USING ANOTHER MACHINE'S TABLE ON PURPOSE: " + msg, ForeignTableWarning, stacklevel=stacklevel + 1)


def check_host(path: str | Path, meta: TableMeta, *, probe: bool | ProbeMeasure = False,
               tolerance: float = DEFAULT_TOLERANCE, runtime_version: str | None = None) -> HostCheck:
    """:meth:`LatencyTable.check_host` of the table at ``path`` with metadata ``meta`` (also for a table whose
    rows are still being written: a table run checks the host before it appends)."""
    if not meta.local:
        return HostCheck(local=False)
    check = HostCheck(local=True)
    if not meta.host:
        check.differences.append("the table records no host fingerprint")
    check.differences += differences(dict(meta.host), fingerprint())
    now = runtime_version or _installed_runtime_version(meta)
    if meta.runtime_version and now and meta.runtime_version != now:
        check.differences.append(f"{meta.runtime} {meta.runtime_version} there, {now} here")
    if probe and not check.differences:
        if not meta.probe_p50:
            check.differences.append("the table records no probe to compare this host with")
        else:
            measure = probe if callable(probe) else get_profiler(meta.runtime).for_table(meta).measure_probe
            check.probe = check_probe(meta.probe_p50, measure, tolerance)
            log.info("%s: %s", path, check.probe.describe())
    return check


def _installed_runtime_version(meta: TableMeta) -> str | None:
    try:
        return get_profiler(meta.runtime).for_table(meta).runtime_version()
    except Exception:                                   # runtime not installed, unknown: nothing to compare
        return None


# ----------------------------------------------------------------------------------------------
# merging
# ----------------------------------------------------------------------------------------------
def merge_tables(paths: Iterable[str | Path], out: str | Path) -> LatencyTable:
    """Merge tables of one device and runtime into ``out`` (a key measured twice keeps its lowest cv).

    Raises :class:`TableError` when the tables disagree on device, runtime, precision or threads, or when
    tables of a ``local`` device were measured on different machines.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise TableError("nothing to merge: give at least one table")
    tables = [LatencyTable.read(p) for p in paths]
    for f in tables[0].meta.identity():
        vals = {repr(t.meta.identity()[f]) for t in tables}
        if len(vals) > 1:
            listing = ", ".join(f"{t.path.name}: {t.meta.identity()[f]!r}" for t in tables)
            raise TableError(f"cannot merge tables measured with different {f} ({listing})")
    local = [t for t in tables if t.meta.local]
    for t in local[1:]:                               # rows of two machines never share a table
        diffs = differences(dict(local[0].meta.host), dict(t.meta.host))
        if diffs:
            raise TableError(f"cannot merge {local[0].path.name} and {t.path.name}: they were measured on different "
                             f"machines ({'; '.join(diffs)})")
    allrows = pd.concat([t.rows.reset_index() for t in tables], ignore_index=True)
    allrows["_cv"] = allrows["cv"].fillna(float("inf"))
    allrows["_order"] = range(len(allrows))
    merged = allrows.sort_values(["_cv", "_order"]).drop_duplicates("key", keep="first").sort_values("_order")
    merged = merged.drop(columns=["_cv", "_order"])
    meta = tables[0].meta
    for t in tables[1:]:                              # where the tables differ, the first one's values win
        meta = t.meta.joined(meta, keep=())
    meta = meta.replace(extra={**dict(meta.extra), "merged_from": [str(p) for p in paths]}, updated=now_iso(),
                        rows=int(len(merged)))
    out = claim_output(out)
    lines = [",".join(COLUMNS + [COMPUTE_COLUMN]) + "\n"]
    for _, r in merged.iterrows():
        st = {c: r[c] for c in ("p50_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "cv", "n")}
        st["n"] = int(st["n"])
        st["compute"] = parse_compute(r[COMPUTE_COLUMN]) if r[COMPUTE_COLUMN] else None
        th = r["threads"]
        lines.append(format_row({c: r[c] for c in SPEC_COLUMNS}, st, None if pd.isna(th) else int(th),
                                r["measured_at"]))
    with exclusive(out, "latency table", folder=False):
        atomic_write_text(out, "".join(lines))
        meta.write(out)
    return LatencyTable.read(out)


# ----------------------------------------------------------------------------------------------
# coverage
# ----------------------------------------------------------------------------------------------
def missing_keys(table: str | Path, space=None, img_size: int | None = None,
                 num_classes: int | None = None) -> tuple[list[str], int, dict]:
    """``(missing keys, number of units in the space, resolved settings)`` for the table at ``table``: the
    units of ``space`` at ``img_size`` and ``num_classes`` (by default the table's) it lacks."""
    rows, meta = read_rows(table), TableMeta.read(table)
    sp = get_space(space or (meta.space if meta else None) or "efficientformerv2")
    img = int(img_size or (meta.img_size if meta else None) or 224)
    nc = int(num_classes or (meta.num_classes if meta else None) or 1000)
    units = space_units(sp, img, nc)
    have = set(rows.index)
    return [u.key for u in units if u.key not in have], len(units), {"space": sp.name, "img_size": img,
                                                                      "num_classes": nc, "meta": meta}


#: a unit "fell back" when more than this share of its work ran on the CPU (of a device with an accelerator)
MAX_CPU_SHARE = 0.10


def fallbacks(rows: pd.DataFrame, max_cpu_share: float = MAX_CPU_SHARE) -> dict[str, dict[str, float]]:
    """The units of a table's ``rows`` whose recorded compute units put more than ``max_cpu_share`` of their
    work on the CPU, where an accelerator (Neural Engine, NPU, GPU) ran the others: ``{key: shares}``. Empty
    for a table without shares, or whose units all ran on the CPU (a CPU device)."""
    shares = {k: parse_compute(v) for k, v in rows[COMPUTE_COLUMN].items() if v} if COMPUTE_COLUMN in rows else {}
    if not any(sum(v for u, v in s.items() if u != "cpu" and u != "unspecified") > 0 for s in shares.values()):
        return {}
    return {k: s for k, s in shares.items() if s.get("cpu", 0.0) > max_cpu_share}


def coverage_report(table: str | Path, space=None, img_size: int | None = None,
                    num_classes: int | None = None,
                    max_cpu_share: float = MAX_CPU_SHARE) -> tuple[str, list[str]]:
    """A readable report (what ``python -m profilers.coverage`` prints) and the missing keys."""
    table = Path(table)
    if not table.exists():
        sp = get_space(space or "efficientformerv2")
        keys = [u.key for u in space_units(sp, img_size or 224, num_classes or 1000)]
        return (f"{table}: no table yet; all {len(keys)} units of space {sp.name!r} at {img_size or 224} px "
                f"are missing"), keys
    missing, total, s = missing_keys(table, space, img_size, num_classes)
    lines = [f"{table}: {total - len(missing)}/{total} units of space {s['space']!r} at {s['img_size']} px, "
             f"{s['num_classes']} classes ({100.0 * (total - len(missing)) / max(total, 1):.1f}% covered)"]
    if missing:
        lines.append(f"missing {len(missing)}:")
        lines += [f"  {k}" for k in missing]
        if s["meta"]:
            lines.append(f"measure them with: python -m profilers.{s['meta'].runtime} --device "
                         f"{s['meta'].device.name} --space {s['space']} --img-size {s['img_size']} --num-classes "
                         f"{s['num_classes']} --out {table}")
    fell = fallbacks(read_rows(table), max_cpu_share)
    if fell:
        lines.append(f"fell back from the accelerator ({len(fell)} units with over {100 * max_cpu_share:.0f} % of "
                     f"their work on the CPU; python -m nas.search --forbid-fallback keeps them out of the search):")
        lines += [f"  {k}  ({format_compute(v)})" for k, v in sorted(fell.items())]
    return "\n".join(lines), missing


def read_table(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """``(rows indexed by key, metadata as a plain dict)`` of the table at ``path`` (the metadata's JSON form;
    {} without a sidecar): the reading of earlier versions, for scripts that hold it. The project reads
    tables with :meth:`LatencyTable.read`."""
    rows = read_rows(path)
    meta = TableMeta.read(path)
    return rows, (meta.to_dict() if meta else {})
