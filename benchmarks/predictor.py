"""Latency-predictor speed and fidelity, measured in one run.

    python benchmarks/predictor.py                     # speed + fidelity on local-cpu / ONNX Runtime
    python benchmarks/predictor.py --skip-fidelity     # speed only (no measuring)

Fidelity: 100 held-out random subnets of the default space measured end to end on ONNX Runtime,
CPU, 1 thread (pinned to core 0 when taskset is available), against the calibrated predictor.
Targets: >= 99 % within ±10 %, >= 90 % within ±5 %, Spearman >= 0.98; >= 1,000,000 predictions/s
vectorised and >= 20,000/s one at a time. Anchors: nn-Meter 99.0 % within ±10 % (Pixel4 CPU),
LitePred 79-98 % within ±5 %.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas.predictor import LatencyPredictor  # noqa: E402
from nas.validate import validate  # noqa: E402


def speed(pred: LatencyPredictor):
    space = pred.space
    archs = [space.sample(i) for i in range(20_000)]
    t = time.perf_counter()
    for a in archs:
        pred.predict(a)
    single = len(archs) / (time.perf_counter() - t)
    codes = space.sample_encoded(1_000_000, seed=0)
    pred.predict_many(codes[:1000])
    t = time.perf_counter()
    pred.predict_many(codes)
    vec = len(codes) / (time.perf_counter() - t)
    t = time.perf_counter()
    pred.predict_many(archs)
    objs = len(archs) / (time.perf_counter() - t)
    print(f"single predict():                 {single:12,.0f} /s   (target >= 20,000/s: {single / 20_000:.1f}x)")
    print(f"predict_many(encoded, 1M rows):   {vec:12,.0f} /s   (target >= 1,000,000/s: {vec / 1e6:.2f}x)")
    print(f"predict_many(list of Arch):       {objs:12,.0f} /s   (includes encoding the objects)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="local-cpu")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--skip-fidelity", action="store_true")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity") and not args.skip_fidelity:
        os.sched_setaffinity(0, {0})
    pred = LatencyPredictor.from_table(args.target, args.runtime)
    print(pred)
    speed(pred)
    if args.skip_fidelity:
        return
    r = validate(args.target, args.runtime, n=args.n, predictor=pred)
    print(f"fidelity on {r['n']} held-out random subnets ({'calibrated' if r['calibrated'] else 'uncalibrated'}):")
    print(f"  within ±10%: {r['within_10_pct']:.1f}%  (target >= 99%; nn-Meter 99.0%)")
    print(f"  within ±5%:  {r['within_5_pct']:.1f}%  (target >= 90%; LitePred 79-98%)")
    print(f"  MAPE {r['mape_pct']:.2f}%   Spearman {r['spearman']:.4f} (target >= 0.98)   bias {r['bias_pct']:+.2f}%")
    print(f"  plot: {r['plot']}")


if __name__ == "__main__":
    main()
