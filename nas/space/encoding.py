"""The integer encoding of architectures, one owner: its column layout and every function that reads or
writes it (the vectorised predictor and the samplers use it; :class:`~nas.space.spaces.SearchSpace`
exposes it as methods).

A row is ``int8``: 4 width indices, then ``keep`` of every slot (network order), then every slot's
ratio index, then every slot's ``attn``. :func:`columns` names those column blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nas.space.arch import NUM_STAGES, Arch, ArchError, BlockChoice

if TYPE_CHECKING:                   # the space module imports this one
    from nas.space.spaces import SearchSpace

__all__ = ["Columns", "columns", "encode", "decode", "code_bounds", "check_codes", "raise_bad_rows",
           "sample_encoded"]


@dataclass(frozen=True)
class Columns:
    """The column blocks of an encoded row (slices, so ``codes[:, cols.keep]`` is a view)."""
    widths: slice
    keep: slice
    ratio: slice
    attn: slice
    width: int


def columns(space: "SearchSpace") -> Columns:
    S = space.num_slots
    k0, r0, a0 = NUM_STAGES, NUM_STAGES + S, NUM_STAGES + 2 * S
    return Columns(slice(0, NUM_STAGES), slice(k0, r0), slice(r0, a0), slice(a0, a0 + S), a0 + S)


def encode(space: "SearchSpace", archs: Sequence[Arch]) -> np.ndarray:
    """``int8`` matrix, one row per arch; archs must be in ``space`` (:class:`ArchError` otherwise)."""
    cols, n_slots = columns(space), space.num_slots
    out = np.zeros((len(archs), cols.width), dtype=np.int8)
    widx = [{w: i for i, w in enumerate(ws)} for ws in space.widths]
    ridx = {r: i for i, r in enumerate(space.ratios)}
    for n, a in enumerate(archs):
        row = out[n]
        try:
            row[cols.widths] = [widx[s][w] for s, w in enumerate(a.widths)]
            flat = [b for stage in a.blocks for b in stage]
            if len(flat) != n_slots:
                raise ValueError
            row[cols.keep] = [b.keep for b in flat]
            row[cols.ratio] = [ridx[b.ratio] for b in flat]
            row[cols.attn] = [b.attn for b in flat]
        except (KeyError, ValueError):
            space.validate(a)
            raise
    return out


def decode(space: "SearchSpace", codes) -> list[Arch]:
    """Inverse of :func:`encode`."""
    cols = columns(space)
    archs = []
    for row in codes:
        widths = tuple(space.widths[s][int(row[s])] for s in range(NUM_STAGES))
        keep, ratio, attn = row[cols.keep], row[cols.ratio], row[cols.attn]
        c, blocks = 0, []
        for d in space.max_depths:
            blocks.append(tuple(BlockChoice(bool(keep[j]), space.ratios[int(ratio[j])], bool(attn[j]))
                                for j in range(c, c + d)))
            c += d
        archs.append(Arch(widths, tuple(blocks)))
    return archs


def code_bounds(space: "SearchSpace") -> np.ndarray:
    """Per column, one more than the largest valid code (1 where only 0 is valid: attention in a slot
    that may not carry it)."""
    hi = [len(w) for w in space.widths]
    hi += [2] * space.num_slots + [len(space.ratios)] * space.num_slots
    hi += [2 if space.may_attend(s, j) else 1 for s, d in enumerate(space.max_depths) for j in range(d)]
    return np.array(hi)


def check_codes(space: "SearchSpace", codes, depths: bool = True) -> None:
    """:class:`ArchError` naming the first row of an encoded matrix that is not an architecture of
    ``space`` (a code out of range, attention where the space allows none, and with ``depths`` too few
    blocks kept). Per-column bounds first; rows are only looked at when one fails."""
    codes = np.asarray(codes)
    cols = columns(space)
    if codes.ndim != 2 or codes.shape[1] != cols.width:
        raise ValueError(f"encoded archs must have shape (N, {cols.width}) for space {space.name!r}, "
                         f"got {codes.shape}")
    if not len(codes):
        return
    hi = code_bounds(space)
    bad = None
    if int(codes.min()) < 0 or (codes.max(0) >= hi).any():
        bad = ((codes < 0) | (codes >= hi)).any(1)
    if depths:
        keep, c = codes[:, cols.keep], 0
        for s, d in enumerate(space.max_depths):
            few = np.add.reduce(keep[:, c:c + d], axis=1, dtype=np.int16) < space.min_depths[s]
            if few.any():
                bad = few if bad is None else bad | few
            c += d
    if bad is not None:
        raise_bad_rows(space, bad)


def raise_bad_rows(space: "SearchSpace", bad) -> None:
    i = int(np.flatnonzero(bad)[0])
    raise ArchError(f"encoded row {i} (of {int(np.sum(bad))} bad rows) is not an architecture of space "
                    f"{space.name!r}: a code is out of range, attention is outside {space.attention_rule()}, "
                    f"or too few blocks are kept")


def sample_encoded(space: "SearchSpace", n: int, seed: int | None = None, keep_prob: float = 0.7,
                   attn_prob: float = 0.5) -> np.ndarray:
    """``n`` random valid architectures of ``space``, already encoded (no Python object per arch)."""
    rng = np.random.default_rng(seed)
    cols, S = columns(space), space.num_slots
    out = np.zeros((n, cols.width), dtype=np.int8)
    for s in range(NUM_STAGES):
        out[:, s] = rng.integers(0, len(space.widths[s]), n)
    keep = rng.random((n, S)) < keep_prob
    attn = rng.random((n, S)) < attn_prob
    c = 0
    for s, d in enumerate(space.max_depths):
        k = keep[:, c:c + d]
        short = k.sum(1) < space.min_depths[s]
        while short.any():                       # force extra kept slots where too few
            idx = np.flatnonzero(short)
            k[idx, rng.integers(0, d, len(idx))] = True
            short = k.sum(1) < space.min_depths[s]
        for j in range(d):
            if not space.may_attend(s, j):
                attn[:, c + j] = False
        c += d
    out[:, cols.keep] = keep
    out[:, cols.ratio] = rng.integers(0, len(space.ratios), (n, S))
    out[:, cols.attn] = attn
    return out
