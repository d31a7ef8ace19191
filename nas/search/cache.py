"""The accuracy cache that makes a search resumable.

Every accuracy evaluation is appended to a CSV as it is made; a search rerun with the same evaluation
settings reads it back and replays its finished work without evaluating again.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from pathlib import Path

from nas.core.files import atomic_write_text
from nas.search.base import SearchError
from nas.space.arch import Arch

__all__ = ["EvaluationCache"]

log = logging.getLogger(__name__)


class EvaluationCache:
    """Append-only CSV (``arch``, ``accuracy``) of accuracy evaluations made under one set of evaluation
    settings, in ``folder``; the file name carries a hash of those settings (which are also written
    beside it as JSON), so changing any of them starts a new cache. ``known`` maps each cached
    architecture's JSON to its accuracy."""

    def __init__(self, folder: str | Path, settings: dict):
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        self.path = Path(folder) / f"evaluations-{digest}.csv"
        self.settings = settings
        self.known: dict[str, float] = {}
        if self.path.exists():
            self.known = self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path.with_suffix(".json"), json.dumps(settings, indent=1))

    def _read(self) -> dict[str, float]:
        """The cached evaluations; an incomplete last line (a run killed while writing it) is cut off the
        file, so the next append starts on a line of its own."""
        text = self.path.read_text()
        if text and not text.endswith("\n"):
            text = text[:text.rfind("\n") + 1]
            log.warning("%s: dropping an incomplete last line (a run killed while writing it)", self.path)
            atomic_write_text(self.path, text)
        known = {}
        for i, row in enumerate(csv.reader(io.StringIO(text))):
            if i == 0 or not row:
                continue
            try:
                acc = float(row[1])
                if len(row) != 2 or not 0.0 <= acc <= 1.0:
                    raise ValueError
                known[Arch.from_json(row[0]).to_json()] = acc
            except (ValueError, IndexError):
                raise SearchError(f"{self.path}, line {i + 1}: not an (arch, accuracy) row; delete the file "
                                  f"to evaluate again") from None
        return known

    def add(self, arch: Arch, accuracy: float) -> None:
        """Append one evaluation (the file and its header are created by the first one)."""
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["arch", "accuracy"])
            w.writerow([arch.to_json(), repr(float(accuracy))])
        self.known[arch.to_json()] = accuracy
