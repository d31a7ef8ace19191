"""Which runtime is faster, per unit kind: the same units on two runtimes of one device, compared.

    python benchmarks/compare_runtimes.py                          # local-cpu tables: torch against onnxruntime
    python benchmarks/compare_runtimes.py --device local-cpu --runtimes tflite onnxruntime
    python benchmarks/compare_runtimes.py --measure                # both runtimes timed side by side, now

For every unit, the ratio of the first runtime's median latency to the second's; per kind (stem,
downsample, attention, FFN, head): the number of units, the summed medians of each runtime, the median,
smallest and largest ratio, and the ratio of the sums. By default it reads the device's two tables.
Two tables measured at different times on a shared host also differ by how fast the host was then (ONNX
Runtime's table of the default space summed to 304 ms in one run here and 175 ms in another, a day
apart), so ``--measure`` times the space's units on both runtimes in the same interleaved batches
instead (``--batch`` units per batch, each on both runtimes, with the protocol's common mode): every
ratio then compares two measurements taken in the same seconds. ``--csv`` keeps them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tempfile  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from nas.space.modules import build_unit  # noqa: E402
from nas.space.spaces import get_space  # noqa: E402
from nas.space.units import space_units  # noqa: E402
from profilers import get_profiler  # noqa: E402
from profilers.devices import get_device  # noqa: E402
from profilers.timing.host import pinned  # noqa: E402
from profilers.timing.protocol import Protocol  # noqa: E402
from profilers.tables.table import LatencyTable  # noqa: E402


def measure_side_by_side(device: str, runtimes: list[str], space: str, batch: int) -> pd.DataFrame:
    """Every unit of ``space`` on both runtimes, ``batch`` units (x 2 runtimes) per interleaved batch;
    a frame indexed by unit key with ``p50_ms`` (first runtime), ``b_ms`` (second) and their cv."""
    dev = get_device(device)
    profs = [get_profiler(rt)(dev) for rt in runtimes]
    specs = space_units(get_space(space))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, pinned(dev.cpus):
        torch.set_num_threads(dev.threads)
        for i in tqdm(range(0, len(specs), batch), desc="batches", unit="batch"):
            fns = {}
            for s in specs[i:i + batch]:
                for j, prof in enumerate(profs):
                    torch.manual_seed(0)
                    m, shape = build_unit(s)
                    path = prof.export(m.eval(), shape, Path(tmp) / f"{s.key}.{j}{prof.suffix}")
                    loaded = prof.load(path, shape)
                    if loaded is None:
                        raise SystemExit(f"{prof.name} times in an external tool; --measure needs in-process runners")
                    fns[(s.key, j)] = loaded.run
            st = Protocol().measure_many(fns).stats
            rows += [{"key": s.key, "p50_ms": st[(s.key, 0)].p50_ms, "b_ms": st[(s.key, 1)].p50_ms,
                      "cv_a": st[(s.key, 0)].cv, "cv_b": st[(s.key, 1)].cv} for s in specs[i:i + batch]]
    return pd.DataFrame(rows).set_index("key")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="local-cpu")
    ap.add_argument("--runtimes", nargs=2, default=["torch", "onnxruntime"])
    ap.add_argument("--measure", action="store_true", help="time both runtimes side by side instead of reading tables")
    ap.add_argument("--space", default="efficientformerv2", help="--measure: the space whose units are timed")
    ap.add_argument("--batch", type=int, default=12, help="--measure: units per interleaved batch (default 12)")
    ap.add_argument("--csv", default=None, help="write the per-unit figures to this CSV")
    args = ap.parse_args(argv)
    a_name, b_name = args.runtimes
    if args.measure:
        j = measure_side_by_side(args.device, args.runtimes, args.space, args.batch)
    else:
        a = LatencyTable.read(args.device, a_name).rows
        b = LatencyTable.read(args.device, b_name).rows
        j = a[["p50_ms"]].join(b[["p50_ms"]].rename(columns={"p50_ms": "b_ms"}), how="inner")
    j["kind"] = [str(k).split("_")[0] for k in j.index]
    j["ratio"] = j["p50_ms"] / j["b_ms"]
    g = j.groupby("kind").agg(units=("ratio", "size"), a_ms=("p50_ms", "sum"), b_ms=("b_ms", "sum"),
                              median=("ratio", "median"), lo=("ratio", "min"), hi=("ratio", "max"))
    if args.csv:
        j.to_csv(args.csv)
    how = "timed side by side" if args.measure else "both tables hold"
    print(f"{args.device}: {a_name} / {b_name}, {len(j)} units {how} (ratio > 1: {b_name} faster)\n")
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
