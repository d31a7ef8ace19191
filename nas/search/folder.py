"""A search folder holds one search: ``run.json`` records what its results are of."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from nas.core.files import atomic_write_text, read_json
from nas.search.base import SearchError

__all__ = ["RUN_RECORD", "RESULTS", "claim_folder"]

log = logging.getLogger(__name__)

#: what a search folder records of the search whose results it holds
RUN_RECORD = "run.json"
#: files that only a search's results are
RESULTS = ("summary.json", "best_arch.json", "comparison.csv", "export")


def claim_folder(out: Path, identity: dict, overwrite: bool = False) -> None:
    """Make ``out`` the folder of the search ``identity`` describes (``run.json``: the settings that decide
    its picks, :meth:`~nas.search.SearchConfig.identity`, and the content of the supernet, the table and its
    calibration). The same search again resumes; another search is refused, unless ``overwrite``, which
    removes the other search's results (its keyed accuracy caches stay: they never serve another supernet
    or other evaluation settings)."""
    record = out / RUN_RECORD
    identity = json.loads(json.dumps(identity))
    if record.exists():
        old = read_json(record, "search record", SearchError, fix=f"remove {out} or pass --overwrite")
        diffs = [k for k in sorted(set(old) | set(identity)) if old.get(k) != identity.get(k)]
    else:
        diffs = ["(unrecorded)"] if any((out / n).exists() for n in RESULTS) else []
    if diffs and not overwrite:
        said = "; ".join(f"{k}: {old.get(k)!r} there, {identity.get(k)!r} now" for k in diffs[:4]) \
            if record.exists() else "its settings were not recorded"
        raise SearchError(f"{out} holds the results of another search ({said}); rerun that search with "
                          f"its own settings to resume it, write elsewhere with --out-dir, or replace its "
                          f"results with --overwrite")
    if diffs:
        log.info(f"--overwrite: removing the results of the previous search in {out}")
        for p in out.iterdir():
            if p.name == ".lock" or p.name.startswith("evaluations-"):
                continue
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    atomic_write_text(record, json.dumps(identity, indent=1) + "\n")
