"""The user-facing error base: bad input, or a prerequisite the user can fix.

Every such error subclasses :class:`UserError` (``TableError``, ``DeviceError``, ``ArchError``,
``CalibrationError``, ``CheckpointError``, ``DatasetMissing``, ``ProfilerUnavailable`` ...), and its
message names the file or value at fault and what to do. Commands wrapped by :func:`command` print that
one line and exit 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, Sequence

__all__ = ["UserError", "command"]


class UserError(Exception):
    """An error the user can fix; its message says which input and how."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def command(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a command's ``main(argv)``: a :class:`UserError` becomes ``error: <message>`` on stderr and exit
    code 2, unless ``--debug`` is among the arguments (then it propagates with its traceback)."""
    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in argv
        if debug:
            argv.remove("--debug")
        try:
            return main(argv)
        except UserError as e:
            if debug:
                raise
            print(f"error: {e}", file=sys.stderr)
            return 2
    return wrapper
