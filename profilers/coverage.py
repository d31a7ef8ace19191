"""Coverage of a latency table: which units of a search space it lacks.

    python -m profilers.coverage --table latency_tables/ref-epyc.onnxruntime.csv [--space NAME --img-size N]

Space, resolution and classes default to what the table's metadata records. Exit status 1 when units
are missing (so scripts can test it), 2 on a missing or malformed table.
"""
from __future__ import annotations

from pathlib import Path

from nas.core.cli import ArgumentParser, add_common_args, command, positive_int
from nas.space.spaces import get_space
from nas.space.units import space_units

from profilers.table import read_table

__all__ = ["missing_keys", "coverage_report", "main"]


def missing_keys(table: str | Path, space=None, img_size: int | None = None,
                 num_classes: int | None = None) -> tuple[list[str], int, dict]:
    """``(missing keys, number of units in the space, resolved settings)`` for table ``table``."""
    df, meta = read_table(table)
    sp = get_space(space or meta.get("space") or "efficientformerv2")
    img = int(img_size or meta.get("img_size") or 224)
    nc = int(num_classes or meta.get("num_classes") or 1000)
    units = space_units(sp, img, nc)
    have = set(df.index)
    return [u.key for u in units if u.key not in have], len(units), {"space": sp.name, "img_size": img,
                                                                      "num_classes": nc, "meta": meta}


def coverage_report(table: str | Path, space=None, img_size: int | None = None,
                    num_classes: int | None = None) -> tuple[str, list[str]]:
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
        dev, rt = s["meta"].get("device"), s["meta"].get("runtime")
        lines.append(f"missing {len(missing)}:")
        lines += [f"  {k}" for k in missing]
        if dev and rt:
            lines.append(f"measure them with: python -m profilers.{rt} --device {dev} --space {s['space']} "
                         f"--img-size {s['img_size']} --num-classes {s['num_classes']} --out {table}")
    return "\n".join(lines), missing


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
