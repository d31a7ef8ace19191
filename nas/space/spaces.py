"""The search space: one description that drives the supernet, the profilers, the predictor and export.

An :class:`Arch` is plain data: a width per stage and, per block slot of the space, whether the block
is kept, its FFN expansion ratio and whether it carries attention. It round-trips through JSON::

    {"widths": [32, 48, 96, 176],
     "blocks": [[{"keep": true, "ratio": 4, "attn": false}, ...], ...]}

A :class:`SearchSpace` says which values each field may take. The published S0/S1/S2/L networks are
points of :data:`DEFAULT_SPACE` (:meth:`SearchSpace.canonical`).
"""
from __future__ import annotations

import json
import numbers
import random
from math import comb
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np

from models.efficientformer_v2 import ATTN_STAGES, VARIANTS, BlockConfig, NetConfig

from nas.core.errors import UserError

__all__ = ["BlockChoice", "Arch", "SearchSpace", "ArchError", "DEFAULT_SPACE", "TINY_SPACE", "get_space"]

NUM_STAGES = 4


def np_bool():
    """numpy's bool type (an architecture read back from an array may hold it)."""
    import numpy as np
    return np.bool_


class ArchError(UserError, ValueError):
    """An architecture that is not a point of the search space (the message lists every problem)."""


def _num(x: float):
    """Render 3.0 as 3 in JSON, keep 2.5 as 2.5."""
    return int(x) if float(x).is_integer() else float(x)


@dataclass(frozen=True)
class BlockChoice:
    keep: bool = True
    ratio: float = 4
    attn: bool = False

    def to_dict(self) -> dict:
        return {"keep": self.keep, "ratio": _num(self.ratio), "attn": self.attn}


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
        p = Path(str(text_or_path))
        text = p.read_text() if not str(text_or_path).lstrip().startswith("{") and p.exists() \
            else str(text_or_path)
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
            blocks[stage][slot] = BlockChoice(**{**old.__dict__, **block_kw})
        return Arch(tuple(widths or self.widths), tuple(tuple(s) for s in blocks))

    def summary(self) -> str:
        parts = []
        for s, (w, stage) in enumerate(zip(self.widths, self.blocks)):
            toks = "".join(("A" if b.attn else "F") + f"{_num(b.ratio)}" + " " for b in stage if b.keep)
            parts.append(f"stage{s + 1} w={w} d={sum(b.keep for b in stage)} [{toks.strip()}]")
        return "; ".join(parts)


