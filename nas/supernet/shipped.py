"""Supernets shipped with the package, so that a first search need not train one.

A shipped supernet is a compact copy of a training run's checkpoint (:func:`save_compact`): the weights
in half precision (loaded back as float32; the accuracies in its card were measured on the compact file
itself), the metadata, and no optimizer or RNG state, so it cannot be resumed, only searched or
fine-tuned from. Beside it, ``<name>.json`` (its card) records the command that trained it, the run's
settings and wall time, the machine, and its accuracies.

    from nas.supernet.shipped import shipped_supernet
    path = shipped_supernet("efficientformerv2-small")      # None where the package ships none
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from nas.core.files import atomic_write_text, file_digest, protect, read_json
from nas.supernet.checkpoint import CheckpointError, atomic_save, load_checkpoint

__all__ = ["SHIPPED_DIR", "shipped_supernet", "shipped_card", "save_compact", "write_card"]

#: Where the package keeps its shipped supernets: ``<space name>.pt`` and its card ``<space name>.json``
#: (read-only to every command; ``benchmarks/ship_supernet.py`` writes them inside ``nas.core.files.shipping``).
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
protect(SHIPPED_DIR, "supernets")


def shipped_supernet(space: str) -> Path | None:
    """The shipped supernet of search space ``space``, or None where there is none."""
    path = SHIPPED_DIR / f"{space}.pt"
    return path if path.is_file() else None


def shipped_card(path: str | Path) -> dict:
    """The card beside a shipped supernet (``{}`` where there is none)."""
    card = Path(path).with_suffix(".json")
    return read_json(card, "supernet card", CheckpointError) if card.exists() else {}


def save_compact(run: str | Path, out: str | Path, card: dict | None = None,
                 dtype: torch.dtype = torch.float16) -> Path:
    """Write the weights of the checkpoint at ``run`` (a file or run folder) to ``out`` with floating-point
    tensors in ``dtype``, plus its metadata and step; with ``card``, also its card (:func:`write_card`).
    Returns ``out``."""
    ck = load_checkpoint(run)
    if "model" not in ck or "meta" not in ck:
        raise CheckpointError(f"{run} is not a supernet checkpoint (no model weights and metadata)")
    model = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ck["model"].items()}
    out = atomic_save({"model": model, "meta": ck["meta"], "step": ck.get("step"), "compact": str(dtype)}, out)
    if card is not None:
        write_card(out, card)
    return out


def write_card(path: str | Path, card: dict) -> Path:
    """Write ``card`` beside the shipped supernet at ``path`` (``.json`` suffix), adding the file's name,
    size and SHA-256; returns the card's path."""
    path = Path(path)
    card = {**card, "file": path.name, "bytes": path.stat().st_size, "sha256": file_digest(path)}
    return atomic_write_text(path.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
