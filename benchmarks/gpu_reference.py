"""A GPU reference table in one run: profile, calibrate and validate on the GPU the device entry names.

    # on the machine with the H200 (torch, pandas, tqdm, filelock and matplotlib are all it needs):
    PYTHONPATH=. python3 benchmarks/gpu_reference.py --budget-s 480
    # the same pipeline on a CPU, small:
    python benchmarks/gpu_reference.py --device local-cpu --batch-device none --space tiny --img-size 64 \\
        --num-classes 10 --n 4 --repeat 2 --calib-random 3 --out-dir /tmp/ref --report-dir /tmp/ref

Stages, each started only while ``--budget-s`` lasts (everything is resumable: run it again and it goes on
where it stopped):

1. the whole space with ``profilers.torch`` on ``--device`` (``h200``: fp16, CUDA graph replay, batch 1),
   in chunks of one interleaved batch, so the budget is checked between chunks;
2. ``nas.calibrate`` on that table (S0/S1/S2/L, ``--calib-random`` networks from its smallest to its largest
   and 8 uniformly random subnets, end to end);
3. ``nas.validate`` on it (``--n`` held-out random subnets end to end, ``--repeat`` of them twice);
4. the same space on ``--batch-device`` (``h200-b64``: batch 64), then its calibration and validation.

It writes the tables with their metadata (GPU name, driver, CUDA, cuDNN and torch versions, mode,
precision, batch) and calibrations into ``--out-dir`` (``latency_tables/``, where shipped tables live), and
into ``--report-dir`` the measured networks, the validation CSVs and plots, and ``gpu_reference.json`` with profiling time and median cv per table, the sum-of-blocks bias against whole
networks (what additivity looks like on that device), calibrated MAPE, and the validation's MAPE,
±5 % / ±10 % shares and Spearman. Nothing is measured on a device other than the one the entry names:
an ``h200`` entry on another GPU, or on a machine without CUDA, stops with the profiler's message.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from nas.core.files import shipping  # noqa: E402
from nas.latency.calibration_run import calibrate  # noqa: E402
from nas.latency.validation import validate  # noqa: E402
from nas.space.spaces import get_space  # noqa: E402
from nas.space.units import probe_units, space_units  # noqa: E402
from profilers import get_profiler  # noqa: E402
from profilers.timing.batch import DEFAULT_BATCH  # noqa: E402
from profilers.devices import get_device  # noqa: E402
from profilers.tables.runs import run_table  # noqa: E402
from profilers.tables.table import LatencyTable, table_path  # noqa: E402

log = logging.getLogger("gpu_reference")


class Budget:
    """Wall-clock seconds left for new stages."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + float(seconds)

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, stage: str, need_s: float = 0.0) -> bool:
        ok = self.left() > need_s
        if not ok:
            log.warning("budget spent: %s not started (run again to go on)", stage)
        return ok


def profile(device: str, runtime: str, space, img_size: int, num_classes: int, out_dir: Path, budget: Budget,
            chunk: int = 2 * DEFAULT_BATCH) -> dict:
    """The device's table of the whole space, ``chunk`` units at a time while the budget lasts."""
    dev = get_device(device)
    prof = get_profiler(runtime)(dev)
    specs = space_units(space, img_size, num_classes)
    out = table_path(dev.name, runtime, out_dir)
    t0, measured = time.perf_counter(), 0
    while budget.allows(f"profiling {dev.name}"):
        res = run_table(prof, specs, out, space_name=space.name, img_size=img_size, num_classes=num_classes,
                        limit=chunk, probe_specs=probe_units(), space=space.to_dict())
        measured += res.measured
        if res.remaining == 0 or res.measured == 0:
            break
    if not out.exists():
        return {"table": str(out), "units": 0, "of": len(specs), "measured_now": 0, "complete": False}
    table = LatencyTable.read(out)
    df, meta = table.rows, table.meta
    have = [s.key for s in specs if s.key in df.index]
    cv = df.loc[have, "cv"].to_numpy(float)
    return {"table": str(out), "units": len(have), "of": len(specs), "measured_now": measured,
            "seconds_now": round(time.perf_counter() - t0, 1), "profiling_seconds": meta.profiling_seconds,
            "median_cv_pct": round(100 * float(np.nanmedian(cv)), 2) if len(cv) else None,
            "p90_cv_pct": round(100 * float(np.nanpercentile(cv, 90)), 2) if len(cv) else None,
            "sum_p50_ms": round(float(df.loc[have, "p50_ms"].sum()), 4),
            "runtime_version": meta.runtime_version, "settings": dict(meta.settings),
            "software": dict(meta.software), "complete": len(have) == len(specs)}


