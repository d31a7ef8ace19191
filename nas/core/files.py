"""Files that survive kills, concurrent writers and bad input: the one owner of how this project writes and
reads its files.

Writing:

- :func:`atomic_open` / :func:`atomic_write_text`: a uniquely named temporary file renamed into place, so
  readers see the old content or the new one, never a torn file;
- :func:`exclusive`: an advisory lock per output (``filelock``), so two processes never write one table or
  run folder at once; taking it also removes the temporary files that killed writers of that output left;
- :func:`claim_output`: create an output's folder and probe-write it, before any long work, so a
  read-only folder, a file in the way or a full disk is said at once;
- shipped files (the reference tables and their calibrations, the shipped supernet) live under roots
  registered with :func:`protect`: every writer refuses them (:class:`ReadOnlyError`), except inside
  :func:`shipping`, which only the scripts that ship files use.

Every ``OSError`` met while writing becomes :class:`OutputError`: ``cannot write PATH: reason``.

Reading: :func:`read_text` and :func:`read_json` turn a missing file, a folder, binary bytes or invalid JSON
into the caller's :class:`~nas.core.errors.UserError` naming the file; :func:`parsing` does the same for
the key, type and value errors of turning what was read into objects.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from nas.core.errors import UserError

__all__ = ["atomic_open", "atomic_write_text", "exclusive", "holds", "Busy", "file_digest", "OutputError",
           "ReadOnlyError", "claim_output", "protect", "shipping", "check_writable", "read_text", "read_json",
           "parsing", "write_error"]

log = logging.getLogger(__name__)


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


class Busy(UserError, RuntimeError):
    """Another process holds the lock of an output (the message names it and what to do)."""


class OutputError(UserError, OSError):
    """An output that cannot be written: ``cannot write PATH: reason``."""


class ReadOnlyError(OutputError):
    """A write to a shipped file (a reference table, its calibration, the shipped supernet)."""


def _reason(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "no space left on the device"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.EROFS:
        return "read-only file system"
    if e.errno in (errno.ENOTDIR, errno.EEXIST) or isinstance(e, (NotADirectoryError, FileExistsError)):
        return "a file is in the way where a folder is needed"
    if e.errno == errno.EISDIR:
        return "it is a folder, not a file"
    return e.strerror or str(e)


def write_error(path: str | Path, e: OSError) -> OutputError:
    """The :class:`OutputError` for ``e``, met while writing ``path``."""
    return OutputError(f"cannot write {path}: {_reason(e)}")


# ----------------------------------------------------------------------------------------------
# shipped files are read-only
# ----------------------------------------------------------------------------------------------
_PROTECTED: dict[Path, str] = {}
_shipping = 0


def protect(root: str | Path, what: str) -> None:
    """Make every file under ``root`` read-only to this package's writers (``what`` names them in errors)."""
    _PROTECTED[Path(root).resolve()] = what


@contextlib.contextmanager
def shipping() -> Iterator[None]:
    """Allow writes under the protected roots for the block (the scripts that ship tables and supernets)."""
    global _shipping
    _shipping += 1
    try:
        yield
    finally:
        _shipping -= 1


def check_writable(path: str | Path) -> Path:
    """``path``, or :class:`ReadOnlyError` when it lies under a protected (shipped) root."""
    path = Path(path)
    if _shipping:
        return path
    try:
        real = path.resolve()
    except OSError:
        return path
    for root, what in _PROTECTED.items():
        if real == root or root in real.parents:
            raise ReadOnlyError(f"cannot write {path}: it is one of the {what} shipped with the package, which "
                                f"no command changes; write your own elsewhere (e.g. --out, --out-dir)")
    return path


