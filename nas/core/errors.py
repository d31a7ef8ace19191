"""The user-facing error base: bad input, or a prerequisite the user can fix.

Every such error subclasses :class:`UserError` (``TableError``, ``DeviceError``, ``ArchError``,
``CalibrationError``, ``CheckpointError``, ``DatasetMissing``, ``ProfilerUnavailable`` ...), and its
message names the file or value at fault and what to do. Commands wrapped by :func:`command` print that
one line and exit 2 (:func:`nas.core.cli.command`); ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """An error the user can fix; its message says which input and how."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""