@dataclass(frozen=True)
class SearchSpace:
    """Which widths, depths, ratios and attention placements are allowed.

    ``widths[s]`` lists stage ``s``'s width choices, ``max_depths[s]`` its number of block slots,
    ``min_depths[s]`` how many slots must stay kept, ``ratios`` the FFN expansion ratios and
    ``attn_stages`` the stages (0-based) whose blocks may carry attention.
    """
    name: str
    widths: tuple[tuple[int, ...], ...]
    max_depths: tuple[int, ...]
    ratios: tuple[float, ...] = (2, 3, 4)
    min_depths: tuple[int, ...] = (1, 1, 1, 1)
    attn_stages: tuple[int, ...] = ATTN_STAGES

    def __post_init__(self):
        if not (len(self.widths) == len(self.max_depths) == len(self.min_depths) == NUM_STAGES):
            raise ValueError("a search space describes exactly 4 stages")
        object.__setattr__(self, "widths", tuple(tuple(sorted(w)) for w in self.widths))
        object.__setattr__(self, "ratios", tuple(sorted(self.ratios)))

    # -- validation -----------------------------------------------------------------------------
    def errors(self, arch: Arch) -> list[str]:
        errs = []
        if len(arch.widths) != NUM_STAGES or len(arch.blocks) != NUM_STAGES:
            return [f"expected {NUM_STAGES} stages, got {len(arch.widths)} widths and {len(arch.blocks)} block lists"]
        for s in range(NUM_STAGES):
            n = f"stage {s + 1}"
            if arch.widths[s] not in self.widths[s]:
                errs.append(f"{n}: width {arch.widths[s]} is not one of {list(self.widths[s])}")
            if len(arch.blocks[s]) != self.max_depths[s]:
                errs.append(f"{n}: {len(arch.blocks[s])} block slots given, the space has {self.max_depths[s]}")
            d = arch.depths[s]
            if d < self.min_depths[s]:
                errs.append(f"{n}: {d} blocks kept, at least {self.min_depths[s]} required")
            for j, b in enumerate(arch.blocks[s]):
                if b.ratio not in self.ratios:
                    errs.append(f"{n} block {j}: expansion ratio {b.ratio} is not one of {list(self.ratios)}")
                if b.attn and s not in self.attn_stages:
                    errs.append(f"{n} block {j}: attention is only allowed in stages "
                                f"{[x + 1 for x in self.attn_stages]}")
        return errs

    def validate(self, arch: Arch) -> Arch:
        errs = self.errors(arch)
        if errs:
            raise ArchError(f"architecture is not in search space {self.name!r}:\n  - " + "\n  - ".join(errs))
        return arch

    def contains(self, arch: Arch) -> bool:
        return not self.errors(arch)

    # -- distinguished points -------------------------------------------------------------------
    def max_arch(self) -> Arch:
        """Largest subnet: widest, deepest, largest ratio, attention wherever allowed."""
        return Arch(tuple(w[-1] for w in self.widths),
                    tuple(tuple(BlockChoice(True, self.ratios[-1], s in self.attn_stages) for _ in range(d))
                          for s, d in enumerate(self.max_depths)))

    def min_arch(self) -> Arch:
        """Smallest subnet: narrowest, the last ``min_depths`` slots kept, smallest ratio, no attention."""
        return Arch(tuple(w[0] for w in self.widths),
                    tuple(tuple(BlockChoice(j >= d - m, self.ratios[0], False) for j in range(d))
                          for d, m in zip(self.max_depths, self.min_depths)))

    def sample(self, rng: random.Random | int | None = None, keep_prob: float = 0.7,
               attn_prob: float = 0.5) -> Arch:
        """A uniformly random width/ratio per choice; each slot kept with ``keep_prob``."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        blocks = []
        for s, d in enumerate(self.max_depths):
            keep = [rng.random() < keep_prob for _ in range(d)]
            while sum(keep) < self.min_depths[s]:
                keep[rng.randrange(d)] = True
            blocks.append(tuple(BlockChoice(k, rng.choice(self.ratios),
                                            s in self.attn_stages and rng.random() < attn_prob)
                                for k in keep))
        return Arch(tuple(rng.choice(w) for w in self.widths), tuple(blocks))

    def fits(self, variant: str) -> bool:
        """Whether a published variant is a point of this space (see :meth:`canonical`)."""
        try:
            self.canonical(variant)
            return True
        except ArchError:
            return False

    def canonical(self, variant: str) -> Arch:
        """A published variant placed in this space's slots.

        A stage of depth ``d`` with ``v`` attention blocks keeps its first ``d - v`` slots as plain FFN
        blocks and its last ``v`` slots as attention blocks, so attention stays at the end of the stage
        as in the official network. Dropped slots keep the ratio of the nearest slot for readability.
        """
        key = variant.lower().replace("efficientformerv2_", "")
        if key not in VARIANTS:
            raise ArchError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
        v = VARIANTS[key]
        blocks = []
        for s, (depth, ratios) in enumerate(zip(v["depths"], v["ratios"])):
            D = self.max_depths[s]
            vit = v["vit_num"] if s in ATTN_STAGES else 0
            if depth > D:
                raise ArchError(f"{variant} has {depth} blocks in stage {s + 1}; space {self.name!r} has {D} slots")
            slots = list(range(depth - vit)) + list(range(D - vit, D))
            stage = [BlockChoice(False, ratios[min(j, depth - 1)], False) for j in range(D)]
            for i, j in enumerate(slots):
                stage[j] = BlockChoice(True, ratios[i], i >= depth - vit)
            blocks.append(tuple(stage))
        return self.validate(Arch(tuple(v["widths"]), tuple(blocks)))

    def hidden_choices(self, stage: int) -> list[int]:
        return sorted({BlockConfig(r).hidden(w) for w in self.widths[stage] for r in self.ratios})

    def cardinality(self) -> int:
        """Number of distinct architectures (counting dropped slots' ratio/attn as irrelevant)."""
        total = 1
        for s, d in enumerate(self.max_depths):
            per_block = len(self.ratios) * (2 if s in self.attn_stages else 1)
            # sum over kept counts k >= min_depth of C(d, k) * per_block^k
            total *= len(self.widths[s]) * sum(comb(d, k) * per_block ** k for k in range(self.min_depths[s], d + 1))
        return total

    # -- vector encoding (for vectorised prediction and samplers) ---------------------------------
    @property
    def num_slots(self) -> int:
        return sum(self.max_depths)

    @property
    def encoding_width(self) -> int:
        """Columns of :meth:`encode`: 4 width indices, then ``keep`` of every slot (network order), then
        every slot's ratio index, then every slot's ``attn``."""
        return NUM_STAGES + 3 * self.num_slots

    def encode(self, archs: Sequence[Arch]) -> "np.ndarray":
        """``int8`` matrix, one row per arch (see :attr:`encoding_width`); archs must be in this space."""
        import numpy as np
        n_slots = self.num_slots
        out = np.zeros((len(archs), self.encoding_width), dtype=np.int8)
        widx = [{w: i for i, w in enumerate(ws)} for ws in self.widths]
        ridx = {r: i for i, r in enumerate(self.ratios)}
        k0, r0, a0 = NUM_STAGES, NUM_STAGES + n_slots, NUM_STAGES + 2 * n_slots
        for n, a in enumerate(archs):
            row = out[n]
            try:
                row[:NUM_STAGES] = [widx[s][w] for s, w in enumerate(a.widths)]
                flat = [b for stage in a.blocks for b in stage]
                if len(flat) != n_slots:
                    raise ValueError
                row[k0:r0] = [b.keep for b in flat]
                row[r0:a0] = [ridx[b.ratio] for b in flat]
                row[a0:] = [b.attn for b in flat]
            except (KeyError, ValueError):
                self.validate(a)
                raise
        return out

    def code_bounds(self) -> "np.ndarray":
        """Per column of the encoding, one more than the largest valid code (0 where only 0 is valid:
        attention outside the attention stages)."""
        import numpy as np
        hi = [len(w) for w in self.widths]
        slot_stage = [s for s, d in enumerate(self.max_depths) for _ in range(d)]
        hi += [2] * self.num_slots + [len(self.ratios)] * self.num_slots
        hi += [2 if s in self.attn_stages else 1 for s in slot_stage]
        return np.array(hi)

    def check_codes(self, codes, depths: bool = True) -> None:
        """ArchError naming the first row of an encoded matrix that is not an architecture of this space
        (a code out of range, attention outside the attention stages, and with ``depths`` too few blocks
        kept). Per-column bounds first; rows are only looked at when one fails."""
        import numpy as np
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.encoding_width:
            raise ValueError(f"encoded archs must have shape (N, {self.encoding_width}) for space {self.name!r}, "
                             f"got {codes.shape}")
        if not len(codes):
            return
        hi = self.code_bounds()
        bad = None
        if int(codes.min()) < 0 or (codes.max(0) >= hi).any():
            bad = ((codes < 0) | (codes >= hi)).any(1)
        if depths:
            keep, c = codes[:, NUM_STAGES:NUM_STAGES + self.num_slots], 0
            for s, d in enumerate(self.max_depths):
                few = np.add.reduce(keep[:, c:c + d], axis=1, dtype=np.int16) < self.min_depths[s]
                if few.any():
                    bad = few if bad is None else bad | few
                c += d
        if bad is not None:
            self.raise_bad_rows(bad)

    def raise_bad_rows(self, bad) -> None:
        import numpy as np
        i = int(np.flatnonzero(bad)[0])
        raise ArchError(f"encoded row {i} (of {int(np.sum(bad))} bad rows) is not an architecture of space "
                        f"{self.name!r}: a code is out of range, attention is outside stages "
                        f"{[x + 1 for x in self.attn_stages]}, or too few blocks are kept")

    def decode(self, codes) -> list[Arch]:
        """Inverse of :meth:`encode`."""
        n_slots = self.num_slots
        archs = []
        for row in codes:
            widths = tuple(self.widths[s][int(row[s])] for s in range(NUM_STAGES))
            c, blocks = 0, []
            for d in self.max_depths:
                blocks.append(tuple(
                    BlockChoice(bool(row[NUM_STAGES + j]), self.ratios[int(row[NUM_STAGES + n_slots + j])],
                                bool(row[NUM_STAGES + 2 * n_slots + j])) for j in range(c, c + d)))
                c += d
            archs.append(Arch(widths, tuple(blocks)))
        return archs

    def sample_encoded(self, n: int, seed: int | None = None, keep_prob: float = 0.7,
                       attn_prob: float = 0.5) -> "np.ndarray":
        """``n`` random valid architectures, already encoded (fast: no Python object per arch)."""
        import numpy as np
        rng = np.random.default_rng(seed)
        S = self.num_slots
        out = np.zeros((n, self.encoding_width), dtype=np.int8)
        for s in range(NUM_STAGES):
            out[:, s] = rng.integers(0, len(self.widths[s]), n)
        keep = rng.random((n, S)) < keep_prob
        attn = rng.random((n, S)) < attn_prob
        c = 0
        for s, d in enumerate(self.max_depths):
            k = keep[:, c:c + d]
            short = k.sum(1) < self.min_depths[s]
            while short.any():                       # force extra kept slots where too few
                idx = np.flatnonzero(short)
                k[idx, rng.integers(0, d, len(idx))] = True
                short = k.sum(1) < self.min_depths[s]
            if s not in self.attn_stages:
                attn[:, c:c + d] = False
            c += d
        out[:, NUM_STAGES:NUM_STAGES + S] = keep
        out[:, NUM_STAGES + S:NUM_STAGES + 2 * S] = rng.integers(0, len(self.ratios), (n, S))
        out[:, NUM_STAGES + 2 * S:] = attn
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "widths": [list(w) for w in self.widths], "max_depths": list(self.max_depths),
                "min_depths": list(self.min_depths), "ratios": [_num(r) for r in self.ratios],
                "attn_stages": list(self.attn_stages)}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        return cls(d["name"], tuple(tuple(w) for w in d["widths"]), tuple(d["max_depths"]),
                   tuple(d.get("ratios", (2, 3, 4))), tuple(d.get("min_depths", (1, 1, 1, 1))),
                   tuple(d.get("attn_stages", ATTN_STAGES)))


