"""Latency trust on this host, measured in one run: first use, the host factor, the predictor, speed.

    python benchmarks/predictor.py                      # everything (about 30 minutes on 2 cores)
    python benchmarks/predictor.py --skip-first-use     # use this host's existing local-cpu table
    python benchmarks/predictor.py --skip-fidelity      # import time and prediction speed only (no measuring)

1. **First use** (unless --skip-first-use): in a fresh cache folder, ``python -m nas.search`` (one step of the
   paper's loop) as a new user would run it, against an already trained supernet (supernet training is
   excluded: it is given ``--supernet``, or a 2-step throw-away supernet of the default space is trained first
   and not timed). The wall time until the search prints its first step includes profiling this host's table,
   calibrating it (with its reference networks) and checking its probe. Target: <= 6 minutes on 2 cores.
2. **The predictor, minutes later** (``nas.validate``), at least ``--wait`` (5) minutes after the calibration:
   this host's factor from the reference networks, then 100 held-out random subnets measured end to end on
   ONNX Runtime (1 thread, core 0), predicted raw and with the factor, and the first 20 measured again (the
   repeatability ceiling, raw and after removing one global factor). Target: with the factor, within 3 points
   of the ceiling at ±10 %. Then the space's smallest network, S0 and its largest, measured end to end:
   target, the smallest within ±10 % (with the factor).
3. **Import and speed**: ``from nas.latency import LatencyPredictor`` in a fresh interpreter (median of 3;
   target < 0.5 s, and no torch), ``predict_many`` on 1,000,000 encoded architectures and ``predict`` on
   20,000 one at a time, each the median of 5 repeats, on one core (this process pins itself to the last
   core for them). Targets: >= 10,000,000/s vectorised, >= 500,000/s one at a time.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.latency.calibration import calibration_path  # noqa: E402
from nas.latency.predictor import LatencyPredictor  # noqa: E402
from nas.latency.validation import format_report, validate  # noqa: E402


def _rate(fn, n: int, repeats: int = 5) -> float:
    """Items per second of ``fn()`` (which handles ``n`` items): the median of ``repeats`` timed runs."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n / statistics.median(times)


def import_time() -> tuple[float, bool]:
    """Seconds to import the predictor in a fresh interpreter (median of 3), and whether torch came with it."""
    code = ("import sys, time; t = time.perf_counter(); from nas.latency import LatencyPredictor; "
            "print(time.perf_counter() - t, 'torch' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
            .stdout.split() for _ in range(3)]
    return statistics.median(float(r[0]) for r in runs), any(r[1] == "True" for r in runs)


def speed(pred: LatencyPredictor):
    secs, torch_too = import_time()
    print(f"import nas.latency:               {secs:12.3f} s    (target < 0.5 s; torch imported: {torch_too})")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cores:
        os.sched_setaffinity(0, cores[-1:])
    space = pred.space
    codes = space.sample_encoded(1_000_000, seed=0)
    archs = [space.sample(i) for i in range(20_000)]
    vec = _rate(lambda: pred.predict_many(codes), len(codes))
    single = _rate(lambda: [pred.predict(a) for a in archs], len(archs))
    print(f"predict_many(encoded, 1M rows):   {vec:12,.0f} /s   (target >= 10,000,000/s: {vec / 1e7:.2f}x)")
    print(f"single predict():                 {single:12,.0f} /s   (target >= 500,000/s: {single / 5e5:.2f}x)")
    print(f"(each the median of 5 repeats, on core {cores[-1] if cores else '?'} alone)")
    if cores:
        os.sched_setaffinity(0, cores)


