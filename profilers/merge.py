"""Merge latency tables (e.g. the shards of one run) into one.

    python -m profilers.merge latency_tables/shards/pixel6.tflite.shard*of4.csv -o latency_tables/pixel6.tflite.csv

Tables whose metadata disagree on device, runtime, precision or threads are rejected; a unit measured
in several tables keeps the row with the lowest cv.
"""
from __future__ import annotations

import logging

from nas.core.cli import ArgumentParser, add_common_args, command

from profilers.tables.table import merge_tables

__all__ = ["main"]

log = logging.getLogger("profilers.merge")           # by name: run as python -m, __name__ is "__main__"


@command
def main(argv=None) -> int:
    ap = ArgumentParser(prog="python -m profilers.merge", description=__doc__.split("\n\n")[0])
    ap.add_argument("tables", nargs="+", help="tables to merge (CSV with .meta.json sidecars)")
    ap.add_argument("-o", "--out", required=True, help="merged table path")
    add_common_args(ap, progress=False)
    args = ap.parse_args(argv)
    merged = merge_tables(args.tables, args.out)
    log.info("%s: %d units from %d table(s) (%s/%s)", args.out, len(merged.rows), len(args.tables),
             merged.meta.device.name, merged.meta.runtime)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