def claim_output(path: str | Path, *, folder: bool = False) -> Path:
    """Make sure ``path`` (a file, or a folder with ``folder``) can be written, before any long work: not a
    shipped file, its folder created, a probe file written there and removed. :class:`OutputError` naming
    the path and the reason otherwise."""
    path = check_writable(path)
    where = path if folder else path.parent
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"cannot write {path}: a file is in the way where a folder is needed")
    if not folder and path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder, not a file")
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", suffix=".tmp", dir=where)
        try:
            os.write(fd, b"probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise write_error(path, e) from None
    return path


# ----------------------------------------------------------------------------------------------
# atomic writes
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w"):
    """Open a uniquely named temporary file beside ``path`` for writing (``"w"`` text, ``"wb"`` binary);
    when the block ends without an error it is fsynced and renamed over ``path``, otherwise removed.
    Readers see the old content or the new one, never a torn file, and two writers never share a
    temporary file. An ``OSError`` on the way is an :class:`OutputError`. The one owner of atomic writes:
    text, tables, checkpoints, figures."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    path = check_writable(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, _FILE_MODE)             # as open() would create it (mkstemp makes it private)
        with os.fdopen(fd, mode, **({"newline": ""} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, UserError):
            raise write_error(path, e) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


# ----------------------------------------------------------------------------------------------
# locks
# ----------------------------------------------------------------------------------------------
_HELD: dict[str, int] = {}


def _lock_file(path: Path, folder: bool) -> Path:
    return path / ".lock" if folder else path.with_name(path.name + ".lock")


def _sweep_temporaries(path: Path, folder: bool) -> None:
    """Remove the temporary files that killed writers of ``path`` left (:func:`atomic_open`'s
    ``.NAME.*.tmp``): whoever holds the lock is the only writer, so none of them is in use."""
    stem = path.name.rsplit(".", 1)[0] if "." in path.name else path.name      # the file and its sidecars
    where, pattern = (path, ".*.tmp") if folder else (path.parent, f".{glob.escape(stem)}.*.tmp")
    for p in where.glob(pattern):
        with contextlib.suppress(OSError):
            p.unlink()
            log.debug("removed %s, left by a writer that was killed", p)


@contextlib.contextmanager
def exclusive(path: str | Path, what: str = "output", *, folder: bool | None = None):
    """Hold the advisory lock of ``path`` (``{path}.lock`` for a file, ``path/.lock`` for a folder; a
    folder when ``folder`` or when ``path`` is an existing folder) for the block; :class:`Busy` at once
    when another process holds it, :class:`OutputError` when the lock cannot be created. Once held, the
    temporary files that killed writers of ``path`` left are removed."""
    path = check_writable(path)
    folder = path.is_dir() if folder is None else folder
    lock_path = _lock_file(path, folder)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(lock_path, os.O_WRONLY | os.O_CREAT, _FILE_MODE))
    except OSError as e:
        raise write_error(path, e) from None
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise Busy(f"another process is writing {what} {path} (lock {lock_path}); wait for it to finish, "
                   f"or write elsewhere") from None
    except OSError as e:
        raise write_error(path, e) from None
    key = str(lock_path.resolve())
    _HELD[key] = _HELD.get(key, 0) + 1
    try:
        _sweep_temporaries(path, folder)
        yield
    finally:
        _HELD[key] -= 1
        if not _HELD[key]:
            del _HELD[key]
        lock.release()


def holds(path: str | Path, *, folder: bool | None = None) -> bool:
    """Whether this process holds the lock of ``path`` (:func:`exclusive`)."""
    path = Path(path)
    folder = path.is_dir() if folder is None else folder
    return str(_lock_file(path, folder).resolve()) in _HELD


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (a retrained supernet at the same path, even of the same size, is
    another supernet, and its accuracies are not the old ones)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def read_text(path: str | Path, what: str, error: type[UserError] = UserError, fix: str = "") -> str:
    """The text of ``path``; ``error`` naming ``what`` and the file when it is missing, a folder, not
    readable or not text (``fix``: what to do, appended to the message)."""
    path = Path(path)
    fix = f"; {fix}" if fix else ""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist{fix}") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a folder, not a file{fix}") from None
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not a text file (undecodable bytes at offset {e.start}){fix}") from None
    except OSError as e:
        raise error(f"{what} {path} cannot be read ({_reason(e)}){fix}") from None


def read_json(path: str | Path, what: str, error: type[UserError] = UserError, fix: str = "",
              expect: type | tuple[type, ...] | None = dict) -> Any:
    """The JSON value in ``path`` (of type ``expect``, an object by default); ``error`` naming ``what`` and
    the file otherwise (see :func:`read_text`)."""
    text = read_text(path, what, error, fix)
    fix = f"; {fix}" if fix else ""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{what} {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}){fix}") from None
    if expect is not None and not isinstance(obj, expect):
        want = {dict: "an object", list: "a list"}.get(expect, getattr(expect, "__name__", str(expect)))
        raise error(f"{what} {path} must hold a JSON {want}, found {type(obj).__name__}{fix}")
    return obj


@contextlib.contextmanager
def parsing(path: str | Path, what: str, error: type[UserError] = UserError, fix: str = "") -> Iterator[None]:
    """Inside the block, a ``KeyError``, ``TypeError``, ``ValueError``, ``AttributeError`` or ``IndexError``
    (content of the wrong shape or type) becomes ``error`` naming ``what`` and the file; a
    :class:`UserError` passes as it is."""
    try:
        yield
    except UserError:
        raise
    except KeyError as e:
        raise error(f"{what} {path} lacks the field {e.args[0]!r}" + (f"; {fix}" if fix else "")) from None
    except (TypeError, ValueError, AttributeError, IndexError) as e:
        raise error(f"{what} {path} holds a value of the wrong type or shape ({e})"
                    + (f"; {fix}" if fix else "")) from None
