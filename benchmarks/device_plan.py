"""What a whole-space table costs on the phones reached through vendors' tools: a dry-run plan, no device.

    python benchmarks/device_plan.py                   # every iPhone and AI Hub entry, the default space
    python benchmarks/device_plan.py --load-s 3 --compile-s 90 --profile-s 150 --max-jobs 8

For each device entry with an ``iphone`` or ``aihub`` connection it prints the units of the space, the work
the protocol asks for per unit (warm-up and timed predictions), and the expected device time:

* **iPhone** (``python -m profilers.coreml --team-id``): per unit, one load on the phone (sending the package
  and Core ML's on-device compilation: ``--load-s``) plus ``warmup + rounds x runs`` predictions and one
  compute-plan run at most ``--unit-ms`` each (default 2.7 ms: EfficientFormerV2-L, the largest network,
  runs in 2.7 ms on an iPhone 12 by the paper's README, so every unit of the space is faster). Target: a
  whole-space table within 15 minutes of phone time.
* **Qualcomm AI Hub** (``python -m profilers.aihub``): a compile and a profile job per unit, ``--max-jobs``
  units in flight, so ``ceil(units / max_jobs)`` waves of ``--compile-s`` + ``--profile-s`` each (queueing and
  provisioning included). Target: a whole-space table within 30 minutes of wall time; the plan also gives the
  smallest ``--max-jobs`` that meets it.

The per-unit overheads are assumptions given on the command line, not measurements (no iPhone or AI Hub
account was used to write this plan): replace them with a table's recorded ``profiling_seconds`` / units
once one exists. Writes ``benchmarks/results/device_plan.txt``.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nas.space.spaces import get_space  # noqa: E402
from nas.space.units import space_units  # noqa: E402
from profilers.aihub import MAX_JOBS, RUNS_PER_ROUND  # noqa: E402
from profilers.coreml import PHONE_RUNS_PER_ROUND  # noqa: E402
from profilers.devices import list_devices  # noqa: E402
from profilers.timing.protocol import Protocol  # noqa: E402

IPHONE_TARGET_S, AIHUB_TARGET_S = 15 * 60.0, 30 * 60.0
#: networks nas.calibrate times by default (S0, S1, S2, L, 8 that span the space and 8 uniformly random subnets)
CALIBRATION_NETWORKS = 20


def iphone_plan(units: int, protocol: Protocol, load_s: float, unit_ms: float) -> dict:
    predictions = protocol.warmup + protocol.rounds * (protocol.runs or PHONE_RUNS_PER_ROUND) + 1
    per_unit = load_s + predictions * unit_ms / 1e3
    return {"predictions_per_unit": predictions, "seconds_per_unit": per_unit, "seconds": units * per_unit,
            "calibration_seconds": CALIBRATION_NETWORKS * (load_s + predictions * 2.7 / 1e3),
            "target_s": IPHONE_TARGET_S, "break_even_load_s": IPHONE_TARGET_S / units - predictions * unit_ms / 1e3}


def aihub_plan(units: int, protocol: Protocol, max_jobs: int, compile_s: float, profile_s: float) -> dict:
    waves = math.ceil(units / max_jobs)
    per_wave = compile_s + profile_s
    iterations = protocol.rounds * (protocol.runs or RUNS_PER_ROUND)
    return {"jobs": 2 * units, "waves": waves, "iterations_per_unit": iterations,
            "seconds": waves * per_wave, "calibration_seconds": math.ceil(CALIBRATION_NETWORKS / max_jobs) * per_wave,
            "target_s": AIHUB_TARGET_S, "max_jobs_for_target": math.ceil(units / max(1, AIHUB_TARGET_S // per_wave))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="efficientformerv2")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--load-s", type=float, default=2.0, help="assumed seconds to send and load one unit on an "
                                                              "iPhone (default %(default)s)")
    ap.add_argument("--unit-ms", type=float, default=2.7, help="upper bound of one unit's latency on an iPhone")
    ap.add_argument("--compile-s", type=float, default=60.0, help="assumed seconds of an AI Hub compile job")
    ap.add_argument("--profile-s", type=float, default=120.0, help="assumed seconds of an AI Hub profile job, "
                                                                   "queue and device provisioning included")
    ap.add_argument("--max-jobs", type=int, default=MAX_JOBS)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "device_plan.txt"))
    args = ap.parse_args(argv)
    space = get_space(args.space)
    units = len(space_units(space, args.img_size))
    protocol = Protocol()
    lines = [f"space {space.name!r} at {args.img_size} px: {units} units; protocol warm-up {protocol.warmup}, "
             f"{protocol.rounds} rounds; assumptions (not measured): iPhone load {args.load_s} s/unit, unit "
             f"<= {args.unit_ms} ms; AI Hub compile {args.compile_s} s, profile {args.profile_s} s per job"]
    for d in list_devices().values():
        if d.connection_type in ("iphone", "bundle"):
            p = iphone_plan(units, protocol, args.load_s, args.unit_ms)
            ok = "meets" if p["seconds"] <= p["target_s"] else "misses"
            lines.append(f"{d.name:20s} iPhone   {units} loads x {p['predictions_per_unit']} predictions: "
                         f"{p['seconds'] / 60:5.1f} min of phone time ({ok} the {p['target_s'] / 60:.0f} min target; "
                         f"break-even load {p['break_even_load_s']:.1f} s/unit); calibration "
                         f"{p['calibration_seconds'] / 60:.1f} min")
        elif d.connection_type == "aihub":
            p = aihub_plan(units, protocol, args.max_jobs, args.compile_s, args.profile_s)
            ok = "meets" if p["seconds"] <= p["target_s"] else "misses"
            lines.append(f"{d.name:20s} AI Hub   {p['jobs']} jobs ({p['iterations_per_unit']} profiled "
                         f"inferences per unit), {args.max_jobs} in flight: {p['waves']} waves, "
                         f"{p['seconds'] / 60:5.1f} min wall ({ok} the {p['target_s'] / 60:.0f} min target; "
                         f"--max-jobs {p['max_jobs_for_target']} suffices); calibration "
                         f"{p['calibration_seconds'] / 60:.1f} min")
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
