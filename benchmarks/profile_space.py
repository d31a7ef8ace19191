"""How long profiling a whole search space takes per runtime, and how stable the entries are.

    python benchmarks/profile_space.py                 # fills this host's local-cpu tables (user cache)
    python benchmarks/profile_space.py --out-dir build/profile_space --fresh   # re-measure from scratch

For each runtime it runs the same resumable table run as ``python -m profilers.<runtime>`` (export and
measure every missing unit in interleaved batches with the probe, rows flushed per batch) and prints the wall time of this run, the table's
recorded total profiling time, and the coefficient of variation of the entries (median, p90, max).
Targets on a 2-core CPU at 1 thread: <= 10 minutes per runtime, median cv <= 3%. If the table was
already complete nothing is measured and the figures recorded in its metadata are printed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nas.core.files import shipping  # noqa: E402
from nas.space.units import probe_units, space_units  # noqa: E402
from nas.space.spaces import get_space  # noqa: E402
from profilers import get_profiler  # noqa: E402
from profilers.plugin.cli import parse_cpus  # noqa: E402
from profilers.devices import get_device  # noqa: E402
from profilers.tables.runs import run_table  # noqa: E402
from profilers.tables.table import LatencyTable, meta_path, table_path  # noqa: E402

TARGET_S, TARGET_CV = 600.0, 0.03


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="local-cpu")
    ap.add_argument("--runtimes", nargs="+", default=["onnxruntime", "tflite"])
    ap.add_argument("--space", default="efficientformerv2")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--out-dir", default=None, help="table folder (default: latency_tables/)")
    ap.add_argument("--fresh", action="store_true", help="delete the tables first and measure everything")
    ap.add_argument("--cpus", default=None, help="cores to pin to (default: the device's; 'none' to not pin)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    dev = get_device(args.device)
    cpus = parse_cpus(args.cpus, dev)
    cpus = list(dev.cpus) if cpus == "device" and dev.cpus is not None else (None if cpus == "device" else cpus)
    torch.set_num_threads(dev.threads)
    space = get_space(args.space)
    specs = space_units(space, args.img_size, args.num_classes)
    print(f"space {space.name!r} at {args.img_size} px, {args.num_classes} classes: {len(specs)} units; "
          f"device {dev.name}, {dev.threads} thread(s), pinned to cores {cpus if cpus else 'not pinned'}")
    rows = []
    for rt in args.runtimes:
        out = table_path(dev.name, rt, args.out_dir)
        if args.fresh:
            for p in (out, meta_path(out)):
                p.unlink(missing_ok=True)
        prof = get_profiler(rt)(dev, cpus=cpus)
        t0 = time.perf_counter()
        res = run_table(prof, specs, out, space_name=space.name, img_size=args.img_size,
                        num_classes=args.num_classes, progress=not args.no_progress, probe_specs=probe_units(),
                        space=space.to_dict())
        wall = time.perf_counter() - t0
        table = LatencyTable.read(out)
        df, meta = table.rows, table.meta
        df = df.loc[[s.key for s in specs if s.key in df.index]]
        cv = df["cv"].to_numpy(float)
        rows.append((rt, prof.runtime_version(), len(df), res.measured, wall, meta.profiling_seconds,
                     float(np.nanmedian(cv)), float(np.nanpercentile(cv, 90)), float(np.nanmax(cv)),
                     float(df["p50_ms"].sum()), str(out)))
    print()
    print("| runtime | version | units | measured now | this run (s) | table total (s) | median cv | p90 cv | "
          "max cv | sum of p50 (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rt, ver, n, m, wall, tot, med, p90, mx, s50, _ in rows:
        print(f"| {rt} | {ver} | {n} | {m} | {wall:.1f} | {tot} | {100 * med:.2f}% | {100 * p90:.2f}% | "
              f"{100 * mx:.2f}% | {s50:.2f} |")
    print()
    ok = True
    for rt, ver, n, m, wall, tot, med, *_rest, path in rows:
        t = tot if m == 0 and tot else wall
        ok &= (t <= TARGET_S) and (med <= TARGET_CV) and n == len(specs)
        print(f"{rt}: {path}: {n}/{len(specs)} units; profiling time {t:.0f} s (target <= {TARGET_S:.0f} s"
              f"{', recorded in metadata' if m == 0 else ''}); median cv {100 * med:.2f}% (target <= "
              f"{100 * TARGET_CV:.0f}%)")
    return 0 if ok else 1


if __name__ == "__main__":
    with shipping():                       # it (re)makes the shipped reference tables
        raise SystemExit(main())
