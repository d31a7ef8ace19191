"""Fit the predictor's calibration on whole networks measured end to end, and store it with the table.

    python -m nas.calibrate --target local-cpu    # S0, S1, S2, L, 8 from the smallest to the largest, 8 uniform
"""
from __future__ import annotations

import sys

from nas.cli.common import network_parser
from nas.core.cli import command, nonnegative_int
from nas.latency.calibration_run import N_UNIFORM, calibrate, format_report

__all__ = ["main"]


@command
def main(argv=None) -> int:
    ap = network_parser("python -m nas.calibrate", __doc__, 8, "networks besides S0/S1/S2/L: the space's smallest, its largest and "
                        "the rest between them by predicted latency (default 8)",
                        0, "runs/calibrate")
    ap.add_argument("--uniform", type=nonnegative_int, default=N_UNIFORM,
                    help=f"uniformly random subnets besides those, as a search or a validation draws them "
                         f"(default {N_UNIFORM})")
    args = ap.parse_args(argv)
    cal = calibrate(args.target, args.runtime, args.n, args.seed, args.threads, args.out_dir,
                    progress=not args.no_progress, allow_foreign=args.allow_foreign_table or None,
                    n_uniform=args.uniform)
    print(format_report(cal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
