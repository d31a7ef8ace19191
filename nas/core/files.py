"""Files that survive kills and concurrent writers: atomic writes with unique temporary names, and an
advisory lock per output (``filelock``), so two processes never interleave their rows in one file."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from filelock import FileLock, Timeout

from nas.core.errors import UserError

__all__ = ["atomic_open", "atomic_write_text", "exclusive", "Busy", "file_digest"]


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


class Busy(UserError, RuntimeError):
    """Another process holds the lock of an output (the message names it and what to do)."""


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w"):
    """Open a uniquely named temporary file beside ``path`` for writing (``"w"`` text, ``"wb"`` binary);
    when the block ends without an error it is fsynced and renamed over ``path``, otherwise removed.
    Readers see the old content or the new one, never a torn file, and two writers never share a
    temporary file. The one owner of atomic writes: text, tables, checkpoints, figures."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)             # as open() would create it (mkstemp makes it private)
        with os.fdopen(fd, mode, **({"newline": ""} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


@contextlib.contextmanager
def exclusive(path: str | Path, what: str = "output"):
    """Hold the advisory lock ``{path}.lock`` (a file, or a folder's ``.lock`` inside it) for the block;
    :class:`Busy` at once when another process holds it."""
    path = Path(path)
    lock_path = path / ".lock" if path.is_dir() else path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise Busy(f"another process is writing {what} {path} (lock {lock_path}); wait for it to finish, "
                   f"or write elsewhere") from None
    try:
        yield
    finally:
        lock.release()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (a retrained supernet at the same path, even of the same size, is
    another supernet, and its accuracies are not the old ones)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
