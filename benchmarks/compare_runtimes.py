"""Which runtime is faster, per unit kind: two tables of the same device compared unit by unit.

    python benchmarks/compare_runtimes.py                          # local-cpu: torch against onnxruntime
    python benchmarks/compare_runtimes.py --device local-cpu --runtimes tflite onnxruntime

For every unit both tables hold, the ratio of the first runtime's median latency to the second's; per
kind (stem, downsample, attention, FFN, head): the number of units, the summed medians of each runtime,
the median, smallest and largest ratio, and the ratio of the sums. Reads the tables only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nas.latency.tables import resolve_table  # noqa: E402
from profilers.table import read_table  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="local-cpu")
    ap.add_argument("--runtimes", nargs=2, default=["torch", "onnxruntime"])
    args = ap.parse_args(argv)
    a_name, b_name = args.runtimes
    a, _ = read_table(resolve_table(args.device, a_name))
    b, _ = read_table(resolve_table(args.device, b_name))
    j = a[["p50_ms"]].join(b[["p50_ms"]].rename(columns={"p50_ms": "b_ms"}), how="inner")
    j["kind"] = [str(k).split("_")[0] for k in j.index]
    j["ratio"] = j["p50_ms"] / j["b_ms"]
    g = j.groupby("kind").agg(units=("ratio", "size"), a_ms=("p50_ms", "sum"), b_ms=("b_ms", "sum"),
                              median=("ratio", "median"), lo=("ratio", "min"), hi=("ratio", "max"))
    print(f"{args.device}: {a_name} / {b_name}, {len(j)} units both tables hold (ratio > 1: {b_name} faster)\n")
    print(f"| kind | units | sum {a_name} (ms) | sum {b_name} (ms) | median ratio | min | max | ratio of sums |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, r in g.iterrows():
        print(f"| {kind} | {int(r.units)} | {r.a_ms:.2f} | {r.b_ms:.2f} | {r['median']:.2f} | {r.lo:.2f} | {r.hi:.2f} | "
              f"{r.a_ms / r.b_ms:.2f} |")
    print(f"| all | {len(j)} | {j.p50_ms.sum():.2f} | {j.b_ms.sum():.2f} | {j.ratio.median():.2f} | "
          f"{j.ratio.min():.2f} | {j.ratio.max():.2f} | {j.p50_ms.sum() / j.b_ms.sum():.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
