"""Plotting, one owner: matplotlib imported only when a figure is drawn (headless ``Agg`` backend), and
figures written atomically (a killed run never leaves half a PNG)."""
from __future__ import annotations

from pathlib import Path

from nas.core.errors import UserError
from nas.core.files import atomic_open

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
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    finally:
        pyplot().close(fig)
    return path
