"""Logging, one owner: the library logs and never prints; a command line shows the records.

Every module logs to ``logging.getLogger(__name__)`` under the ``nas`` or ``profilers`` logger. The
library stays quiet by default (a ``NullHandler`` on both); :func:`console` is what a command line wraps
its work in: INFO records go to stdout as plain lines (they are the command's report), warnings and
errors to stderr with their level, and Python warnings raised meanwhile (a library caller's view of the
same events) become one ``warning:`` line each, said once. Progress bars (tqdm, on stderr) are separate
and stay.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from typing import Iterator

__all__ = ["LOGGERS", "console"]

LOGGERS = ("nas", "profilers")
for _name in LOGGERS:
    logging.getLogger(_name).addHandler(logging.NullHandler())


class _Below(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


class _Stream(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stdout`` / ``sys.stderr`` is when it emits (so output
    redirected or captured after set-up still lands where the caller expects)."""

    def __init__(self, which: str):
        super().__init__()
        self.which = which

    @property
    def stream(self):
        return getattr(sys, self.which)

    @stream.setter
    def stream(self, value):       # StreamHandler.__init__ assigns it; the property decides
        pass


@contextlib.contextmanager
def console(verbosity: int = 0) -> Iterator[None]:
    """Show the library's records for the duration of a command: INFO (DEBUG with ``verbosity`` >= 1) on
    stdout, WARNING and above on stderr (``warning: ...``); ``verbosity`` < 0 shows warnings only."""
    level = logging.DEBUG if verbosity > 0 else logging.INFO if verbosity == 0 else logging.WARNING
    out, err = _Stream("stdout"), _Stream("stderr")
    out.setLevel(level)
    out.addFilter(_Below(logging.WARNING))
    out.setFormatter(logging.Formatter("%(message)s"))
    err.setLevel(logging.WARNING)
    err.setFormatter(logging.Formatter("%(levelname_lower)s: %(message)s"))
    err.addFilter(_lower_level)
    said: set[str] = set()
    warn_log = logging.getLogger(LOGGERS[0])

    def showwarning(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text not in said:                  # one line each, once: no source line, no repeats
            said.add(text)
            warn_log.warning(text)

    saved_show = warnings.showwarning
    warnings.showwarning = showwarning
    saved = []
    for name in LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level, lg.propagate))
        lg.setLevel(level)
        lg.propagate = False
        lg.addHandler(out)
        lg.addHandler(err)
    try:
        yield
    finally:
        warnings.showwarning = saved_show
        for lg, lvl, prop in saved:
            lg.removeHandler(out)
            lg.removeHandler(err)
            lg.setLevel(lvl)
            lg.propagate = prop


def _lower_level(record: logging.LogRecord) -> bool:
    record.levelname_lower = record.levelname.lower()
    return True
