"""The accuracy cache that makes a search resumable.

Every accuracy evaluation is appended to a journal (:mod:`nas.core.journal`) as it is made; a search rerun
with the same evaluation settings reads it back and replays its finished work without evaluating again.
"""
from __future__ import annotations

import logging
from pathlib import Path

from nas.core.journal import Journal
from nas.search.base import SearchError
from nas.space.arch import Arch

__all__ = ["EvaluationCache"]

log = logging.getLogger(__name__)

COLUMNS = ["arch", "accuracy"]


class EvaluationCache:
    """Append-only CSV (``arch``, ``accuracy``) of accuracy evaluations made under one set of evaluation
    settings, in ``folder``: ``evaluations-{digest}.csv``, the digest of those settings (which are also
    written beside it as JSON), so changing any of them starts a new cache. ``known`` maps each cached
    architecture's JSON to its accuracy. A row torn by a kill is dropped (and evaluated again); a complete
    row that is not an (arch, accuracy) pair is an error naming the file and line."""

    def __init__(self, folder: str | Path, settings: dict):
        self.journal = Journal.keyed(folder, "evaluations", COLUMNS, settings, what="accuracy cache",
                                     error=SearchError, fix="delete it to evaluate those architectures again")
        self.path = self.journal.path
        self.settings = settings
        self.known: dict[str, float] = {}
        for i, row in enumerate(self.journal.rows(), start=2):
            try:
                acc = float(row[1])
                if not 0.0 <= acc <= 1.0:
                    raise ValueError
                self.known[Arch.from_json(row[0]).to_json()] = acc
            except ValueError:
                raise SearchError(f"{self.path}, line {i}: not an (arch, accuracy) row; delete the file to "
                                  f"evaluate again") from None
        self.journal.open()

    def add(self, arch: Arch, accuracy: float) -> None:
        """Append one evaluation, flushed at once."""
        self.journal.append([arch.to_json(), repr(float(accuracy))])
        self.known[arch.to_json()] = accuracy

    def close(self) -> None:
        self.journal.close()
