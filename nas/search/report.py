"""A search's report: its files (trajectories, evaluations, the comparison of strategies, the summary) and
their plots, and what it logs of them; the lines that state the paired comparisons of the picks
(:func:`describe_comparison`, :func:`conclusion`).

Every file is written atomically (a killed search never leaves half a file); plots use the headless
backend of :func:`nas.core.plotting.pyplot`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd

from nas.core.files import atomic_open, atomic_write_text
from nas.core.plotting import pyplot, save_figure
from nas.search.base import SearchOutcome, strategy_class
from nas.search.comparison import REFERENCE, FinalComparison
from nas.search.objective import Evaluation, Step

__all__ = ["rows", "write_csv", "write_json", "write_trajectory", "write_evaluations", "plot_trajectory",
           "plot_comparison", "describe", "describe_comparison", "conclusion", "label", "summary",
           "write_comparison", "log_signal", "log_comparisons"]

log = logging.getLogger(__name__)


def rows(items: Iterable[Evaluation | Step]) -> pd.DataFrame:
    """One row per evaluation or step (their ``row()``)."""
    return pd.DataFrame([it.row() for it in items])


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` (without its index) to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        df.to_csv(f, index=False)
    return Path(path)


def write_json(obj, path: str | Path, **kw) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=1, **kw))


def write_trajectory(traj: list[Step], folder: Path, budgets: dict) -> None:
    """``trajectory.csv`` (one row per step, params also in millions) and ``trajectory.json`` (the
    budgets, and every step with its architecture) in ``folder``."""
    df = rows(traj)
    df.insert(df.columns.get_loc("params") + 1, "params_m", df["params"] / 1e6)
    write_csv(df, folder / "trajectory.csv")
    write_json({"budgets": budgets, "steps": [{**s.row(), "arch": s.evaluation.arch.to_dict()} for s in traj]},
               folder / "trajectory.json")


def write_evaluations(evaluations: list[Evaluation], folder: Path) -> Path:
    """``evaluations.csv`` in ``folder``: every evaluation, in order."""
    return write_csv(rows(evaluations), folder / "evaluations.csv")


def plot_trajectory(traj: list[Step], path: Path, budgets: dict, title: str) -> Path:
    """Accuracy against latency along a trajectory, and MES and params per step."""
    plt = pyplot()
    df = rows(traj)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    a1.plot(df["latency_ms"], df["accuracy"] * 100, "-o", ms=3, color="tab:blue")
    for i in (0, len(df) - 1):
        a1.annotate("start" if i == 0 else f"step {i}", (df["latency_ms"][i], df["accuracy"][i] * 100),
                    fontsize=8, xytext=(4, 4), textcoords="offset points")
    if budgets.get("latency_ms"):
        a1.axvline(budgets["latency_ms"], color="tab:red", ls="--", lw=0.8, label="latency budget")
        a1.legend(fontsize=8)
    a1.set_xlabel("predicted latency (ms)")
    a1.set_ylabel("held-out accuracy (%)")
    a1.set_title("accuracy vs latency along the search", fontsize=9)
    a2.plot(df["step"], df["mes"], "-o", ms=3, color="tab:green", label="MES")
    a2.set_xlabel("step")
    a2.set_ylabel("MES (log scale)", color="tab:green")
    a2.set_yscale("log")
    a3 = a2.twinx()
    a3.plot(df["step"], df["params"] / 1e6, "-", color="tab:purple", label="params (M)")
    a3.set_ylabel("params (M)", color="tab:purple")
    a2.set_title("MES and params per step", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_comparison(outcomes: Mapping[str, SearchOutcome], path: Path, budgets: dict, title: str) -> Path:
    """Accuracy against latency of every strategy (its trajectory, or all it evaluated), each pick starred."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (name, r) in enumerate(outcomes.items()):
        color = strategy_class(name).color or f"C{i}"
        if r.trajectory is not None:
            evs = [s.evaluation for s in r.trajectory]
            ax.plot([e.latency_ms for e in evs], [e.accuracy * 100 for e in evs], "-o", ms=3,
                    color=color, label=f"{name} (trajectory)")
        else:
            evs = r.evaluations
            ax.scatter([e.latency_ms for e in evs], [e.accuracy * 100 for e in evs], s=10, alpha=0.6,
                       color=color, label=f"{name} (all evaluated)")
        if r.chosen is not None:
            ax.scatter([r.chosen.latency_ms], [r.chosen.accuracy * 100], s=90, marker="*",
                       color=color, edgecolor="k", zorder=5)
    if budgets.get("latency_ms"):
        ax.axvline(budgets["latency_ms"], color="tab:red", ls="--", lw=0.8, label="latency budget")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(title + "\n(stars: each strategy's pick within the budgets)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def describe(ev: Evaluation | None) -> str:
    """One line: accuracy, latency, params and MES of ``ev`` (or that nothing met the budgets)."""
    if ev is None:
        return "nothing within the budgets"
    return (f"acc {ev.accuracy * 100:6.2f}%  latency {ev.latency_ms:7.3f} ms  params {ev.params / 1e6:6.3f} M  "
            f"MES {ev.mes:7.2f}")


def label(name: str) -> str:
    """How a pick is named in the logs: its strategy, or ``S0`` for the hand-designed reference."""
    return "S0" if name == REFERENCE else name


def describe_comparison(c: Mapping) -> str:
    """One line for a paired comparison (a ``comparisons`` entry of ``summary.json``): the difference
    of accuracy of ``a`` minus ``b`` in points, its confidence interval and the verdict, e.g.
    ``paper vs S0: +0.12 points [-0.90, +1.10] -> tie``."""
    better = c.get("better")
    return (f"{label(c['a'])} vs {label(c['b'])}: {c['diff'] * 100:+.2f} points "
            f"[{c['ci_low'] * 100:+.2f}, {c['ci_high'] * 100:+.2f}] -> "
            + (f"{label(better)} better" if better else "tie"))


def conclusion(comparisons: Iterable[Mapping]) -> str:
    """What the paired comparisons show, in one or two sentences: which strategy's pick is more
    accurate than every other strategy's beyond the noise (or that none is), and which picks differ
    from S0 beyond the noise."""
    comparisons = list(comparisons)
    between = [c for c in comparisons if REFERENCE not in (c["a"], c["b"])]
    vs_s0 = [c for c in comparisons if c["b"] == REFERENCE]
    out = []
    if between:
        names = list(dict.fromkeys(n for c in between for n in (c["a"], c["b"])))
        wins = [f"{c['better']} over {c['b'] if c['better'] == c['a'] else c['a']}" for c in between if c["better"]]
        top = [n for n in names if all(c["better"] == n for c in between if n in (c["a"], c["b"]))]
        if top:
            out.append(f"{top[0]}'s pick is more accurate than every other strategy's beyond the noise.")
        elif not wins:
            out.append("No strategy's pick is more accurate than another's beyond the noise: a tie.")
        else:
            out.append("No strategy's pick beats every other beyond the noise (beyond it: " + ", ".join(wins) + ").")
    if vs_s0:
        above = [c["a"] for c in vs_s0 if c["better"] == c["a"]]
        below = [c["a"] for c in vs_s0 if c["better"] == REFERENCE]
        if not above and not below:
            out.append("No pick differs from S0 beyond the noise.")
        else:
            out.append("Against S0, beyond the noise: "
                       + "; ".join(p for p in (f"better: {', '.join(above)}" if above else "",
                                                f"worse: {', '.join(below)}" if below else "") if p)
                       + ("; the others tie." if len(above) + len(below) < len(vs_s0) else "."))
    return " ".join(out)


def summary(*, target: str, runtime: str, table: Path, budgets: dict, supernet: str, heldout: int,
            final_heldout: int, processes: int, outcomes: Mapping[str, SearchOutcome], reference: Evaluation | None,
            stderr: Callable[[float], float], final: FinalComparison, signal: dict | None) -> dict:
    """What ``summary.json`` holds of a search: its target, budgets and evaluation settings, S0 and every
    strategy's pick (accuracy with its standard error ``stderr``, final accuracy), the paired comparisons,
    their conclusion and the signal (:func:`nas.search.comparison.signal`)."""
    return {"target": target, "runtime": runtime, "table": str(table), "budgets": budgets,
            "final_heldout": final_heldout,
            REFERENCE: ({**reference.row(), "accuracy_stderr": stderr(reference.accuracy),
                        **final.fields(REFERENCE)} if reference else None),
            "supernet": supernet, "heldout": heldout, "processes": processes,
            "strategies": {n: {"n_evals": o.n_evals, "seconds": round(o.seconds, 1),
                               **({"steps": o.steps} if o.trajectory is not None else {}),
                               "chosen": ({**o.chosen.row(), "accuracy_stderr": stderr(o.chosen.accuracy),
                                           **final.fields(n)} if o.chosen else None)}
                           for n, o in outcomes.items()},
            "comparisons": final.comparisons,
            "conclusion": conclusion(final.comparisons) if final.comparisons else None,
            "signal": signal}


def log_signal(signal: dict | None, heldout: int) -> None:
    """One line: the spread of random subnets' accuracies within the budget against one evaluation's noise."""
    if signal and signal["spread_in_stderr"] is not None:
        g = signal
        log.info(f"\nSubnets within the budget ({g['n']} random ones, accuracy on {heldout} images): "
                 f"5th-95th percentile {g['p5'] * 100:.2f}-{g['p95'] * 100:.2f} % ({g['spread'] * 100:.2f} "
                 f"points = {g['spread_in_stderr']:.1f} standard errors of one evaluation)")


def write_comparison(outcomes: Mapping[str, SearchOutcome], folder: Path, budgets: dict, title: str, *,
                     stderr: Callable[[float], float], final: FinalComparison, finally_compared: bool,
                     plot: bool = True) -> None:
    """``comparison.csv`` (and ``comparison.png`` when ``plot``) in ``folder``, and the table of the
    strategies side by side in the log (with their final accuracies when ``finally_compared``)."""
    table = [{"strategy": n, "evaluations": o.n_evals, "seconds": round(o.seconds, 1),
              **({k: v for k, v in o.chosen.row().items() if k != "arch"} if o.chosen else {}),
              "accuracy_stderr": stderr(o.chosen.accuracy) if o.chosen else None, **final.fields(n)}
             for n, o in outcomes.items()]
    write_csv(pd.DataFrame(table), folder / "comparison.csv")
    if plot:
        plot_comparison(outcomes, folder / "comparison.png", budgets, title)
    log.info("\nstrategy  evaluations  time   pick within the budgets"
             + ("   (final accuracy ± standard error)" if finally_compared else ""))
    for n, o in outcomes.items():
        f = final.fields(n)
        fa = (f"   ({f['final_accuracy'] * 100:.2f}% ± {f['final_accuracy_stderr'] * 100:.2f})"
              if f["final_accuracy"] is not None else "")
        log.info(f"{n:8s}  {o.n_evals:11d}  {o.seconds:4.0f} s  {describe(o.chosen)}{fa}")


def log_comparisons(comparisons: list[dict]) -> None:
    """The paired comparisons of the picks, one line each, and what they show."""
    if not comparisons:
        return
    c0 = comparisons[0]
    log.info(f"\nAccuracy differences on the same {c0['n']} final images, in points, with "
             f"{c0['level'] * 100:.0f} % paired bootstrap intervals (a tie when the interval contains 0):")
    for c in comparisons:
        log.info(f"  {describe_comparison(c)}")
    log.info(conclusion(comparisons))
