"""Fit the predictor's calibration on whole networks measured end to end, and store it with the table.

    python -m nas.calibrate --target local-cpu            # S0, S1, S2, L + 12 random subnets

The networks are measured with the table's own runtime and protocol (resumable: measurements are kept
in ``runs/calibrate/``), the linear map from the sum of block latencies to the measured latency is
fitted, its residuals are printed, and it is written beside the table as ``*.calibration.json``, where
:meth:`nas.predictor.LatencyPredictor.from_table` picks it up.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .measure import make_profiler, measure_archs, network_cli
from .predictor import Calibration, LatencyPredictor, MissingLatencyError, calibration_path, resolve_table

VARIANTS = ("s0", "s1", "s2", "l")


def calibrate(target: str, runtime: str | None = None, n_random: int = 12, seed: int = 0,
              threads: int | None = None, out_dir: str | Path = "runs/calibrate", root=None) -> Calibration:
    path = resolve_table(target, runtime, root)
    pred = LatencyPredictor.from_table(path, calibrated=False)
    space = pred.space
    archs = [space.canonical(v) for v in VARIANTS if space.fits(v)]
    archs += [space.sample(seed * 100_003 + i) for i in range(n_random)]
    missing = pred.missing_keys(archs)
    if missing:
        raise MissingLatencyError(missing, pred._hint())
    device, rt = pred.meta.get("device", target), pred.meta.get("runtime", runtime)
    profiler = make_profiler(device, rt, threads)
    out_csv = Path(out_dir) / f"{Path(path).name.removesuffix('.csv')}.networks.csv"
    rows = measure_archs(archs, profiler, out_csv, pred.img_size, pred.num_classes, desc="calibration networks")
    sums, units = zip(*(pred.block_sum(a) for a in archs))
    cal = Calibration.fit(sums, units, rows["p50_ms"].to_numpy(), archs=[a.to_dict() for a in archs])
    calibration_path(path).write_text(json.dumps(cal.to_dict(), indent=1))
    return cal


def main(argv=None) -> int:
    args = network_cli("python -m nas.calibrate", __doc__, 12, "random subnets besides S0/S1/S2/L (default 12)",
                       0, "runs/calibrate").parse_args(argv)
    try:
        cal = calibrate(args.target, args.runtime, args.n, args.seed, args.threads, args.out_dir)
    except (MissingLatencyError, ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    r = cal.report
    a, b, c = cal.coef
    print(f"calibration on {cal.n} networks: measured_ms = {a:.4f} * block_sum + {b:+.4f} * n_units {c:+.4f}")
    print(f"sum of blocks alone: MAPE {r['uncalibrated_mape_pct']:.2f}% (bias {r['uncalibrated_bias_pct']:+.2f}%)")
    print(f"calibrated fit:      MAPE {r['calibrated_mape_pct']:.2f}% (max {r['calibrated_max_abs_err_pct']:.2f}%)")
    print("residuals (ms): " + " ".join(f"{x:+.3f}" for x in r["residuals_ms"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
