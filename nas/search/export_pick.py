"""The search's pick kept: ``best_arch.json``, and the network exported (``export/``)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from nas.core.files import atomic_write_text
from nas.export.subnet import export_subnet
from nas.search.objective import Evaluation
from nas.supernet.supernet import SlimmableSupernet

__all__ = ["save_pick", "export_pick"]

log = logging.getLogger(__name__)


def save_pick(pick: Evaluation, out: Path) -> Path:
    """``best_arch.json`` in ``out``: the pick's architecture."""
    return atomic_write_text(out / "best_arch.json", pick.arch.to_json(indent=1))


def export_pick(net: SlimmableSupernet, pick: Evaluation, folder: Path, calib_batches, formats: Sequence[str]) -> dict:
    """The pick sliced from the supernet ``net`` (BatchNorms recalibrated on ``calib_batches``) and exported
    to ``formats`` in ``folder``, each checked against the supernet; the report of each format."""
    log.info(f"Exporting the chosen arch to {folder} ({','.join(formats)}) ...")
    rep = export_subnet(net, pick.arch, folder, calib_batches=calib_batches, formats=list(formats))
    for fmt, e in rep["formats"].items():
        check = (f"max |Δlogit| {e['max_abs_diff']:.2e}" if "max_abs_diff" in e
                 else e.get("note") or e.get("error", ""))
        log.info(f"  {fmt:8s} {e.get('file', '')}  {check}")
    return rep["formats"]