#: The default space: every published variant (S0, S1, S2, L) is a point of it; L's depths are the slots.
DEFAULT_SPACE = SearchSpace(
    name="efficientformerv2",
    widths=((16, 24, 32, 40), (32, 48, 64, 80), (64, 96, 120, 144, 168, 192), (128, 176, 224, 288, 336, 384)),
    max_depths=(5, 5, 15, 10),
    ratios=(2, 3, 4),
)

#: A small space for tests and quick demos (seconds to profile, train and search on a CPU).
TINY_SPACE = SearchSpace(
    name="tiny",
    widths=((16, 24), (24, 32), (32, 48), (48, 64)),
    max_depths=(1, 1, 3, 2),
    ratios=(2, 4),
)

SPACES = {s.name: s for s in (DEFAULT_SPACE, TINY_SPACE)}


def get_space(name_or_path: str | SearchSpace = DEFAULT_SPACE.name) -> SearchSpace:
    """A registered space by name, or one read from a JSON file of :meth:`SearchSpace.to_dict`."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    if name_or_path in SPACES:
        return SPACES[name_or_path]
    p = Path(name_or_path)
    if p.suffix == ".json" and p.exists():
        return SearchSpace.from_dict(json.loads(p.read_text()))
    raise KeyError(f"unknown search space {name_or_path!r}; built-in: {sorted(SPACES)} (or a path to a .json)")
