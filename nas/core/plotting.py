"""Plotting, one owner: matplotlib imported only when a figure is drawn (headless ``Agg`` backend), and
figures written atomically (a killed run never leaves half a PNG)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nas.core.errors import UserError

__all__ = ["pyplot", "save_figure"]


def pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend; a :class:`UserError` naming the package if absent."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("plots need matplotlib: pip install matplotlib (or pass --no-plot)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` to ``path`` through a temporary file in the same folder, then close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        pyplot().close(fig)
    return path