def first_use(supernet: str | None, cache: Path) -> float:
    """Seconds from a fresh cache to the search's first step (profiling and calibration included)."""
    env = {**os.environ, "EFFV2_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    env.pop("EFFV2_TABLES", None)
    if supernet is None:
        supernet = str(cache / "supernet")
        print("training a 2-step throw-away supernet of the default space (not timed) ...", flush=True)
        subprocess.run([sys.executable, "-m", "nas.train_supernet", "--steps", "2", "--eval-every", "0",
                        "--no-plot", "--no-progress", "--out", supernet, "--batch-size", "8"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
    cmd = [sys.executable, "-m", "nas.search", "--supernet", supernet, "--max-steps", "1", "--no-export",
           "--no-measure", "--final-heldout", "0", "--out-dir", str(cache / "search"), "--no-progress"]
    print("$ EFFV2_CACHE=<fresh> " + " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = None
    for line in p.stdout:
        if re.match(r"(Measured|calibration on|This host|Calibrating|leave-one-out|calibrated fit|reference networks|"
                    r"Host speed|step\s+0)", line):
            print(f"  [{time.perf_counter() - t0:6.1f} s] {line.rstrip()}", flush=True)
        if first is None and re.match(r"step\s+0\b", line):
            first = time.perf_counter() - t0
    p.wait()
    if p.returncode != 0 or first is None:
        raise SystemExit(f"the search failed (exit {p.returncode})")
    return first


def ends(pred: LatencyPredictor, target: str, out_dir: str, factor: float) -> None:
    """The space's smallest network, S0 and its largest, measured end to end and predicted."""
    from nas.latency.networks import measure_archs, table_key, table_profiler
    from profilers.tables.table import LatencyTable
    space = pred.space
    named = [("smallest", space.min_arch())] + ([("S0", space.canonical("s0"))] if space.fits("s0") else []) \
        + [("largest", space.max_arch())]
    table = LatencyTable.read(target)
    rows = measure_archs([a for _, a in named], table_profiler(table), out_dir, "ends", pred.img_size,
                         pred.num_classes, desc="smallest, S0, largest", progress=False,
                         table=table_key(table))        # keyed by the table: a fresh table measures them afresh
    for (name, arch), ms in zip(named, rows["p50_ms"]):
        p = pred.predict(arch)
        print(f"{name:9s} measured {ms:8.3f} ms   predicted {p:8.3f} ms ({100 * (p / ms - 1):+6.1f} %), with the "
              f"host factor {p * factor:8.3f} ms ({100 * (p * factor / ms - 1):+6.1f} %)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="local-cpu")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--wait", type=float, default=5.0, help="minutes between the calibration and the validation")
    ap.add_argument("--supernet", help="a trained supernet for the first-use timing (default: a throw-away one)")
    ap.add_argument("--skip-first-use", action="store_true")
    ap.add_argument("--skip-fidelity", action="store_true")
    ap.add_argument("--out-dir", default="runs/benchmark-predictor")
    args = ap.parse_args()
    if not args.skip_first_use:
        cache = Path(tempfile.mkdtemp(prefix="effv2-first-use-"))
        secs = first_use(args.supernet, cache)
        print(f"first use: fresh cache to the first search step in {secs:.0f} s ({secs / 60:.1f} min; target <= 6 min,"
              f" supernet training excluded)\n", flush=True)
        os.environ["EFFV2_CACHE"] = str(cache)           # validate the table that first use just made
    pred = LatencyPredictor.from_table(args.target)
    print(pred)
    speed(pred)
    if args.skip_fidelity:
        return
    cal = calibration_path(pred.source)
    wait = cal.stat().st_mtime + args.wait * 60 - time.time()
    if wait > 0:
        print(f"waiting {wait / 60:.1f} min: the validation starts {args.wait:g} min after the calibration", flush=True)
        time.sleep(wait)
    print(f"validation starts {(time.time() - cal.stat().st_mtime) / 60:.1f} min after the calibration", flush=True)
    r = validate(args.target, n=args.n, repeat=args.repeat, predictor=pred, out_dir=args.out_dir)
    print(format_report(r))
    c, w = r.get("ceiling") or {}, r.get("with_host_factor") or {}
    gap = w.get("within_10_pct", float("nan")) - c.get("one_factor_within_10_pct", float("nan"))
    print(f"target: with the host factor within 3 points of the ceiling (after one global factor) at ±10 %: "
          f"{w.get('within_10_pct', float('nan')):.0f}% vs {c.get('one_factor_within_10_pct', float('nan')):.0f}% "
          f"({gap:+.0f} points)")
    ends(pred, args.target, args.out_dir, (r.get("host_factor") or {}).get("factor", 1.0))


if __name__ == "__main__":
    main()
