"""Coverage of a latency table: which units of a search space it lacks.

    python -m profilers.coverage --table latency_tables/ref-epyc.onnxruntime.csv [--space NAME --img-size N]

Space, resolution and classes default to what the table's metadata records. Exit status 1 when units
are missing (so scripts can test it), 2 on a missing or malformed table.
"""
from __future__ import annotations

from nas.core.cli import ArgumentParser, add_common_args, command, positive_int

from profilers.tables.table import coverage_report

__all__ = ["main"]


@command
def main(argv=None) -> int:
    ap = ArgumentParser(prog="python -m profilers.coverage", description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", required=True, help="latency table CSV")
    ap.add_argument("--space", default=None, help="search space (default: the table's)")
    ap.add_argument("--img-size", type=positive_int, default=None, help="resolution (default: the table's)")
    ap.add_argument("--num-classes", type=positive_int, default=None, help="classes (default: the table's)")
    add_common_args(ap, progress=False)
    args = ap.parse_args(argv)
    text, missing = coverage_report(args.table, args.space, args.img_size, args.num_classes)
    print(text)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
