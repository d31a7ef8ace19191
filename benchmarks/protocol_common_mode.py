"""How well the timing protocol reproduces table entries on a drifting host, with and without common mode.

    python benchmarks/protocol_common_mode.py --runtime torch
    python benchmarks/protocol_common_mode.py --runtime onnxruntime --units 24 --rounds 28

Samples ``--units`` units of the space, then times them in two passes of ``--rounds`` interleaved
sweeps each (a sweep times every unit once, for about ``round_s``, in a rotating order, as
:meth:`profilers.timing.protocol.Protocol.measure_many` does), one pass after the other. The raw round medians of
both passes are kept, and every estimator is computed from the same data: the protocol's plain median of
round medians, and the same after removing each sweep's common host speed
(:func:`profilers.timing.protocol.sweep_factors`, ``Protocol(common_mode=True)``), on the first 7, 14 or all rounds of
each pass. Reproducibility is the median (and p90) over units of ``|log(pass 1 / pass 2)|``: raw, and
relative (the median log ratio over units removed first, i.e. what rankings and sums of entries see when
the host as a whole was faster in one pass). ``cv`` is the entries' median robust cv on pass 1.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nas.space.modules import build_unit  # noqa: E402
from nas.space.spaces import get_space  # noqa: E402
from nas.space.units import space_units  # noqa: E402
from profilers import get_profiler  # noqa: E402
from profilers.devices import get_device  # noqa: E402
from profilers.timing.host import pinned  # noqa: E402
from profilers.timing.protocol import Protocol, summarize_rounds, sweep_factors  # noqa: E402


def one_pass(fns: dict, per_round: dict, rounds: int) -> dict[str, list[np.ndarray]]:
    """``rounds`` interleaved sweeps over ``fns``, in the protocol's rotating order; per unit, the call
    times (ms) of each sweep."""
    names, out = list(fns), {k: [] for k in fns}
    for r in range(rounds):
        shift = r % len(names)
        for k in names[shift:] + names[:shift]:
            out[k].append(Protocol.time_round(fns[k], per_round[k]))
    return out


def estimate(raw: dict[str, list[np.ndarray]], rounds: int, common_mode: bool) -> tuple[dict, dict, np.ndarray]:
    """p50 and cv per unit from the first ``rounds`` sweeps, as the protocol computes them."""
    names = list(raw)
    f = np.ones(rounds)
    if common_mode:
        f = sweep_factors(np.log([[np.median(t) for t in raw[k][:rounds]] for k in names]))
    st = {k: summarize_rounds([t / f[s] for s, t in enumerate(raw[k][:rounds])]) for k in names}
    return {k: s.p50_ms for k, s in st.items()}, {k: s.cv for k, s in st.items()}, f


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="local-cpu")
    ap.add_argument("--runtime", default="torch")
    ap.add_argument("--space", default="efficientformerv2")
    ap.add_argument("--units", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=28)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    dev = get_device(args.device)
    prof = get_profiler(args.runtime)(dev)
    specs = space_units(get_space(args.space))
    specs = random.Random(args.seed).sample(specs, min(args.units, len(specs)))
    p = Protocol()
    with tempfile.TemporaryDirectory() as tmp, pinned(dev.cpus):
        torch.set_num_threads(dev.threads)
        fns = {}
        for s in specs:
            torch.manual_seed(0)
            m, shape = build_unit(s)
            path = prof.export(m.eval(), shape, Path(tmp) / f"{s.key}{prof.suffix}")
            loaded = prof.load(path, shape)
            if loaded is None:
                raise SystemExit(f"runtime {args.runtime} times in an external tool; this benchmark needs a runner")
            fns[s.key] = loaded.run
        per_round = {k: p.runs_per_round(p._warm(fn)) for k, fn in fns.items()}
        t0 = time.perf_counter()
        passes = [one_pass(fns, per_round, args.rounds) for _ in range(2)]
        wall = time.perf_counter() - t0

    print(f"{len(specs)} units of {args.space!r} on {dev.name}/{args.runtime} ({prof.runtime_version()}), "
          f"{dev.threads} thread(s), round_s {p.round_s}; two passes of {args.rounds} sweeps in {wall:.0f} s")
    _, _, host = estimate(passes[0], args.rounds, True)
    print(f"host speed per sweep in pass 1 (common factor, median 1): {host.min():.2f} .. {host.max():.2f}")
    print()
    print("| rounds | estimator | raw retest median | raw p90 | relative retest median | relative p90 | median cv |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted({min(7, args.rounds), min(14, args.rounds), args.rounds}):
        for cm in (False, True):
            (a, cv, _), (b, _, _) = (estimate(x, r, cm) for x in passes)
            d = np.array([np.log(a[k] / b[k]) for k in a])
            rel = d - np.median(d)
            print(f"| {r} | {'common mode' if cm else 'plain median'} | {100 * np.median(abs(d)):.2f}% | "
                  f"{100 * np.percentile(abs(d), 90):.2f}% | {100 * np.median(abs(rel)):.2f}% | "
                  f"{100 * np.percentile(abs(rel), 90):.2f}% | {100 * np.median(list(cv.values())):.2f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
