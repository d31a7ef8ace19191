"""The action pool of the fine-grained search (EfficientFormerV2 §4): one-step edits of an architecture.

An :class:`Action` shrinks one thing of an architecture: a stage's width (``C``), a block's presence
(``N``, the block is dropped with its attention), a block's FFN expansion ratio (``E``), or a block's
attention (``A``). :func:`action_pool` lists every action that applies to an architecture, with the
architecture it leads to.
"""
from __future__ import annotations

from dataclasses import dataclass

from nas.space.arch import Arch
from nas.space.spaces import SearchSpace

__all__ = ["ACTION_KINDS", "PAPER_ACTIONS", "Action", "action_pool"]

ACTION_KINDS = {
    "C": "shrink a stage's width to the next smaller choice",
    "N": "drop a block (with its attention, if any)",
    "E": "lower a block's FFN expansion ratio to the next smaller choice",
    "A": "remove a block's attention, keeping its FFN",
}
PAPER_ACTIONS = "CNE"


@dataclass(frozen=True)
class Action:
    """One edit: ``kind`` (a key of :data:`ACTION_KINDS`) in stage ``stage`` (0-based), at block slot
    ``slot`` for the per-block kinds (``N``, ``E``, ``A``)."""
    kind: str
    stage: int
    slot: int | None = None

    def __str__(self):
        return f"A_{self.kind}[stage {self.stage + 1}" + (f", block {self.slot}]" if self.slot is not None else "]")

    def apply(self, arch: Arch, space: SearchSpace) -> Arch | None:
        """The architecture after this action, or None if it cannot apply."""
        s = self.stage
        if self.kind == "C":
            choices = space.widths[s]
            i = choices.index(arch.widths[s])
            if i == 0:
                return None
            widths = list(arch.widths)
            widths[s] = choices[i - 1]
            return arch.replace(widths=tuple(widths))
        b = arch.blocks[s][self.slot]
        if not b.keep:
            return None
        if self.kind == "N":
            if arch.depths[s] <= space.min_depths[s]:
                return None
            return arch.replace(stage=s, slot=self.slot, keep=False, attn=False)
        if self.kind == "E":
            i = space.ratios.index(b.ratio)
            return None if i == 0 else arch.replace(stage=s, slot=self.slot, ratio=space.ratios[i - 1])
        if self.kind == "A":
            return arch.replace(stage=s, slot=self.slot, attn=False) if b.attn else None
        raise ValueError(f"unknown action kind {self.kind!r}")


def action_pool(arch: Arch, space: SearchSpace, kinds: str = PAPER_ACTIONS) -> list[tuple[Action, Arch]]:
    """Every applicable action of the given ``kinds`` from ``arch``, with its resulting architecture."""
    out = []
    for s in range(len(arch.widths)):
        candidates = [Action("C", s)] if "C" in kinds else []
        for j in range(len(arch.blocks[s])):
            candidates += [Action(k, s, j) for k in "NEA" if k in kinds]
        for a in candidates:
            new = a.apply(arch, space)
            if new is not None:
                out.append((a, new))
    return out
