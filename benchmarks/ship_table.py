"""Ship a table measured here as a reference device's: copy it, its metadata and its calibration.

    python benchmarks/ship_table.py build/ref/local-cpu.torch.csv --as ref-epyc --note "..."

A table of ``local-cpu`` describes the machine it was measured on; shipped under a reference device
(``connection: reference`` in ``profilers/devices.json``, e.g. ``ref-epyc``) it serves examples, offline
use and tests anywhere, labelled as another machine's latencies. The rows are copied unchanged; the
metadata gets the reference device's name and entry, ``measured_as`` (the device it was measured as), and
``--note``; the calibration beside the table, when there is one, is copied beside the shipped table.
Writes ``latency_tables/{device}.{runtime}.{csv,meta.json,calibration.json}``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nas.latency.calibration import calibration_path  # noqa: E402
from profilers.devices import get_device  # noqa: E402
from nas.core.files import check_writable, shipping  # noqa: E402
from profilers.tables.meta import TableMeta  # noqa: E402
from profilers.tables.table import TABLES_DIR, meta_path  # noqa: E402


def ship(table: Path, device: str, note: str, out_dir: Path = TABLES_DIR) -> Path:
    meta = TableMeta.read(table)
    if meta is None:
        raise SystemExit(f"{table} has no metadata: nothing says what it measures")
    runtime = meta.runtime
    dev = get_device(device)
    if dev.connection_type != "reference":
        raise SystemExit(f"{device!r} is not a reference device (connection {dev.connection_type!r})")
    if runtime not in dev.runtimes:
        raise SystemExit(f"{device!r} lists runtimes {list(dev.runtimes)}; add {runtime!r} to its entry first")
    out = out_dir / f"{device}.{runtime}.csv"
    check_writable(out)
    shutil.copyfile(table, out)
    meta.replace(device=dev, extra={**dict(meta.extra), "measured_as": meta.device.name, "note": note}).write(out)
    cal = calibration_path(table)
    if cal.exists():
        shutil.copyfile(cal, calibration_path(out))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("table", type=Path)
    ap.add_argument("--as", dest="device", required=True, help="the reference device to ship it as")
    ap.add_argument("--note", required=True, help="what a reader of the shipped table must know")
    ap.add_argument("--out-dir", type=Path, default=TABLES_DIR)
    args = ap.parse_args(argv)
    with shipping():                               # the one writer of the shipped (read-only) tables
        out = ship(args.table, args.device, args.note, args.out_dir)
    print(f"{out}, {meta_path(out).name}" + (f", {calibration_path(out).name}" if calibration_path(out).exists() else ""))
    shipped = TableMeta.read(out)
    print(json.dumps({"device": shipped.device.name, "measured_as": shipped.extra.get("measured_as"),
                      "runtime": shipped.runtime, "runtime_version": shipped.runtime_version, "rows": shipped.rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
