"""Check the latency predictor against end-to-end measurements, beside the host's own repeatability.

    python -m nas.validate --target local-cpu --n 100     # 100 random subnets, 20 of them measured twice
    python -m nas.validate --quick                         # under a minute: does the table still hold here?

Exit code 1 when ``--quick`` finds that the table no longer holds on this host.
"""
from __future__ import annotations

import sys

from nas.cli.common import network_parser
from nas.core.cli import command
from nas.core.values import NONNEGATIVE_INT, POSITIVE_FLOAT
from nas.latency.validation import QUICK_N, VALIDATION_SEED, format_report, quick_check, validate
from profilers.timing.probe import DEFAULT_TOLERANCE

__all__ = ["main"]


@command
def main(argv=None) -> int:
    ap = network_parser("python -m nas.validate", __doc__, 100, "random subnets to measure (default 100)",
                        VALIDATION_SEED, "runs/validate")
    ap.add_argument("--repeat", type=NONNEGATIVE_INT, default=20,
                    help="measure this many of them a second time, for the repeatability ceiling (default 20)")
    ap.add_argument("--quick", action="store_true",
                    help=f"re-measure the probe and {QUICK_N} networks (under a minute) and say whether the table "
                         f"still holds on this host")
    ap.add_argument("--tolerance", type=POSITIVE_FLOAT, default=DEFAULT_TOLERANCE,
                    help="--quick: how far a probe unit may move (default %(default)s)")
    args = ap.parse_args(argv)
    if args.quick:
        rep = quick_check(args.target, args.runtime, tolerance=args.tolerance, progress=not args.no_progress)
        print(rep.describe())
        return 0 if rep.holds else 1
    r = validate(args.target, args.runtime, args.n, args.seed, args.threads, args.out_dir, repeat=args.repeat,
                 progress=not args.no_progress, allow_foreign=args.allow_foreign_table or None)
    print(format_report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
