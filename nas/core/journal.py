"""Append-only CSV journals: the one way this project keeps rows that are expensive to make.

Latency tables, the search's accuracy cache and the files of networks measured end to end are journals:
each finished row is appended and flushed (fsynced) at once, so a killed run keeps every finished row and a
rerun does only what is missing.

- **Torn last line.** A row being written when the process was killed has no newline at its end: a
  reader ignores it (one warning) and the next writer cuts it off before appending, so it is measured
  again. A complete line always ends with a newline; nothing else counts as a row.
- **One writer.** Opening a journal for writing takes its lock (:func:`nas.core.files.exclusive`;
  already held by this process is fine), so two processes never interleave rows.
- **What produced it.** A journal may be keyed by ``settings`` (the device, runtime, threads, table ...
  that produced its rows): :meth:`Journal.keyed` puts a digest of them in the file name and writes them
  beside it as JSON, so a run with other settings gets a journal of its own and never replays rows that
  other settings produced.
- **Malformed rows.** A complete line that does not parse is an error naming the file and the line.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable, Sequence

from nas.core.errors import UserError
from nas.core.files import atomic_write_text, check_writable, exclusive, holds, read_json, read_text, write_error

__all__ = ["Journal", "JournalError", "settings_digest", "complete_text"]

log = logging.getLogger(__name__)

_warned: set[str] = set()


class JournalError(UserError, ValueError):
    """A journal that cannot be read or appended to (the message names the file, the line and the fix)."""


def settings_digest(settings: dict) -> str:
    """A short digest of ``settings`` (JSON with sorted keys)."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]


def complete_text(text: str, path: str | Path) -> str:
    """``text`` without a last line that has no newline (a row torn by a kill), warning once per file."""
    if text and not text.endswith("\n"):
        key = str(path)
        if key not in _warned:
            _warned.add(key)
            log.warning("%s: ignoring an incomplete last line (a run killed while writing it); it is cut off when "
                        "the file is next written, and measured again", path)
        return text[:text.rfind("\n") + 1]
    return text


class Journal:
    """An append-only CSV file with a header line ``columns`` (see the module docstring).

    ``what`` names the file in messages (``"latency table"``); ``fix`` says what to do with a malformed
    one (``"delete it to measure again"``); ``error`` is the :class:`UserError` raised for it.
    """

    def __init__(self, path: str | Path, columns: Sequence[str], *, what: str = "journal", fix: str = "",
                 error: type[UserError] = JournalError, settings: dict | None = None):
        self.path = Path(path)
        self.columns = list(columns)
        self.what, self.fix, self.error = what, fix, error
        self.settings = settings
        self._f = None
        self._stack: ExitStack | None = None

    @classmethod
    def keyed(cls, folder: str | Path, stem: str, columns: Sequence[str], settings: dict, **kw) -> "Journal":
        """The journal of ``settings`` in ``folder``: ``{stem}-{digest}.csv``, with the settings written
        beside it (``.json``) when it is first opened for writing."""
        return cls(Path(folder) / f"{stem}-{settings_digest(settings)}.csv", columns, settings=settings, **kw)

    @property
    def settings_path(self) -> Path:
        return self.path.with_suffix(".json")

    def _fail(self, msg: str) -> UserError:
        return self.error(f"{self.what} {self.path}{msg}" + (f"; {self.fix}" if self.fix else ""))

    # -- reading --------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_file() and self.path.stat().st_size > 0

    def rows(self) -> list[list[str]]:
        """The complete rows (without the header), in order; [] when the journal does not exist yet."""
        if not self.path.exists():
            return []
        text = complete_text(read_text(self.path, self.what, self.error, self.fix), self.path)
        if not text:
            return []
        lines = list(csv.reader(io.StringIO(text)))
        if lines[0] != self.columns:
            raise self._fail(f" has the header {','.join(lines[0])!r}, expected {','.join(self.columns)!r}")
        for i, r in enumerate(lines[1:], start=2):
            if r and len(r) != len(self.columns):
                raise self._fail(f", line {i}: {len(r)} fields where the header has {len(self.columns)}")
        return [r for r in lines[1:] if r]

    def records(self) -> list[dict[str, str]]:
        """:meth:`rows` as dicts by column."""
        return [dict(zip(self.columns, r)) for r in self.rows()]

    # -- writing --------------------------------------------------------------------------------
    def open(self) -> "Journal":
        """Open for appending: take the lock (unless this process holds it), cut off a torn last line,
        write the header to a new file (and the settings beside a keyed journal), check an existing one's."""
        check_writable(self.path)
        stack = ExitStack()
        try:
            if not holds(self.path, folder=False):
                stack.enter_context(exclusive(self.path, self.what, folder=False))
            self._prepare()
            try:
                self._f = open(self.path, "a", newline="")
            except OSError as e:
                raise write_error(self.path, e) from None
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def _prepare(self) -> None:
        if self.settings is not None:
            if self.settings_path.exists():
                old = read_json(self.settings_path, f"settings of {self.what}", self.error, self.fix)
                if json.loads(json.dumps(self.settings, default=str)) != old:
                    raise self._fail(f" was written with other settings than this run's ({self.settings_path})")
            else:
                atomic_write_text(self.settings_path, json.dumps(self.settings, indent=1, default=str) + "\n")
        if not self.exists():
            try:
                with open(self.path, "w", newline="") as f:
                    f.write(_line(self.columns))
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise write_error(self.path, e) from None
            return
        text = read_text(self.path, self.what, self.error, self.fix)
        if not text.endswith("\n"):
            keep = complete_text(text, self.path)
            try:
                with open(self.path, "r+", newline="") as f:
                    f.truncate(len(keep.encode("utf-8")))
            except OSError as e:
                raise write_error(self.path, e) from None
            text = keep
        header = next(csv.reader(io.StringIO(text)), None) if text else None
        if header != self.columns:
            raise self._fail(f" has the header {','.join(header or [])!r}, expected {','.join(self.columns)!r}")

    def append(self, values: Iterable) -> None:
        """Append one row (a value per column; None is an empty field) and flush it to the disk."""
        if self._f is None:
            raise RuntimeError(f"{self.path}: open the journal before appending")
        values = ["" if v is None else v for v in values]
        if len(values) != len(self.columns):
            raise ValueError(f"{len(values)} values for {len(self.columns)} columns")
        self.write_line(_line(values))

    def write_line(self, line: str) -> None:
        """Append one complete CSV line (ending with a newline) and flush it to the disk."""
        if not line.endswith("\n"):
            raise ValueError("a journal line ends with a newline")
        try:
            self._f.write(line)
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as e:
            raise write_error(self.path, e) from None

    def close(self) -> None:
        if self._f is not None and not self._f.closed:
            self._f.close()
        self._f = None
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def __enter__(self) -> "Journal":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _line(values: Iterable) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(list(values))
    return buf.getvalue()
