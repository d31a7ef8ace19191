"""Check the latency predictor against end-to-end measurements of random subnets.

    python -m nas.validate --target local-cpu --n 100

Samples ``--n`` random subnets of the table's space (none of them used for calibration), measures each
end to end on the table's runtime with the profiler's protocol (resumable), predicts them, and prints
MAPE, the share within ±5 % and ±10 %, and Spearman's rank correlation; writes the pairs as CSV and a
predicted-vs-measured plot.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .measure import fidelity, make_profiler, measure_archs, network_cli
from .predictor import LatencyPredictor, MissingLatencyError, resolve_table

VALIDATION_SEED = 10_000        # disjoint from the calibration seeds


def validate(target: str, runtime: str | None = None, n: int = 100, seed: int = VALIDATION_SEED,
             threads: int | None = None, out_dir: str | Path = "runs/validate", root=None,
             predictor: LatencyPredictor | None = None) -> dict:
    path = resolve_table(target, runtime, root)
    pred = predictor or LatencyPredictor.from_table(path)
    space = pred.space
    held_out = set()
    if pred.calibration:
        held_out = {json.dumps(a) for a in pred.calibration.archs}
    archs, i = [], 0
    while len(archs) < n:
        a = space.sample(seed * 100_003 + i)
        i += 1
        if json.dumps(a.to_dict()) not in held_out:
            archs.append(a)
    predicted = pred.predict_many(archs)            # raises on missing keys before any measuring
    device, rt = pred.meta.get("device", target), pred.meta.get("runtime", runtime)
    profiler = make_profiler(device, rt, threads)
    stem = Path(path).name.removesuffix(".csv")
    out = Path(out_dir)
    rows = measure_archs(archs, profiler, out / f"{stem}.networks.csv", pred.img_size, pred.num_classes,
                         desc="validation networks")
    measured = rows["p50_ms"].to_numpy()
    rows["predicted_ms"] = predicted
    rows.to_csv(out / f"{stem}.validation.csv", index=False)
    report = fidelity(predicted, measured)
    report["calibrated"] = pred.calibration is not None
    report["plot"] = str(plot(predicted, measured, out / f"{stem}.validation.png", report, stem))
    return report


def plot(predicted, measured, path: Path, report: dict, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.2, 5))
    lo, hi = float(min(np.min(predicted), np.min(measured))) * 0.9, float(max(np.max(predicted), np.max(measured))) * 1.1
    xs = np.linspace(lo, hi, 10)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="tab:green", alpha=0.12, label="±10 %")
    ax.fill_between(xs, xs * 0.95, xs * 1.05, color="tab:green", alpha=0.2, label="±5 %")
    ax.plot(xs, xs, "k--", lw=0.8)
    ax.scatter(measured, predicted, s=12, color="tab:blue", label=f"{report['n']} random subnets")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{title}\nMAPE {report['mape_pct']:.2f}%  ±5%: {report['within_5_pct']:.0f}%  "
                 f"±10%: {report['within_10_pct']:.0f}%  ρ={report['spearman']:.3f}", fontsize=9)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    args = network_cli("python -m nas.validate", __doc__, 100, "random subnets to measure (default 100)",
                       VALIDATION_SEED, "runs/validate").parse_args(argv)
    try:
        r = validate(args.target, args.runtime, args.n, args.seed, args.threads, args.out_dir)
    except (MissingLatencyError, ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{r['n']} held-out random subnets ({'calibrated' if r['calibrated'] else 'uncalibrated: run nas.calibrate'})")
    print(f"MAPE {r['mape_pct']:.2f}%   within ±5%: {r['within_5_pct']:.1f}%   within ±10%: {r['within_10_pct']:.1f}%   "
          f"Spearman {r['spearman']:.4f}   bias {r['bias_pct']:+.2f}%")
    print(f"plot: {r['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