def check(table: str, report_dir: Path, n: int, repeat: int, calib_random: int, budget: Budget) -> dict:
    """Calibration, then validation, of a complete table."""
    out: dict = {}
    if not budget.allows(f"calibrating {table}"):
        return out
    cal = calibrate(table, n_random=calib_random, out_dir=report_dir / "calibrate")
    r = cal.report
    out["calibration"] = {"networks": cal.n, "model": cal.model, "fit": cal.describe(),
                          "sum_of_blocks_mape_pct": round(r["uncalibrated_mape_pct"], 2),
                          "sum_of_blocks_bias_pct": round(r["uncalibrated_bias_pct"], 2),
                          "calibrated_mape_pct": round(r["calibrated_mape_pct"], 2),
                          "loo_mape_pct": {k: round(v, 2) for k, v in r["loo_mape_pct"].items()}}
    if not budget.allows(f"validating {table}"):
        return out
    rep = validate(table, n=n, repeat=repeat, out_dir=report_dir / "validate")
    keep = ("n", "mape_pct", "within_5_pct", "within_10_pct", "spearman", "bias_pct", "ceiling", "plot")
    out["validation"] = {k: rep[k] for k in keep if k in rep}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="h200", help="batch-1 device entry (default h200)")
    ap.add_argument("--batch-device", default="h200-b64", help="larger-batch device entry, or 'none' (default h200-b64)")
    ap.add_argument("--runtime", default="torch")
    ap.add_argument("--space", default="efficientformerv2")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--n", type=int, default=50, help="validation subnets (default 50)")
    ap.add_argument("--repeat", type=int, default=10, help="of them measured twice (default 10)")
    ap.add_argument("--calib-random", type=int, default=8,
                    help="networks from the smallest to the largest in the calibration, besides S0/S1/S2/L and 8 "
                         "uniformly random subnets (default 8)")
    ap.add_argument("--budget-s", type=float, default=480.0, help="start no stage after this many seconds")
    ap.add_argument("--chunk", type=int, default=2 * DEFAULT_BATCH,
                    help="units profiled between two looks at the budget (default %(default)s)")
    ap.add_argument("--out-dir", default="latency_tables", help="where the tables go (default %(default)s)")
    ap.add_argument("--report-dir", default="benchmarks/results/gpu_reference",
                    help="where the networks, validations and summary go (default %(default)s)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    budget, out_dir, report_dir = Budget(args.budget_s), Path(args.out_dir), Path(args.report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    space = get_space(args.space)
    summary_path = report_dir / "gpu_reference.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    devices = [args.device] + ([args.batch_device] if args.batch_device not in (None, "", "none") else [])
    for device in devices:
        entry = summary.setdefault(device, {})
        entry["profile"] = profile(device, args.runtime, space, args.img_size, args.num_classes, out_dir, budget,
                                   args.chunk)
        summary_path.write_text(json.dumps(summary, indent=1, default=str))
        if entry["profile"]["complete"]:
            entry.update(check(entry["profile"]["table"], report_dir, args.n, args.repeat, args.calib_random, budget))
        summary_path.write_text(json.dumps(summary, indent=1, default=str))
    print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    lines = ["| device | units | profiling (s) | median cv | sum of blocks vs networks | calibrated MAPE | "
             "validation MAPE | ±5 % | ±10 % | Spearman |", "|---|---|---|---|---|---|---|---|---|---|"]
    for dev, e in summary.items():
        p, c, v = e.get("profile", {}), e.get("calibration", {}), e.get("validation", {})

        def f(d, k, fmt="{:.2f}", unit=""):
            return (fmt.format(d[k]) + unit) if d.get(k) is not None else "-"
        lines.append(f"| {dev} | {p.get('units')}/{p.get('of')} | {f(p, 'profiling_seconds', '{:.0f}')} | "
                     f"{f(p, 'median_cv_pct', unit=' %')} | MAPE {f(c, 'sum_of_blocks_mape_pct', unit=' %')}, bias "
                     f"{f(c, 'sum_of_blocks_bias_pct', '{:+.2f}', ' %')} | {f(c, 'calibrated_mape_pct', unit=' %')} | "
                     f"{f(v, 'mape_pct', unit=' %')} | {f(v, 'within_5_pct', '{:.0f}', ' %')} | "
                     f"{f(v, 'within_10_pct', '{:.0f}', ' %')} | {f(v, 'spearman', '{:.3f}')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    with shipping():                       # the GPU reference tables and calibrations it writes are shipped
        raise SystemExit(main())
