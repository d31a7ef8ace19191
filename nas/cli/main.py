"""``effv2-nas <command> [args]``: one console script over the package's command lines.

    effv2-nas search --target pixel6        # = python -m nas.search --target pixel6
    effv2-nas train --steps 100             # = python -m nas.train_supernet --steps 100
    effv2-nas calibrate | validate | describe
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from nas.cli import calibrate, describe, search, train, validate
from nas.core.version import __version__

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, tuple[Callable[[Sequence[str] | None], int], str]] = {
    "search": (search.main, "fine-grained joint search over a trained supernet (python -m nas.search)"),
    "train": (train.main, "train the slimmable supernet (python -m nas.train_supernet)"),
    "calibrate": (calibrate.main, "fit a table's calibration on whole networks (python -m nas.calibrate)"),
    "validate": (validate.main, "check the predictor against end-to-end measurements (python -m nas.validate)"),
    "describe": (describe.main, "params, MACs and JSON of a network or the space (python -m nas.describe)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: effv2-nas <command> [args]   (effv2-nas {__version__})", "", "commands:"]
    lines += [f"  {name:{width}s}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "effv2-nas <command> --help shows a command's arguments; effv2-profile <runtime> profiles."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(__version__)
        return 0
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]][0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
