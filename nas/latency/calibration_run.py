"""Fit the predictor's calibration on whole networks measured end to end, and store it with the table.

The networks (:func:`calibration_archs`: S0/S1/S2/L where the space holds them, the space's smallest and
largest networks and networks between them chosen by predicted latency, so that the fit spans the whole
range the predictor is asked about, and uniformly random subnets, the kind of network a search or a
validation meets most, so that the fit is not tilted away from them) are measured with the table's own
runtime and protocol, interleaved with the probe units and put on the table's scale (resumable:
measurements are kept in ``runs/calibrate/``). The calibration (:mod:`nas.latency.calibration`: non-negative, fitted on relative
error, the simplest model that its leave-one-out error supports, clipped to the measured range) is written
beside the table as ``*.calibration.json``, where :meth:`nas.latency.predictor.LatencyPredictor.from_table`
picks it up. Command: ``python -m nas.calibrate``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nas.core.files import atomic_write_text, claim_output, exclusive
from nas.core.values import NONNEGATIVE_INT, POSITIVE_INT, WHOLE
from nas.latency.calibration import Calibration, CalibrationError, calibration_path
from nas.latency.host_factor import reference_networks, time_references
from nas.latency.networks import measure_archs, table_key, table_profiler, table_to_time
from nas.latency.predictor import LatencyPredictor, MissingLatencyError
from nas.space.arch import Arch

__all__ = ["calibrate", "calibration_archs", "format_report", "N_UNIFORM", "VARIANTS"]

VARIANTS = ("s0", "s1", "s2", "l")
#: the pool of random subnets the networks between the smallest and the largest are chosen from: this many
#: per share of kept slots (and of attention where allowed) in ``POOL_KEEP``, so that it reaches both ends
POOL_PER_LEVEL = 4000
POOL_KEEP = (0.1, 0.3, 0.5, 0.7, 0.9)
#: uniformly random subnets a calibration measures by default, besides the networks that span the range
N_UNIFORM = 8


def calibration_archs(pred: LatencyPredictor, n: int = 8, seed: int = 0, n_uniform: int = N_UNIFORM) -> list[Arch]:
    """The networks a calibration measures: the published variants that are points of ``pred``'s space
    (S0, S1, S2, L), then ``n`` that span its range: its smallest and largest networks
    (``space.min_arch()``, ``space.max_arch()``; always both) and ``n - 2`` between them, at evenly spaced
    points of the logarithm of the predicted latency (the uncalibrated sum of blocks, since the calibration
    is fitted on relative error), each the random subnet of a seeded pool closest to its point; then
    ``n_uniform`` subnets drawn as :meth:`~nas.space.spaces.SearchSpace.sample` draws them, with seeds
    ``seed * 100_003 + i`` (:mod:`nas.latency.validation` draws by the same scheme from seed 10,000 on and
    leaves out every calibration network). The spanning networks are chosen for their latency alone, so
    their mix of unit kinds is not a typical one and a fit on them alone can be tilted away from the subnets
    a search meets most; the uniform ones anchor it there. No network twice; the same networks for the same
    predictor table and seed. Measures nothing."""
    space = pred.space
    chosen = [space.canonical(v) for v in VARIANTS if space.fits(v)]
    ends = [space.min_arch(), space.max_arch()]
    chosen += [a for a in ends if a not in chosen]
    between = max(n - 2, 0)
    if between:
        chosen += _between(pred, ends, between, seed, taken={row.tobytes() for row in space.encode(chosen)})
    uniform, i = [], 0
    while len(uniform) < n_uniform:
        a = space.sample(seed * 100_003 + i)
        i += 1
        if a not in chosen and a not in uniform:
            uniform.append(a)
        if i > 100 * (n_uniform + 1):           # a space with fewer distinct subnets than asked for
            break
    return chosen + uniform


def _between(pred: LatencyPredictor, ends: list[Arch], between: int, seed: int, taken: set) -> list[Arch]:
    """``between`` networks of a seeded pool at evenly spaced points of log predicted latency between
    ``ends``, none of ``taken`` (encoded rows as bytes)."""
    space, chosen = pred.space, []
    pool = np.concatenate([space.sample_encoded(POOL_PER_LEVEL, seed=seed * len(POOL_KEEP) + i, keep_prob=p,
                                                attn_prob=p) for i, p in enumerate(POOL_KEEP)])
    log_lat = np.log(pred.block_sum_many(pool))
    lo, hi = np.log(pred.block_sum_many(ends))
    for target in np.linspace(lo, hi, between + 2)[1:-1]:
        for i in np.argsort(np.abs(log_lat - target), kind="stable"):
            if pool[i].tobytes() not in taken:
                taken.add(pool[i].tobytes())
                chosen.append(space.decode(pool[i:i + 1])[0])
                break
    return chosen


def calibrate(target: str, runtime: str | None = None, n_random: int = 8, seed: int = 0,
              threads: int | None = None, out_dir: str | Path = "runs/calibrate", root=None,
              progress: bool = True, allow_foreign: bool | None = None, verify: str = "probe",
              n_uniform: int = N_UNIFORM) -> Calibration:
    """Measure the networks of :func:`calibration_archs` (S0/S1/S2/L where the table's space holds them,
    ``n_random`` networks from its smallest to its largest and ``n_uniform`` uniformly random subnets), fit,
    store.

    The table must be one this machine can measure networks for (not a reference device's, which ships
    as it is) and describe this host (``verify``: ``"probe"``, the probe re-measured too, or
    ``"fingerprint"``, for a table probed or measured just before); its calibration file and ``out_dir``
    are claimed before anything is measured, and the table's lock is held until the calibration is
    written."""
    n_random = NONNEGATIVE_INT.check("n_random", n_random)
    n_uniform = NONNEGATIVE_INT.check("n_uniform", n_uniform)
    seed = WHOLE.check("seed", seed)
    if threads is not None:
        threads = POSITIVE_INT.check("threads", threads)
    table = table_to_time(target, runtime, root, "calibrate")
    table.verify_host(probe=verify == "probe", allow_foreign=allow_foreign)
    pred = LatencyPredictor.of_table(table, calibrated=False)
    path = table.path
    claim_output(calibration_path(path))
    claim_output(out_dir, folder=True)
    archs = calibration_archs(pred, n_random, seed, n_uniform)
    if len(archs) < 3:
        raise CalibrationError(f"a calibration needs at least 3 networks: the space {pred.space.name!r} holds "
                               f"{len(archs)} published variant(s) and ends together; ask for more networks (--n)")
    missing = pred.missing_keys(archs)
    if missing:
        raise MissingLatencyError(missing, pred.fill_hint())
    profiler = table_profiler(table, threads)
    with exclusive(path, "latency table", folder=False):     # the table and its calibration: one writer
        rows = measure_archs(archs, profiler, out_dir, f"{Path(path).name.removesuffix('.csv')}.networks",
                             pred.img_size, pred.num_classes, desc="calibration networks", table=table_key(table),
                             probe_reference=table.meta.probe_p50, progress=progress)
        groups = np.array([pred.group_sums(a)[0] for a in archs])
        cal = Calibration.fit(groups, rows["p50_ms"].to_numpy(), archs=[a.to_dict() for a in archs])
        if table.meta.local:          # this host's speed now, for predictions that follow it later
            cal.reference = _time_reference(profiler, pred)
        atomic_write_text(calibration_path(path), json.dumps(cal.to_dict(), indent=1))
    return cal


def _time_reference(profiler, pred: LatencyPredictor) -> dict:
    """The reference networks timed right after the calibration networks (:mod:`nas.latency.host_factor`)."""
    refs = reference_networks(pred.space)
    passes = time_references(profiler, refs, pred.img_size, pred.num_classes)
    p50 = [float(np.exp(np.mean([np.log(p[name]) for p in passes]))) for name, _ in refs]
    return {"names": [n for n, _ in refs], "archs": [a.to_dict() for _, a in refs], "p50_ms": p50,
            "passes": passes, "img_size": pred.img_size, "num_classes": pred.num_classes}


def format_report(cal: Calibration) -> str:
    r = cal.report
    loo = "  ".join(f"{m} {v:.2f}%" for m, v in r["loo_mape_pct"].items())
    return "\n".join([
        f"calibration on {cal.n} networks, model '{cal.model}': {cal.describe()}",
        f"leave-one-out MAPE per model: {loo}   (the simplest within 10% of the best is kept)",
        f"sum of blocks alone: MAPE {r['uncalibrated_mape_pct']:.2f}% (bias {r['uncalibrated_bias_pct']:+.2f}%)",
        f"calibrated fit:      MAPE {r['calibrated_mape_pct']:.2f}% (max {r['calibrated_max_abs_err_pct']:.2f}%)",
    ] + (["reference networks for the host factor: " + ", ".join(
        f"{n} {v:.3f} ms" for n, v in zip(cal.reference["names"], cal.reference["p50_ms"]))] if cal.reference else []))
