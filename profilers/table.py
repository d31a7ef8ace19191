"""Latency tables: ``latency_tables/{device}.{runtime}.csv`` plus a ``.meta.json`` sidecar.

One row per unit: the :class:`nas.space.units.BlockSpec` fields (``key,kind,cin,cout,res,stride,hidden,attn,
classes``) then the measurement (``p50_ms,p10_ms,p90_ms,mean_ms,std_ms,cv,n,threads,measured_at``).
Tables are append-only: :class:`TableWriter` appends and flushes each finished row, so a killed run
keeps every finished row and a rerun measures only what is missing. :func:`merge_meta` is the one rule
by which the metadata of a table grows when rows are added to it (a run, an import, a merge).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from nas.core.errors import UserError
from nas.core.files import atomic_write_text, claim_output, exclusive, protect, read_json, read_text
from nas.core.journal import Journal, complete_text

from profilers.devices import DeviceError, get_device
from profilers.host import differences, host_id

__all__ = ["TableError", "SPEC_COLUMNS", "STAT_COLUMNS", "COLUMNS", "TABLES_DIR", "table_path", "meta_path",
           "tables_dir", "user_cache_dir", "host_tables_dir",
           "read_table", "read_meta", "write_meta", "merge_meta", "TableWriter", "format_row", "check_stats",
           "merge_tables", "table_connection", "now_iso", "scale_rows", "TABLE_FIELDS", "LIST_FIELDS"]

SPEC_COLUMNS = ["key", "kind", "cin", "cout", "res", "stride", "hidden", "attn", "classes"]
STAT_COLUMNS = ["p50_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "cv", "n", "threads", "measured_at"]
COLUMNS = SPEC_COLUMNS + STAT_COLUMNS
_INT_COLUMNS = ["cin", "cout", "res", "stride", "hidden", "attn", "classes", "n", "threads"]
_FLOAT_COLUMNS = ["p50_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "cv"]
#: metadata fields that must agree between tables that are merged or appended to
IDENTITY_FIELDS = ("device", "runtime", "precision", "threads")

# the shipped tables (in the repository, or installed beside this package): read-only to every command
TABLES_DIR = Path(__file__).resolve().parent.parent / "latency_tables"
protect(TABLES_DIR, "reference latency tables and calibrations")


class TableError(UserError, ValueError):
    """A latency table that is missing, malformed or inconsistent (the message says which and why)."""


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


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


def tables_dir(device: str | None = None) -> Path:
    """The folder that holds ``device``'s tables: ``$EFFV2_TABLES`` when set; this host's cache folder for a
    device with a ``local`` connection (its table must be measured here); else the shipped
    ``latency_tables/``."""
    if os.environ.get("EFFV2_TABLES"):
        return Path(os.environ["EFFV2_TABLES"]).expanduser()
    if device is not None:
        try:
            if get_device(device).connection_type == "local":
                return host_tables_dir()
        except DeviceError:
            pass
    return TABLES_DIR


def table_path(device: str, runtime: str, root: str | Path | None = None) -> Path:
    """``{root}/{device}.{runtime}.csv``; ``root`` defaults to :func:`tables_dir` of the device."""
    return Path(root if root is not None else tables_dir(device)) / f"{device}.{runtime}.csv"


def meta_path(path: str | Path) -> Path:
    """The metadata sidecar of a table: ``X.csv`` -> ``X.meta.json``."""
    p = Path(path)
    return p.with_name((p.name[:-4] if p.name.endswith(".csv") else p.name) + ".meta.json")


def _make_hint(path: Path) -> str:
    parts = path.name.split(".")
    if len(parts) == 3 and parts[2] == "csv":
        return f" Make it with: python -m profilers.{parts[1]} --device {parts[0]}"
    return " Make one with: python -m profilers.<runtime> --device <device> --out " + str(path)


# ----------------------------------------------------------------------------------------------
# metadata
# ----------------------------------------------------------------------------------------------
def read_meta(path: str | Path) -> dict:
    """The sidecar metadata of table ``path`` ({} when there is none; TableError when malformed)."""
    mp = meta_path(path)
    if not mp.exists():
        return {}
    fix = "restore it, or measure the table again"
    meta = read_json(mp, "table metadata", TableError, fix=fix)
    for key, kinds in META_TYPES.items():
        if meta.get(key) is not None and not isinstance(meta[key], kinds):
            raise TableError(f"table metadata {mp}: {key!r} must be {_kind_names(kinds)}, got {meta[key]!r}; {fix}")
    return meta


#: the types of the metadata fields that code reads (a field may be absent or null)
META_TYPES = {"device": str, "runtime": str, "runtime_version": str, "precision": str, "threads": int,
              "space": str, "img_size": int, "num_classes": int, "space_def": dict, "settings": dict,
              "protocol": dict, "host": dict, "probe": dict, "drift": dict, "device_entry": dict, "created": str,
              "updated": str, "img_sizes": list, "spaces": list}


def _kind_names(kinds) -> str:
    return {str: "a string", int: "a whole number", dict: "an object", list: "a list"}.get(kinds, str(kinds))


def write_meta(path: str | Path, meta: dict) -> Path:
    """Write the sidecar atomically (write to a temporary file, then rename)."""
    return atomic_write_text(meta_path(path), json.dumps(meta, indent=2, sort_keys=False) + "\n")


#: fields that describe a table as it was first made: rows added later leave them as they are
TABLE_FIELDS = ("created", "space", "img_size", "num_classes", "space_def")
#: list fields that gather every value of a single field over the rows a table holds
LIST_FIELDS = {"img_sizes": "img_size", "spaces": "space"}


def _listed(meta: dict, list_key: str, one_key: str) -> list:
    return list(meta.get(list_key) or ([meta[one_key]] if one_key in meta else []))


def merge_meta(old: dict, new: dict, keep: Iterable[str] = TABLE_FIELDS) -> dict:
    """The metadata of a table that had ``old`` once the rows described by ``new`` join it.

    ``new`` replaces the values of ``old`` except for the fields of ``keep`` (by default
    :data:`TABLE_FIELDS`), which ``old`` keeps where it has them; ``img_sizes`` and ``spaces`` list every
    resolution and space of both, in order of first appearance (a table that records only ``img_size`` or
    ``space`` counts as listing that one); ``created`` stays the first one recorded and ``updated`` is now.
    """
    meta = {**old, **new}
    for f in keep:
        if f in old:
            meta[f] = old[f]
    for list_key, one_key in LIST_FIELDS.items():
        vals: list = []
        for v in _listed(old, list_key, one_key) + _listed(new, list_key, one_key):
            if v not in vals:
                vals.append(v)
        if vals:
            meta[list_key] = vals
    meta["created"] = old.get("created") or new.get("created") or now_iso()
    meta["updated"] = now_iso()
    return meta


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def read_table(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read a latency table: ``(DataFrame indexed by key, metadata dict)``.

    Raises :class:`TableError` naming the file and the problem when it is missing or malformed.
    A duplicated key keeps its last row (a table is append-only).
    """
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
        df = pd.read_csv(io.StringIO(text), dtype={"key": str, "kind": str, "measured_at": str}, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise TableError(f"latency table {path} is not a valid CSV: {e}") from None
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
    need = ["key", "kind", "cin", "cout", "res", "p50_ms", "n"]
    for c in need:
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
    df = df.drop_duplicates("key", keep="last").set_index("key")
    meta = read_meta(path)
    if not meta:
        parts = path.name.split(".")
        if len(parts) == 3:
            meta = {"device": parts[0], "runtime": parts[1]}
    return df, meta


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------
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
    tool reports none; ``n`` a non-negative whole number."""
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


def format_row(spec_dict: dict, stats, threads: int | None, measured_at: str | None = None) -> str:
    """One CSV line (with newline) for a unit (``BlockSpec.to_dict()``) and its :class:`LatencyStats`,
    written by the csv module (a field holding a comma or a quote is quoted). Impossible stats are a
    :class:`TableError`, so nothing is written."""
    key = str(spec_dict.get("key", ""))
    s = check_stats(stats, f"unit {key}")
    vals = [spec_dict.get(c, 0) for c in SPEC_COLUMNS]
    vals[SPEC_COLUMNS.index("attn")] = int(bool(spec_dict.get("attn", False)))
    vals += [s["p50_ms"], s["p10_ms"], s["p90_ms"], s["mean_ms"], s["std_ms"], s["cv"], int(s["n"]),
             threads, measured_at or now_iso()]
    if not key or any(ch in key for ch in ',"\n\r'):
        raise TableError(f"unit key {key!r} cannot be written to a CSV table")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_fmt(v) for v in vals])
    return buf.getvalue()


class TableWriter(Journal):
    """Appends rows to a table, one flushed (and fsynced) line per finished unit: a
    :class:`~nas.core.journal.Journal` (its lock held while open, a torn last line cut off, the header
    written to a new file and checked in an existing one)."""

    def __init__(self, path: str | Path):
        super().__init__(path, COLUMNS, what="latency table", error=TableError,
                         fix="write to a new file with --out")
        self.open()

    def append(self, spec_dict: dict, stats, threads: int | None, measured_at: str | None = None):
        self.write_line(format_row(spec_dict, stats, threads, measured_at))

    def __enter__(self):
        return self


def scale_rows(path: str | Path, keys: Iterable[str], factor: float) -> int:
    """Multiply the latency columns of the rows of ``keys`` by ``factor`` (an atomic rewrite of the table);
    returns how many rows changed."""
    path, keys, n = Path(path), set(keys), 0
    rows = list(csv.reader(io.StringIO(path.read_text())))
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


def existing_keys(path: str | Path) -> set[str]:
    """Keys already in the table at ``path`` (empty when it does not exist yet)."""
    p = Path(path)
    if not p.exists() or not p.stat().st_size:
        return set()
    df, _ = read_table(p)
    return set(df.index)


def check_compatible(path: str | Path, meta_new: dict, fields: Iterable[str] = IDENTITY_FIELDS) -> None:
    """TableError when an existing table's metadata disagrees with a run that would append to it."""
    old = read_meta(path)
    diffs = [f"{f}: table has {old[f]!r}, this run {meta_new[f]!r}" for f in fields
             if f in old and f in meta_new and old[f] != meta_new[f]]
    if diffs:
        raise TableError(f"{path} was measured with other settings ({'; '.join(diffs)}); "
                         f"write to another table with --out, or remove it to start over")


# ----------------------------------------------------------------------------------------------
# merging
# ----------------------------------------------------------------------------------------------
def table_connection(meta: dict) -> str | None:
    """How the device of a table with metadata ``meta`` is reached (``local``, ``adb``, ...), if known."""
    conn = ((meta.get("device_entry") or {}).get("connection") or {}).get("type")
    if conn is None:
        try:
            conn = get_device(str(meta.get("device"))).connection_type
        except DeviceError:
            return None
    return conn


def merge_tables(paths: Iterable[str | Path], out: str | Path) -> tuple[pd.DataFrame, dict]:
    """Merge tables of one device and runtime into ``out`` (a key measured twice keeps its lowest cv).

    Raises :class:`TableError` when the tables' metadata disagree on device, runtime, precision or threads.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise TableError("nothing to merge: give at least one table")
    frames, metas = [], []
    for p in paths:
        df, meta = read_table(p)
        frames.append(df.reset_index())
        metas.append(meta)
    for f in IDENTITY_FIELDS:
        vals = {json.dumps(m.get(f)) for m in metas if f in m}
        if len(vals) > 1:
            listing = ", ".join(f"{p.name}: {m.get(f)!r}" for p, m in zip(paths, metas))
            raise TableError(f"cannot merge tables measured with different {f} ({listing})")
    local = [(p, m) for p, m in zip(paths, metas) if table_connection(m) == "local"]
    for p, m in local[1:]:                            # rows of two machines never share a table
        diffs = differences(local[0][1].get("host") or {}, m.get("host") or {})
        if diffs:
            raise TableError(f"cannot merge {local[0][0].name} and {p.name}: they were measured on different "
                             f"machines ({'; '.join(diffs)})")
    allrows = pd.concat(frames, ignore_index=True)
    allrows["_cv"] = allrows["cv"].fillna(float("inf"))
    allrows["_order"] = range(len(allrows))
    merged = allrows.sort_values(["_cv", "_order"]).drop_duplicates("key", keep="first").sort_values("_order")
    merged = merged.drop(columns=["_cv", "_order"])
    meta: dict = {}
    for m in metas:                                       # where the tables differ, the first one's values win
        meta = merge_meta(meta, m, keep=list(meta))
    meta["merged_from"] = [str(p) for p in paths]
    meta["updated"] = now_iso()
    meta["rows"] = int(len(merged))
    out = claim_output(out)
    lines = [",".join(COLUMNS) + "\n"]
    for _, r in merged.iterrows():
        st = {c: r[c] for c in ("p50_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "cv", "n")}
        st["n"] = int(st["n"])
        th = r["threads"]
        lines.append(format_row({c: r[c] for c in SPEC_COLUMNS}, st, None if pd.isna(th) else int(th),
                                r["measured_at"]))
    with exclusive(out, "latency table", folder=False):
        atomic_write_text(out, "".join(lines))
        write_meta(out, meta)
    return read_table(out)
