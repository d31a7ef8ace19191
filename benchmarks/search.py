"""The paper's search against NSGA-II and random search at an equal evaluation budget, measured in one run.

    python benchmarks/search.py                    # default supernet and table, S0-latency budget
    python benchmarks/search.py --params-budget 3.5

Runs ``python -m nas.search --strategy all`` (under torchrun with one process per core when there are
several cores), then prints the wall time of the paper's loop (target: <= 15 minutes on this CPU) and the
three picks side by side, and says whether the paper's pick dominates, or is not dominated by, the best
baseline pick (higher accuracy at no more latency).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dominates(a: dict, b: dict) -> bool:
    return (a["accuracy"] >= b["accuracy"] and a["latency_ms"] <= b["latency_ms"]
            and (a["accuracy"] > b["accuracy"] or a["latency_ms"] < b["latency_ms"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out-dir", default="runs/search/benchmark")
    ap.add_argument("--fresh", action="store_true", help="ignore cached accuracy evaluations")
    ap.add_argument("--report-only", action="store_true", help="print the tables of the last run, run nothing")
    args, extra = ap.parse_known_args()
    out = ROOT / args.out_dir
    if not args.report_only:
        run(args, extra, out)
    report(json.loads((out / "summary.json").read_text()))


def run(args, extra, out: Path):
    if args.fresh and out.exists():
        shutil.rmtree(out)
    search = ["-m", "nas.search", "--strategy", "all", "--no-export", "--out-dir", str(out), *extra]
    if args.procs > 1:
        torchrun = Path(sys.executable).with_name("torchrun")
        cmd = [str(torchrun) if torchrun.exists() else "torchrun", "--standalone",
               "--nproc_per_node", str(args.procs), *search]
    else:
        cmd = [sys.executable, *search]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def report(s: dict):
    st = s["strategies"]
    paper = st["paper"]
    print(f"\n{s['target']} ({s['runtime']}), budgets {s['budgets']}, {s['heldout']} held-out images, "
          f"{s['processes']} process(es)")
    print(f"paper loop: {paper['steps']} steps, {paper['n_evals']} accuracy evaluations, "
          f"{paper['seconds'] / 60:.1f} min (target <= 15 min: {'met' if paper['seconds'] <= 900 else 'missed'})")
    fin = s.get("final_heldout", 0)
    print(f"\naccuracy: on the {s['heldout']} held-out images the search used; final: on {fin} other test images")
    measured = s.get("measured_ms", {})
    print("\n| strategy | evaluations | time (s) | accuracy | final accuracy | predicted latency (ms) | "
          "measured latency (ms) | params (M) | MES |")
    print("|---|---|---|---|---|---|---|---|---|")

    def row(name, n, secs, c, key):
        fa = f"{c['final_accuracy'] * 100:.2f}%" if c.get("final_accuracy") is not None else "-"
        ms = f"{measured[key]:.3f}" if key in measured else "-"
        print(f"| {name} | {n} | {secs} | {c['accuracy'] * 100:.2f}% | {fa} | {c['latency_ms']:.3f} | {ms} | "
              f"{c['params'] / 1e6:.3f} | {c['mes']:.2f} |")

    for name, r in st.items():
        if r["chosen"] is None:
            print(f"| {name} | {r['n_evals']} | {r['seconds']:.0f} | none within budget | | | | | |")
        else:
            row(name, r["n_evals"], f"{r['seconds']:.0f}", r["chosen"], name)
    if s.get("reference_s0"):
        row("S0 (hand-designed, reference)", 1, "", s["reference_s0"], "reference_s0")
    p = paper["chosen"]
    others = {n: r["chosen"] for n, r in st.items() if n != "paper" and r["chosen"]}
    if p is None or not others:
        return
    key = "final_accuracy" if p.get("final_accuracy") is not None else "accuracy"
    pick = lambda c: {"accuracy": c[key], "latency_ms": c["latency_ms"]}
    best_name, best = max(others.items(), key=lambda kv: (kv[1][key], -kv[1]["latency_ms"]))
    if dominates(pick(p), pick(best)):
        verdict = f"the paper's pick dominates the best baseline pick ({best_name})"
    elif dominates(pick(best), pick(p)):
        verdict = f"the paper's pick is dominated by {best_name}'s"
    else:
        verdict = f"neither dominates: the paper's pick is not dominated by the best baseline pick ({best_name})"
    print(f"\n{verdict} (judged on {key.replace('_', ' ')} and predicted latency)")
    n = fin if key == "final_accuracy" else s["heldout"]
    accs = [c[key] for c in [p, *others.values()]]
    se = math.sqrt(max(accs) * (1 - max(accs)) / n)
    spread = max(accs) - min(accs)
    print(f"the picks' {key.replace('_', ' ')} spans {spread * 100:.2f} points; one binomial standard error on "
          f"{n} images is {se * 100:.2f} points"
          + (": the accuracy differences are within noise" if spread < 2 * se else ""))


if __name__ == "__main__":
    main()
