"""Command-line plumbing shared by every command (``nas.cli`` and the profilers' plugins):

- argparse types that refuse impossible values with a message instead of a traceback later (the rules
  of :mod:`nas.core.values`, which the configuration dataclasses check too);
- :func:`add_common_args`: ``--debug``, ``-v/--verbose``, ``-q/--quiet``, ``--no-progress``;
- :func:`command`: the one error-to-exit-code path. A :class:`~nas.core.errors.UserError` becomes
  ``error: <message>`` on stderr and exit code 2 (``--debug`` shows the traceback instead); an
  ``OSError`` that no layer below turned into one (a disk that filled up, a file removed under the
  command) is said in one line the same way; and the library's log records (and Python warnings, one line
  each, once) are shown for the duration of the command (:func:`nas.core.logs.console`).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Callable, Sequence

from nas.core.errors import UserError
from nas.core.logs import console
from nas.core.values import FRACTION, IMG_SIZE, NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT

__all__ = ["ArgumentParser", "positive_int", "nonnegative_int", "positive_float", "fraction", "img_size", "add_common_args",
           "command"]


#: argparse types (the rules of :mod:`nas.core.values`, which the configuration dataclasses check too)
positive_int = POSITIVE_INT
nonnegative_int = NONNEGATIVE_INT
positive_float = POSITIVE_FLOAT
fraction = FRACTION
img_size = IMG_SIZE


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line, like every other error of a command:
    ``error: argument --batch-size: must be at least 1, got 0 (see prog --help)`` and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def add_common_args(ap: argparse.ArgumentParser, progress: bool = True) -> argparse.ArgumentParser:
    """The arguments every command takes (``--debug`` is read by :func:`command` before parsing)."""
    g = ap.add_argument_group("common")
    g.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more log detail")
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    if progress:
        g.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def _verbosity(argv: list[str]) -> int:
    if "-q" in argv or "--quiet" in argv:
        return -1
    n = 0
    for a in argv:
        if a == "--verbose":
            n += 1
        elif len(a) > 1 and a[0] == "-" and a[1:] == "v" * (len(a) - 1):
            n += len(a) - 1
    return n


def command(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a command's ``main(argv)``: log records shown while it runs, a :class:`UserError` turned into
    ``error: <message>`` on stderr and exit code 2, unless ``--debug`` is among the arguments (then it
    propagates with its traceback)."""
    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in argv
        if debug:
            argv.remove("--debug")
        with console(_verbosity(argv)):
            try:
                return main(argv)
            except UserError as e:
                if debug:
                    raise
                print(f"error: {e}", file=sys.stderr)
                return 2
            except BrokenPipeError:             # output piped into a reader that stopped (``| head``)
                try:                                # keep the interpreter's final flush quiet too
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                except (OSError, ValueError):       # stdout is not a file (captured)
                    pass
                return 0
            except OSError as e:                # an input or output that failed under the command
                if debug:
                    raise
                where = f"{e.filename}: " if e.filename else ""
                print(f"error: {where}{e.strerror or e}", file=sys.stderr)
                return 2
    return wrapper
