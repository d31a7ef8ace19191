"""The paper's search against NSGA-II and random search at an equal evaluation budget, measured in one run.

    python benchmarks/search.py                    # default supernet and table, S0-latency budget
    python benchmarks/search.py --params-budget 3.5

Runs ``python -m nas.search --strategy all`` (under torchrun with one process per core when there are
several cores), then prints the wall time of the paper's loop (target: <= 15 minutes on this CPU) and the
three picks side by side, each final accuracy with its standard error. It then prints the paired
bootstrap comparisons of ``summary.json`` (every pick against S0, every pair of strategies, on the same
final test images) and says which strategy wins: one whose pick is more accurate than every other's
beyond the noise, or none. A difference whose confidence interval contains 0 is a tie, not a win.
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


def label(key: str) -> str:
    return "S0" if key == "reference_s0" else key


def points(x: float) -> str:
    return f"{x * 100:+.2f}"


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
        if c.get("final_accuracy_stderr") is not None:
            fa += f" ± {c['final_accuracy_stderr'] * 100:.2f}"
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
    signal(s)
    comparisons = s.get("comparisons")
    if comparisons:
        compared(s, comparisons)
    else:                                   # a summary without paired comparisons: the spread against the noise
        spread_against_noise(s)


def signal(s: dict):
    """Whether the supernet separates subnets within the budget: the spread of random search's accuracies
    in standard errors of one evaluation (the target: at least 3)."""
    g = s.get("signal")
    if not g or g.get("spread_in_stderr") is None:
        return
    print(f"\nsubnets within the budget ({g['n']} random ones, {s['heldout']} images each): accuracy "
          f"{g['min'] * 100:.2f}-{g['max'] * 100:.2f} %, 5th-95th percentile {g['p5'] * 100:.2f}-{g['p95'] * 100:.2f} % "
          f"= {g['spread'] * 100:.2f} points = {g['spread_in_stderr']:.1f} standard errors of one evaluation "
          f"(target >= 3: {'met' if g['spread_in_stderr'] >= 3 else 'missed'})")


def compared(s: dict, comparisons: list[dict]):
    """The paired comparisons and verdicts of ``summary.json``, and which strategy wins, if any."""
    st = s["strategies"]
    c0 = comparisons[0]
    print(f"\naccuracy differences (a - b) on the same {c0['n']} final images, in points, "
          f"{c0['level'] * 100:.0f} % paired bootstrap intervals; an interval containing 0 is a tie:")
    for c in comparisons:
        verdict = f"{label(c['better'])} better" if c.get("better") else "tie"
        print(f"  {label(c['a'])} vs {label(c['b'])}: {points(c['diff'])} points "
              f"[{points(c['ci_low'])}, {points(c['ci_high'])}] -> {verdict}")
    paper = (st.get("paper") or {}).get("chosen")
    for c in comparisons:                   # the paper's pick against each baseline's: accuracy, then latency
        if c["a"] != "paper" or c["b"] == "reference_s0" or paper is None:
            continue
        other = st[c["b"]]["chosen"]
        lat = (f"predicted latency {paper['latency_ms']:.3f} ms against {other['latency_ms']:.3f} ms "
               f"({'lower' if paper['latency_ms'] < other['latency_ms'] else 'not lower'})")
        if c.get("better") == "paper":
            acc = f"the paper's pick is more accurate than {c['b']}'s beyond the noise"
        elif c.get("better"):
            acc = f"{c['b']}'s pick is more accurate than the paper's beyond the noise"
        else:
            acc = f"the paper's pick and {c['b']}'s tie on accuracy"
        print(f"paper vs {c['b']}: {acc}; {lat}")
    print("\nverdict: " + (s.get("conclusion") or conclusion(comparisons)))


def conclusion(comparisons: list[dict]) -> str:
    """Which strategy's pick beats every other strategy's beyond the noise, or that none does."""
    between = [c for c in comparisons if "reference_s0" not in (c["a"], c["b"])]
    names = list(dict.fromkeys(n for c in between for n in (c["a"], c["b"])))
    top = [n for n in names if all(c.get("better") == n for c in between if n in (c["a"], c["b"]))]
    if top:
        return f"{top[0]}'s pick is more accurate than every other strategy's beyond the noise"
    return "no strategy's pick is more accurate than every other's beyond the noise"


def spread_against_noise(s: dict):
    st = s["strategies"]
    fin = s.get("final_heldout", 0)
    picks = [r["chosen"] for r in st.values() if r["chosen"]]
    if len(picks) < 2:
        return
    key = "final_accuracy" if picks[0].get("final_accuracy") is not None else "accuracy"
    n = fin if key == "final_accuracy" else s["heldout"]
    accs = [c[key] for c in picks]
    se = math.sqrt(max(accs) * (1 - max(accs)) / n)
    spread = max(accs) - min(accs)
    print(f"\nthe picks' {key.replace('_', ' ')} spans {spread * 100:.2f} points; one binomial standard error on "
          f"{n} images is {se * 100:.2f} points"
          + (": the accuracy differences are within noise" if spread < 2 * se else "")
          + " (this summary has no paired comparisons; rerun the search for them)")


if __name__ == "__main__":
    main()
