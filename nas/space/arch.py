"""Architectures as plain data.

An :class:`Arch` is a width per stage and, per block slot of the space, whether the block is kept, its
FFN expansion ratio and whether it carries attention. It round-trips through JSON::

    {"widths": [32, 48, 96, 176],
     "blocks": [[{"keep": true, "ratio": 4, "attn": false}, ...], ...]}

Which values each field may take is the :class:`~nas.space.spaces.SearchSpace`'s business.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, replace as replace_fields
from pathlib import Path
from typing import Iterator

import numpy as np

from models.configs import BlockConfig, NetConfig
from nas.core.errors import UserError
from nas.core.files import read_json

__all__ = ["NUM_STAGES", "BlockChoice", "Arch", "ArchError", "json_number"]

NUM_STAGES = 4


def np_bool():
    """numpy's bool type (an architecture read back from an array may hold it)."""
    return np.bool_


class ArchError(UserError, ValueError):
    """An architecture that is not a point of the search space (the message lists every problem)."""


def json_number(x: float):
    """Render 3.0 as 3 in JSON, keep 2.5 as 2.5."""
    return int(x) if float(x).is_integer() else float(x)


@dataclass(frozen=True, slots=True)
class BlockChoice:
    """One block slot's choice. Slotted: a predictor reads millions of these one at a time."""
    keep: bool = True
    ratio: float = 4
    attn: bool = False

    def to_dict(self) -> dict:
        return {"keep": self.keep, "ratio": json_number(self.ratio), "attn": self.attn}


@dataclass(frozen=True)
class Arch:
    """A point of a search space: stage widths and per-slot block choices."""
    widths: tuple[int, ...]
    blocks: tuple[tuple[BlockChoice, ...], ...]

    # -- plain-data round trip -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"widths": list(self.widths), "blocks": [[b.to_dict() for b in s] for s in self.blocks]}

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict) -> "Arch":
        """Strict: exactly the keys ``widths`` and ``blocks``; widths are integers; every block is an object
        with ``ratio`` (a number) and optional ``keep`` / ``attn`` (JSON booleans: ``"false"`` is refused,
        not read as true); unknown or misspelled keys are errors, never ignored."""
        if not isinstance(d, dict) or "widths" not in d or "blocks" not in d:
            raise ArchError('an architecture is a JSON object with keys "widths" and "blocks"')
        extra = sorted(set(d) - {"widths", "blocks"})
        if extra:
            raise ArchError(f"unknown architecture key(s) {extra}; an architecture has only \"widths\" and \"blocks\"")
        widths, stages = d["widths"], d["blocks"]
        if not isinstance(widths, (list, tuple)) or not all(isinstance(w, numbers.Integral) and not isinstance(w, bool)
                                                            for w in widths):
            raise ArchError(f'"widths" must be a list of integers, got {widths!r}')
        if not isinstance(stages, (list, tuple)) or not all(isinstance(st, (list, tuple)) for st in stages):
            raise ArchError('"blocks" must be a list (one per stage) of lists of block objects')
        blocks = []
        for si, stage in enumerate(stages):
            row = []
            for bi, b in enumerate(stage):
                where = f"stage {si + 1} block {bi}"
                if not isinstance(b, dict):
                    raise ArchError(f"{where}: a block is an object with \"ratio\", \"keep\" and \"attn\", got {b!r}")
                bad = sorted(set(b) - {"keep", "ratio", "attn"})
                if bad:
                    raise ArchError(f"{where}: unknown key(s) {bad}; a block has \"keep\", \"ratio\" and \"attn\"")
                if "ratio" not in b:
                    raise ArchError(f'{where}: "ratio" is missing ("keep" and "attn" default to true and false)')
                ratio = b["ratio"]
                if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or ratio != ratio:
                    raise ArchError(f'{where}: "ratio" must be a number, got {ratio!r}')
                for k in ("keep", "attn"):
                    if k in b and not isinstance(b[k], (bool, np_bool())):
                        raise ArchError(f"{where}: {k!r} must be true or false, got {b[k]!r}")
                row.append(BlockChoice(keep=bool(b.get("keep", True)), ratio=ratio, attn=bool(b.get("attn", False))))
            blocks.append(tuple(row))
        return cls(tuple(int(w) for w in widths), tuple(blocks))

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "Arch":
        text = str(text_or_path)
        if not text.lstrip().startswith("{") and Path(text).exists():        # a file holding the JSON
            return cls.from_dict(read_json(text, "architecture", ArchError))
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ArchError(f"not valid JSON: {e}") from None

    # -- views ----------------------------------------------------------------------------------
    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(sum(b.keep for b in s) for s in self.blocks)

    @property
    def num_attn(self) -> int:
        return sum(b.keep and b.attn for s in self.blocks for b in s)

    def kept(self) -> Iterator[tuple[int, int, BlockChoice]]:
        """(stage, slot, choice) of every kept block, in network order."""
        for s, stage in enumerate(self.blocks):
            for j, b in enumerate(stage):
                if b.keep:
                    yield s, j, b

    def net_config(self, num_classes: int = 1000, distillation: bool = True, in_chans: int = 3) -> NetConfig:
        """The concrete network (dropped blocks removed) for :class:`models.EfficientFormerV2`."""
        blocks = tuple(tuple(BlockConfig(float(b.ratio), b.attn) for b in s if b.keep) for s in self.blocks)
        return NetConfig(tuple(self.widths), blocks, num_classes=num_classes, in_chans=in_chans,
                         distillation=distillation)

    def replace(self, *, widths=None, stage: int | None = None, slot: int | None = None, **block_kw) -> "Arch":
        """A copy with a new width tuple and/or one block slot changed (``keep``, ``ratio``, ``attn``)."""
        blocks = [list(s) for s in self.blocks]
        if stage is not None:
            old = blocks[stage][slot]
            blocks[stage][slot] = replace_fields(old, **block_kw)
        return Arch(tuple(widths or self.widths), tuple(tuple(s) for s in blocks))

    def summary(self) -> str:
        parts = []
        for s, (w, stage) in enumerate(zip(self.widths, self.blocks)):
            toks = "".join(("A" if b.attn else "F") + f"{json_number(b.ratio)}" + " " for b in stage if b.keep)
            parts.append(f"stage{s + 1} w={w} d={sum(b.keep for b in stage)} [{toks.strip()}]")
        return "; ".join(parts)


