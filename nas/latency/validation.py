"""Check the latency predictor against end-to-end measurements, beside the host's own repeatability.

The full validation samples ``--n`` random subnets of the table's space (none used for calibration),
measures each end to end on the table's runtime (interleaved with the probe, on the table's scale,
resumable), predicts them, and prints MAPE, the share within ±5 % and ±10 %, and Spearman's rank
correlation. Then it measures the first ``--repeat`` of them again, minutes after the first time: how
well the host agrees with itself (the **repeatability ceiling**) is printed beside the predictor's
figures, because no predictor can beat it. Writes the pairs as CSV and a predicted-vs-measured plot.

``--quick`` re-measures the probe units and a handful of networks and says, with numbers, whether the
table still holds on this host: the fingerprint (another machine, a runtime upgrade), the probe (another
machine of the same name, drift, throttling) and the networks' errors (a calibration gone stale).
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nas.core.files import atomic_open, claim_output, exclusive
from nas.core.plotting import pyplot, save_figure
from nas.core.values import NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, WHOLE
from nas.latency.host_factor import measure_host_factor
from nas.latency.networks import fidelity, measure_archs, table_key, table_profiler, table_to_time
from nas.latency.predictor import LatencyPredictor
from profilers.timing.probe import DEFAULT_TOLERANCE, ProbeCheck

__all__ = ["validate", "quick_check", "repeatability", "QuickReport", "format_report", "plot", "VALIDATION_SEED", "QUICK_N"]

VALIDATION_SEED = 10_000        # disjoint from the calibration seeds
QUICK_N = 6
QUICK_MAX_MAPE = 10.0           # percent: above this the quick check says the table no longer holds


def _held_out_archs(pred: LatencyPredictor, n: int, seed: int) -> list:
    held_out = {json.dumps(a) for a in pred.calibration.archs} if pred.calibration else set()
    archs, i = [], 0
    while len(archs) < n:
        a = pred.space.sample(seed * 100_003 + i)
        i += 1
        if json.dumps(a.to_dict()) not in held_out:
            archs.append(a)
    return archs


def repeatability(first, second) -> dict:
    """How well two measurements of the same networks agree: share within ±5 % / ±10 % of each other
    (relative to the first), mean and max absolute difference, and the mean ratio (drift)."""
    a, b = np.asarray(first, float), np.asarray(second, float)
    d = (b - a) / a
    one = b / a / np.exp(np.mean(np.log(b / a))) - 1          # after dividing out one global host-speed factor
    return {"n": int(len(a)), "within_5_pct": float(np.mean(np.abs(d) <= 0.05) * 100),
            "within_10_pct": float(np.mean(np.abs(d) <= 0.10) * 100),
            "mean_abs_diff_pct": float(np.mean(np.abs(d)) * 100), "max_abs_diff_pct": float(np.max(np.abs(d)) * 100),
            "second_vs_first_pct": float(np.mean(d) * 100),
            "one_factor_within_5_pct": float(np.mean(np.abs(one) <= 0.05) * 100),
            "one_factor_within_10_pct": float(np.mean(np.abs(one) <= 0.10) * 100)}


def validate(target: str, runtime: str | None = None, n: int = 100, seed: int = VALIDATION_SEED,
             threads: int | None = None, out_dir: str | Path = "runs/validate", root=None,
             predictor: LatencyPredictor | None = None, repeat: int = 20, progress: bool = True,
             allow_foreign: bool | None = None) -> dict:
    """Measure ``n`` held-out random subnets, compare with the predictor, and measure the first
    ``repeat`` of them a second time for the repeatability ceiling. A calibrated table of a ``local`` device
    first has this host's factor measured (:mod:`nas.latency.host_factor`): the figures are then reported
    with and without it. Returns the report dict. ``out_dir`` is claimed (and locked) before anything is
    measured."""
    n = POSITIVE_INT.check("n", n)
    repeat = NONNEGATIVE_INT.check("repeat", repeat)
    seed = WHOLE.check("seed", seed)
    if threads is not None:
        threads = POSITIVE_INT.check("threads", threads)
    table = table_to_time(target, runtime, root, "validate")
    if predictor is None:
        table.verify_host(probe=True, allow_foreign=allow_foreign)
    pred = predictor or LatencyPredictor.of_table(table)
    out = claim_output(out_dir, folder=True)
    archs = _held_out_archs(pred, n, seed)
    predicted = pred.predict_many(archs)            # raises on missing keys before any measuring
    profiler = table_profiler(table, threads)
    ref = table.meta.probe_p50
    stem = table.path.name.removesuffix(".csv")
    key = table_key(table)
    with exclusive(out, "validation results in", folder=True):
        hf = (measure_host_factor(table, pred.calibration, threads=threads, allow_foreign=allow_foreign)
              if pred.calibration is not None else None)
        rows = measure_archs(archs, profiler, out, f"{stem}.networks", pred.img_size, pred.num_classes,
                             desc="validation networks", table=key, probe_reference=ref, progress=progress)
        measured = rows["p50_ms"].to_numpy()
        rows["predicted_ms"] = predicted
        report = fidelity(predicted, measured)
        report["calibrated"] = pred.calibration is not None
        if hf is not None:
            report["host_factor"] = hf.to_dict()
            report["with_host_factor"] = fidelity(predicted * hf.factor, measured)
            rows["predicted_now_ms"] = predicted * hf.factor
        factors = rows["probe_factor"].to_numpy(float)
        if len(factors) and np.isfinite(factors).any() and (np.nan_to_num(factors, nan=1.0) != 1.0).any():
            report["host_speed_vs_table_pct"] = [float((np.nanmin(factors) - 1) * 100),
                                                 float((np.nanmax(factors) - 1) * 100)]
        k = min(repeat, len(archs))
        if k >= 2:
            again = measure_archs(archs[:k], profiler, out, f"{stem}.networks-repeat", pred.img_size,
                                  pred.num_classes, desc="the same networks again", table=key, probe_reference=ref,
                                  progress=progress)
            rows["repeat_ms"] = list(again["p50_ms"]) + [np.nan] * (len(rows) - k)
            report["ceiling"] = repeatability(measured[:k], again["p50_ms"].to_numpy())
        with atomic_open(out / f"{stem}.validation.csv", "w") as f:
            rows.to_csv(f, index=False)
        report["plot"] = str(plot(predicted, measured, out / f"{stem}.validation.png", report, stem))
    return report


def plot(predicted, measured, path: Path, report: dict, title: str) -> Path:
    fig, ax = pyplot().subplots(figsize=(5.2, 5))
    lo, hi = float(min(np.min(predicted), np.min(measured))) * 0.9, float(max(np.max(predicted), np.max(measured))) * 1.1
    xs = np.linspace(lo, hi, 10)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="tab:green", alpha=0.12, label="±10 %")
    ax.fill_between(xs, xs * 0.95, xs * 1.05, color="tab:green", alpha=0.2, label="±5 %")
    ax.plot(xs, xs, "k--", lw=0.8)
    ax.scatter(measured, predicted, s=12, color="tab:blue", label=f"{report['n']} random subnets")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ceiling = report.get("ceiling")
    extra = (f"\nhost vs itself ({ceiling['n']} nets, minutes apart): ±5%: {ceiling['within_5_pct']:.0f}%  "
             f"±10%: {ceiling['within_10_pct']:.0f}%" if ceiling else "")
    ax.set_title(f"{title}\nMAPE {report['mape_pct']:.2f}%  ±5%: {report['within_5_pct']:.0f}%  "
                 f"±10%: {report['within_10_pct']:.0f}%  ρ={report['spearman']:.3f}{extra}", fontsize=8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


@dataclass
class QuickReport:
    """What ``python -m nas.validate --quick`` found, and its verdict."""
    table: str
    holds: bool
    reasons: list[str] = field(default_factory=list)
    probe: ProbeCheck | None = None
    networks: dict | None = None
    raw_networks: dict | None = None
    seconds: float = 0.0

    def describe(self) -> str:
        lines = [f"table {self.table}"]
        if self.probe:
            lines.append(f"  {self.probe.describe()}")
        if self.networks:
            r, raw = self.networks, self.raw_networks or {}
            lines.append(f"  {r['n']} networks end to end: MAPE {r['mape_pct']:.2f}%, within ±5% {r['within_5_pct']:.0f}%, "
                         f"within ±10% {r['within_10_pct']:.0f}% (on the table's scale; as measured now: MAPE "
                         f"{raw.get('mape_pct', float('nan')):.2f}%, bias {raw.get('bias_pct', float('nan')):+.2f}%)")
        verdict = ("HOLDS on this host" if self.holds else "does NOT hold on this host: " + "; ".join(self.reasons))
        lines.append(f"verdict: the table {verdict}  [{self.seconds:.0f} s]")
        return "\n".join(lines)


def quick_check(target: str = "local-cpu", runtime: str | None = None, n: int = QUICK_N,
                tolerance: float = DEFAULT_TOLERANCE, max_mape: float = QUICK_MAX_MAPE, root=None,
                progress: bool = False) -> QuickReport:
    """Re-measure the probe and ``n`` networks (under a minute on a CPU) and judge whether the table
    still describes this host. Never raises for a foreign table: that is a verdict. A reference device's
    table is refused, as by :func:`validate`: networks timed here cannot judge it."""
    n = POSITIVE_INT.check("n", n)
    tolerance = POSITIVE_FLOAT.check("tolerance", tolerance)
    t0 = time.perf_counter()
    table = table_to_time(target, runtime, root, "validate")
    pred = LatencyPredictor.of_table(table)
    rep = QuickReport(str(table.path), True)
    meta = table.meta
    host = table.check_host(probe=True, tolerance=tolerance)
    ref = meta.probe_p50
    if host.differences:
        rep.holds = False
        rep.reasons.append("another host or runtime: " + "; ".join(host.differences))
    rep.probe = host.probe
    if rep.probe is not None and not rep.probe.ok:
        rep.holds = False
        rep.reasons.append(f"the probe moved beyond ±{100 * tolerance:.0f}% (another machine, a busier or "
                           f"throttled one, or another runtime build)")
    archs = _held_out_archs(pred, n, VALIDATION_SEED + 1)
    profiler = table_profiler(table)
    with tempfile.TemporaryDirectory() as d:
        rows = measure_archs(archs, profiler, d, "quick", pred.img_size, pred.num_classes,
                             desc="quick check", probe_reference=ref, progress=progress, batch_size=n)
    predicted = pred.predict_many(archs)
    rep.networks = fidelity(predicted, rows["p50_ms"].to_numpy())
    raw = rows["p50_ms"].to_numpy() * rows["probe_factor"].to_numpy(float)
    rep.raw_networks = fidelity(predicted, raw)
    if rep.networks["mape_pct"] > max_mape:
        rep.holds = False
        rep.reasons.append(f"networks are predicted with MAPE {rep.networks['mape_pct']:.1f}% > {max_mape:.0f}% "
                           f"(re-profile or re-calibrate: {meta.profile_command()})")
    if not rep.holds and all("re-profile" not in r for r in rep.reasons):
        rep.reasons.append(f"profile this host again with {meta.profile_command()}")
    rep.seconds = time.perf_counter() - t0
    return rep


def format_report(r: dict) -> str:
    lines = [f"{r['n']} held-out random subnets ({'calibrated' if r['calibrated'] else 'uncalibrated: run nas.calibrate'})",
             f"predictor:        MAPE {r['mape_pct']:.2f}%   within ±5%: {r['within_5_pct']:.1f}%   within ±10%: "
             f"{r['within_10_pct']:.1f}%   Spearman {r['spearman']:.4f}   bias {r['bias_pct']:+.2f}%"]
    h = r.get("host_factor")
    if h:
        w = r["with_host_factor"]
        lines.append(f"with host factor:  MAPE {w['mape_pct']:.2f}%   within ±5%: {w['within_5_pct']:.1f}%   within "
                     f"±10%: {w['within_10_pct']:.1f}%   bias {w['bias_pct']:+.2f}%   (factor {h['factor']:.3f}, "
                     f"{'steady' if h['steady'] else 'UNSTEADY: a search would not apply it'}, readings "
                     f"{', '.join(f'{x:.3f}' for x in h['readings'])})")
    c = r.get("ceiling")
    if c:
        lines.append(f"host vs itself:   {c['n']} of them measured again minutes later: within ±5%: "
                     f"{c['within_5_pct']:.1f}%   within ±10%: {c['within_10_pct']:.1f}%   mean |diff| "
                     f"{c['mean_abs_diff_pct']:.2f}%   (the repeatability ceiling: no predictor can beat it); after "
                     f"one global factor: within ±5%: {c['one_factor_within_5_pct']:.1f}%   within ±10%: "
                     f"{c['one_factor_within_10_pct']:.1f}%")
    if r.get("host_speed_vs_table_pct"):
        lo, hi = r["host_speed_vs_table_pct"]
        lines.append(f"host speed during the run vs the table's probe: {lo:+.1f}% .. {hi:+.1f}% (corrected)")
    lines.append(f"plot: {r['plot']}")
    return "\n".join(lines)
