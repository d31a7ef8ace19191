"""Search spaces: which values each field of an :class:`~nas.space.arch.Arch` may take.

One description drives the supernet, the profilers' units, the predictor's keys and the exported model.
The published S0/S1/S2/L networks are points of :data:`DEFAULT_SPACE` (:meth:`SearchSpace.canonical`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from models.configs import ATTN_STAGES, VARIANTS, BlockConfig
from nas.core.errors import UserError
from nas.core.files import parsing, read_json
from nas.space import encoding
from nas.space.arch import NUM_STAGES, Arch, ArchError, BlockChoice, json_number

__all__ = ["SearchSpace", "SpaceError", "DEFAULT_SPACE", "CPU_SPACE", "TINY_SPACE", "SPACES", "get_space"]


class SpaceError(UserError, KeyError):
    """A search space that is neither built in nor a readable space JSON file."""

@dataclass(frozen=True)
class SearchSpace:
    """Which widths, depths, ratios and attention placements are allowed.

    ``widths[s]`` lists stage ``s``'s width choices, ``max_depths[s]`` its number of block slots,
    ``min_depths[s]`` how many slots must stay kept, ``ratios`` the FFN expansion ratios,
    ``attn_stages`` the stages (0-based) whose blocks may carry attention and ``attn_slots`` how many
    of such a stage's last slots may (None: every slot). The published networks put attention at the
    end of stages 3 and 4, so ``attn_slots=2`` keeps every variant with ``vit_num`` 2 and leaves the
    supernet without attention weights in the other slots.
    """
    name: str
    widths: tuple[tuple[int, ...], ...]
    max_depths: tuple[int, ...]
    ratios: tuple[float, ...] = (2, 3, 4)
    min_depths: tuple[int, ...] = (1, 1, 1, 1)
    attn_stages: tuple[int, ...] = ATTN_STAGES
    attn_slots: int | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a search space's name must be a non-empty string, got {self.name!r}")
        if not (len(self.widths) == len(self.max_depths) == len(self.min_depths) == NUM_STAGES):
            raise ValueError("a search space describes exactly 4 stages")
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)
        if not all(len(w) and all(whole(x) and x > 0 for x in w) for w in self.widths):
            raise ValueError(f"widths must list positive whole numbers per stage, got {self.widths!r}")
        if not all(whole(m) and whole(d) and 1 <= m <= d for m, d in zip(self.min_depths, self.max_depths)):
            raise ValueError(f"depths must be whole numbers with 1 <= min_depths <= max_depths, got "
                             f"{self.min_depths!r} and {self.max_depths!r}")
        if not self.ratios or not all(isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0
                                      for r in self.ratios):
            raise ValueError(f"ratios must be positive numbers, got {self.ratios!r}")
        if not all(whole(s) and 0 <= s < NUM_STAGES for s in self.attn_stages):
            raise ValueError(f"attn_stages must be stage indices 0-{NUM_STAGES - 1}, got {self.attn_stages!r}")
        if self.attn_slots is not None and (isinstance(self.attn_slots, bool) or not isinstance(self.attn_slots, int)
                                            or self.attn_slots < 0):
            raise ValueError(f"attn_slots must be None or a whole number >= 0, got {self.attn_slots!r}")
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
                if b.attn and not self.may_attend(s, j):
                    errs.append(f"{n} block {j}: attention is only allowed in {self.attention_rule()}")
        return errs

    def may_attend(self, stage: int, slot: int) -> bool:
        """Whether slot ``slot`` (0-based) of stage ``stage`` may carry attention."""
        return stage in self.attn_stages and (self.attn_slots is None
                                              or slot >= self.max_depths[stage] - self.attn_slots)

    def attention_rule(self) -> str:
        """Where attention is allowed, in words (for error messages)."""
        stages = f"stages {[x + 1 for x in self.attn_stages]}"
        return stages if self.attn_slots is None else f"the last {self.attn_slots} slots of {stages}"

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
                    tuple(tuple(BlockChoice(True, self.ratios[-1], self.may_attend(s, j)) for j in range(d))
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
                                            self.may_attend(s, j) and rng.random() < attn_prob)
                                for j, k in enumerate(keep)))
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
            # ways[k]: choices of the slots seen so far with k of them kept (a kept slot: a ratio, and
            # attention or not where allowed); the stage counts the ways with at least min_depth kept
            ways = [1]
            for j in range(d):
                per_block = len(self.ratios) * (2 if self.may_attend(s, j) else 1)
                ways = [(ways[k] if k < len(ways) else 0) + (ways[k - 1] * per_block if k else 0)
                        for k in range(len(ways) + 1)]
            total *= len(self.widths[s]) * sum(ways[self.min_depths[s]:])
        return total

    # -- vector encoding (layout and code: nas.space.encoding) ------------------------------------
    @property
    def num_slots(self) -> int:
        return sum(self.max_depths)

    @property
    def encoding_width(self) -> int:
        """Columns of :meth:`encode` (see :func:`nas.space.encoding.columns`)."""
        return encoding.columns(self).width

    def encode(self, archs: Sequence[Arch]) -> np.ndarray:
        """``int8`` matrix, one row per arch (:func:`nas.space.encoding.encode`)."""
        return encoding.encode(self, archs)

    def decode(self, codes) -> list[Arch]:
        """Inverse of :meth:`encode`."""
        return encoding.decode(self, codes)

    def code_bounds(self) -> np.ndarray:
        return encoding.code_bounds(self)

    def check_codes(self, codes, depths: bool = True) -> None:
        """:class:`ArchError` naming the first encoded row that is not an architecture of this space."""
        encoding.check_codes(self, codes, depths)

    def raise_bad_rows(self, bad) -> None:
        encoding.raise_bad_rows(self, bad)

    def sample_encoded(self, n: int, seed: int | None = None, keep_prob: float = 0.7,
                       attn_prob: float = 0.5) -> np.ndarray:
        """``n`` random valid architectures, already encoded (fast: no Python object per arch)."""
        return encoding.sample_encoded(self, n, seed, keep_prob, attn_prob)

    def to_dict(self) -> dict:
        return {"name": self.name, "widths": [list(w) for w in self.widths], "max_depths": list(self.max_depths),
                "min_depths": list(self.min_depths), "ratios": [json_number(r) for r in self.ratios],
                "attn_stages": list(self.attn_stages),
                **({"attn_slots": self.attn_slots} if self.attn_slots is not None else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        return cls(d["name"], tuple(tuple(w) for w in d["widths"]), tuple(d["max_depths"]),
                   tuple(d.get("ratios", (2, 3, 4))), tuple(d.get("min_depths", (1, 1, 1, 1))),
                   tuple(d.get("attn_stages", ATTN_STAGES)), d.get("attn_slots"))


#: The default space: every published variant (S0, S1, S2, L) is a point of it; L's depths are the slots.
DEFAULT_SPACE = SearchSpace(
    name="efficientformerv2",
    widths=((16, 24, 32, 40), (32, 48, 64, 80), (64, 96, 120, 144, 168, 192), (128, 176, 224, 288, 336, 384)),
    max_depths=(5, 5, 15, 10),
    ratios=(2, 3, 4),
)

#: The CPU default: the neighbourhood of S0. Its widths are those of the full space up to S0's (S0's is the
#: widest choice of every stage), its slots one more than S0 has in every stage but the first, two more in
#: stage 3; ratios 2-4; attention in the last two slots of stages 3 and 4, where S0 has it. S0 is a point
#: of it and its largest subnet is about 1.3x slower, so a search down to S0's latency has room to trade;
#: its supernet (4.4 M weights) trains on two CPU cores in half an hour, and every table of the full
#: space covers it.
CPU_SPACE = SearchSpace(
    name="efficientformerv2-small",
    widths=((16, 24, 32), (32, 48), (64, 96), (128, 176)),
    max_depths=(3, 3, 8, 6),
    ratios=(2, 3, 4),
    attn_slots=2,
)

#: A small space for tests and quick demos (seconds to profile, train and search on a CPU).
TINY_SPACE = SearchSpace(
    name="tiny",
    widths=((16, 24), (24, 32), (32, 48), (48, 64)),
    max_depths=(1, 1, 3, 2),
    ratios=(2, 4),
)

SPACES = {s.name: s for s in (DEFAULT_SPACE, CPU_SPACE, TINY_SPACE)}


def get_space(name_or_path: str | SearchSpace = DEFAULT_SPACE.name) -> SearchSpace:
    """A registered space by name, or one read from a JSON file of :meth:`SearchSpace.to_dict`."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    if name_or_path in SPACES:
        return SPACES[name_or_path]
    p = Path(name_or_path)
    if p.suffix == ".json" and p.exists():
        d = read_json(p, "search space", SpaceError, fix="write it with SearchSpace.to_dict()")
        with parsing(p, "search space", SpaceError, "write it with SearchSpace.to_dict()"):
            return SearchSpace.from_dict(d)
    raise SpaceError(f"unknown search space {name_or_path!r}; built-in: {sorted(SPACES)} (or a path to a .json)")
