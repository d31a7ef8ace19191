"""Latency predictor built on a lookup table: ``latency(arch)`` in microseconds, not minutes of measuring.

    from nas.latency.predictor import LatencyPredictor
    pred = LatencyPredictor.from_table("local-cpu")          # or a path to a table CSV
    pred.predict(arch)                                        # ms, one Arch / dict / JSON
    pred.predict_many(space.sample_encoded(100_000))          # vectorised (encoded archs or a list)
    pred.params(arch), pred.mes(arch)

A prediction is the sum of the table's per-unit medians (see :mod:`nas.space.units`), mapped through a
linear calibration fitted on whole networks measured end to end on the same runtime
(``python -m nas.calibrate``), which absorbs inter-block overhead and the per-call cost each unit
paid when measured alone. A unit missing from the table is never silently 0 ms: by default it is an
error naming the missing keys and the profiler command that fills them; ``fallback="regression"``
prices it with a per-kind linear model over the unit's features, fitted on the table.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from nas.core.errors import UserError
from nas.core.values import IMG_SIZE, POSITIVE_INT
from nas.latency.calibration import Calibration, calibration_path, load_calibration
from nas.space.arch import NUM_STAGES, Arch
from nas.space.encoding import columns
from nas.space.metrics import MES, count_macs, count_params
from nas.space.spaces import DEFAULT_SPACE, SearchSpace, get_space
from nas.space.units import BlockSpec, arch_units, unit_grid
from profilers.tables.meta import TableMeta
from profilers.tables.table import LatencyTable

__all__ = ["LatencyPredictor", "MissingLatencyError", "Calibration", "calibration_path"]


class MissingLatencyError(UserError, KeyError):
    """The table has no entry for some units of the architecture(s)."""

    def __init__(self, keys: Iterable[str], hint: str):
        self.keys = sorted(set(keys))
        shown = ", ".join(self.keys[:12]) + (f" ... ({len(self.keys)} in all)" if len(self.keys) > 12 else "")
        super().__init__(f"latency table has no entry for {shown}. {hint}")

    def __str__(self):
        return self.args[0]


def _features(spec: BlockSpec) -> list[float]:
    out_side = spec.res // spec.stride if spec.kind in ("stem", "downsample") else spec.res
    return [spec.macs / 1e6, spec.params / 1e6, spec.cin * spec.res ** 2 / 1e6,
            spec.cout * out_side ** 2 / 1e6, 1.0]


class _Fallback:
    """Per-kind least-squares latency model over unit features (MACs, params, activation sizes)."""

    def __init__(self, specs: list[BlockSpec], lat: np.ndarray):
        self.coef, self.report = {}, {}
        kinds = sorted({s.kind for s in specs})
        for k in kinds:
            idx = [i for i, s in enumerate(specs) if s.kind == k]
            X = np.array([_features(specs[i]) for i in idx])
            y = lat[idx]
            coef, *_ = np.linalg.lstsq(X, y, rcond=None)
            self.coef[k] = coef
            # leave-one-out error from the hat matrix: e_i / (1 - h_ii)
            H = X @ np.linalg.pinv(X)
            loo = (X @ coef - y) / np.clip(1 - np.diag(H), 1e-6, None)
            self.report[k] = {"n": len(idx), "loo_mape_pct": float(np.mean(np.abs(loo / y)) * 100)}

    def __call__(self, spec: BlockSpec) -> float:
        if spec.kind not in self.coef:
            raise MissingLatencyError([spec.key], f"the table has no '{spec.kind}' unit at all to regress on")
        return float(max(np.dot(_features(spec), self.coef[spec.kind]), 0.0))


class _Outside(ValueError):
    """Raised by the scalar path for an architecture outside the space (which is then validated)."""


_U64 = np.uint64
_BYTE_SUM = _U64(0x0101010101010101)       # x * _BYTE_SUM >> 56: the sum of x's eight bytes (if it is < 256)


class _EncodedLookup:
    """The encoded path's lookup: per stage, one table read per row.

    A stage's FFN latency depends only on its width and on how many kept blocks use each ratio, and its
    attention latency on its width and how many kept blocks carry attention. The tables hold those sums
    for every width and count, computed with exactly the numpy operations of
    :meth:`LatencyPredictor._group_sums_generic`, so every result is the same floating-point number; a
    stage that keeps too few blocks reads NaN (refused afterwards, with the row named).

    The counts come from the ``int8`` rows eight slots at a time: eight bytes of a row's ``keep``
    (``ratio``, ``attn``) columns read as one ``uint64`` are eight slots' codes, and multiplying by
    0x0101010101010101 adds a word's bytes into its top byte. Per slot, one byte holds
    ``[kept and ratio 1] + 16 [kept and ratio 2]`` and another ``kept + 16 [kept and attention]``, so a
    stage's byte sums are (ratio-1 count + 16 ratio-2 count) and (kept + 16 attention count): exact while
    a stage has at most 15 slots and a space at most 3 ratios (:meth:`build` returns None otherwise, and
    the generic path serves). Rows go in chunks that stay in cache.
    """
    CHUNK = 8192
    MAX_WIDTH_COMBINATIONS = 1 << 20        # the stem/head/downsample table has one entry per combination

    @classmethod
    def build(cls, pred: "LatencyPredictor") -> "_EncodedLookup | None":
        sp = pred.space
        if (len(sp.ratios) > 3 or not all(1 <= d <= 15 for d in sp.max_depths)
                or math.prod(map(len, sp.widths)) > cls.MAX_WIDTH_COMBINATIONS):
            return None
        return cls(pred)

    def __init__(self, pred: "LatencyPredictor"):
        sp = self.space = pred.space
        cols = columns(sp)
        self.width, S, k0, nr = cols.width, sp.num_slots, cols.keep.start, len(sp.ratios)
        self.slots = S
        self.bounds = np.tile(sp.code_bounds().astype(np.uint8), self.CHUNK)
        self.stages = []
        c = 0
        for s, d in enumerate(sp.max_depths):
            # the words that cover the stage's slots (read from the keep block; +S, +2S: ratio, attn), each
            # with the mask of its bytes that belong to the stage; no word reaches past the end of a row
            first = min(c, S - 8)
            words = [(k0 + first, _U64(((1 << 8 * min(d, 8)) - 1) << 8 * (c - first)))]
            if d > 8:
                words.append((k0 + c + d - 8, _U64(((1 << 8 * (d - 8)) - 1) << 8 * (16 - d))))
            # FFN table: index (w * (d + 1) + kept) * span + n1 + 16 n2 (n1, n2: kept blocks of ratio 1, 2)
            span = 17 * d + 1
            n_w = len(sp.widths[s])
            counts = np.array([c_ for c_ in np.ndindex(*(d + 1,) * nr) if sum(c_) <= d], dtype=np.int64)
            n1 = counts[:, 1] if nr > 1 else 0
            n2 = counts[:, 2] if nr > 2 else 0
            ffn = np.full(n_w * (d + 1) * span, np.nan)
            for w in range(n_w):
                rows = np.repeat(pred._ffn[s][w:w + 1], len(counts), axis=0)
                vals = np.where(counts > 0, rows * counts, 0.0).sum(1)
                kept = counts.sum(1)
                ok = kept >= sp.min_depths[s]
                ffn[((w * (d + 1) + kept) * span + n1 + 16 * n2)[ok]] = vals[ok]
            attn = None
            if pred._attn[s] is not None:                  # attention table: index w * (d + 1) + count
                n = np.arange(d + 1, dtype=np.int64)[None, :]
                attn = np.where(n > 0, n * pred._attn[s][:, None], 0.0).ravel()
            self.stages.append((words, _U64(8 * s), _U64((d + 1) * span), _U64(span), ffn, _U64(d + 1), attn))
            c += d
        # stem, head and downsamples: one table over the four widths, added as the generic path adds them
        n = [len(w) for w in sp.widths]
        i0, i1, i2, i3 = (x.ravel() for x in np.indices(n))
        other = pred._stem[i0] + pred._head[i3]
        for s, (a, b) in enumerate(((i0, i1), (i1, i2), (i2, i3)), start=1):
            other += pred._down[s][a, b]
        self.other = other
        self.other_index = (_U64(n[1] * n[2] * n[3]), _U64(n[2] * n[3]), _U64(n[3]))

    def sums(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ffn, attn, other, total) of ``int8`` (or ``uint8``) rows: see the class."""
        codes = np.ascontiguousarray(codes)
        N, W, S = len(codes), self.width, self.slots
        buf = codes.view(np.uint8).reshape(-1)
        f_all, a_all, o_all, total = np.empty(N), np.zeros(N), np.empty(N), np.empty(N)
        byte, sh4, sh8, sh16, sh24, top = _U64(0xFF), _U64(4), _U64(8), _U64(16), _U64(24), _U64(56)
        nib, one = _U64(15), _U64(1)
        for r0 in range(0, N, self.CHUNK):
            n = min(self.CHUNK, N - r0)
            # a code is out of range iff its byte (negative codes read as 128-255) reaches the column's bound
            if np.greater_equal(buf[r0 * W:(r0 + n) * W], self.bounds[:n * W]).any():
                self.space.check_codes(codes, depths=False)     # ArchError naming the first bad row
                raise AssertionError("check_codes accepted a code out of range")

            def word(col):                                  # the uint64 at byte ``col`` of each row
                return np.ndarray((n,), "<u8", buffer=buf, offset=r0 * W + col, strides=(W,))

            widths = np.ndarray((n,), "<u4", buffer=buf, offset=r0 * W, strides=(W,)).astype(_U64)
            f = a = None
            for words, shift, w_step, kept_step, ffn, a_step, attn in self.stages:
                by_ratio = by_keep = None
                for col, mask in words:
                    kept = word(col) & mask                 # 1 per kept slot
                    ratio = word(col + S)
                    r = ratio & kept                        # kept and ratio code 1
                    r2 = ratio >> one
                    r2 &= kept                              # kept and ratio code 2
                    r2 <<= sh4
                    r += r2
                    k = word(col + 2 * S) & kept            # kept and attention
                    k <<= sh4
                    k += kept
                    if by_ratio is None:
                        by_ratio, by_keep = r, k
                    else:
                        by_ratio += r
                        by_keep += k
                by_ratio *= _BYTE_SUM
                by_ratio >>= top                            # n1 + 16 n2
                by_keep *= _BYTE_SUM
                by_keep >>= top                             # kept + 16 attention
                w = widths >> shift if shift else widths.copy()
                w &= byte
                index = w * w_step
                index += by_ratio
                by_ratio = by_keep & nib
                by_ratio *= kept_step
                index += by_ratio
                lat = ffn.take(index.view(np.int64))
                f = lat if f is None else f + lat
                if attn is not None:
                    w *= a_step
                    by_keep >>= sh4
                    w += by_keep
                    lat = attn.take(w.view(np.int64))
                    a = lat if a is None else a + lat
            m0, m1, m2 = self.other_index
            index = widths & byte
            index *= m0
            for shift, m in ((sh8, m1), (sh16, m2)):
                w = widths >> shift
                w &= byte
                w *= m
                index += w
            index += widths >> sh24
            o = self.other.take(index.view(np.int64))
            f_all[r0:r0 + n] = f
            if a is not None:
                a_all[r0:r0 + n] = a
                f += a
            o_all[r0:r0 + n] = o
            f += o
            total[r0:r0 + n] = f                            # = the three, added in order
        return f_all, a_all, o_all, total


def _scalar_pricer(space: SearchSpace, stem, head, down, attn, ffn):
    """The scalar path for one space and table: ``price(arch) -> (ffn, attn, other)``, the sums of unit
    latencies in ms added in network order, in plain Python (no numpy: one architecture at a time).

    Per stage, a dict by width gives Python floats: its index, its FFN latency by ratio, its attention
    latency, and the stem's latency (first stage), the latencies of the downsample into it by the previous
    width's index (later stages) and the head's (last stage). The stage loop is unrolled, since looping
    over four stages costs a quarter of a prediction: the function is compiled from the text below, whose
    only variable parts are stage numbers and which of a stage's two slot loops it needs (slots where
    attention is not allowed, then slots where it is: a space allows it in a stage's last slots); every
    number stays in its namespace. An architecture outside the space raises ``KeyError``, ``TypeError``
    or ``ValueError`` (the caller then names the problems).
    """
    last = NUM_STAGES - 1
    names = {"Outside": _Outside}
    lines = ["def price(arch):",
             "    widths, blocks = arch.widths, arch.blocks",
             f"    if len(widths) != {NUM_STAGES} or len(blocks) != {NUM_STAGES}:",
             "        raise Outside",
             "    f = a = 0.0"]
    for s, d in enumerate(space.max_depths):
        cut = next((j for j in range(d) if space.may_attend(s, j)), d)
        by_width = {}
        for i, w in enumerate(space.widths[s]):
            entry = [i, dict(zip(space.ratios, ffn[s][i].tolist())),
                     float(attn[s][i]) if attn[s] is not None and cut < d else None,
                     float(stem[i]) if s == 0 else down[s][:, i].tolist()]
            by_width[w] = tuple(entry + [float(head[i])] if s == last else entry)
        names.update({f"by_width{s}": by_width, f"depth{s}": d, f"cut{s}": cut, f"least{s}": space.min_depths[s]})
        extra = ("stem" if s == 0 else f"down{s}") + (", head" if s == last else "")
        lines += [f"    i{s}, ffn, attn, {extra} = by_width{s}[widths[{s}]]",
                  f"    stage = blocks[{s}]",
                  "    kept = len(stage)",
                  f"    if kept != depth{s}:",
                  "        raise Outside"]
        if cut:                                              # slots that may not carry attention
            lines += [f"    for b in {'stage' if cut == d else f'stage[:cut{s}]'}:",
                      "        if b.attn:",
                      "            raise Outside",
                      "        if b.keep:",
                      "            f += ffn[b.ratio]",
                      "        else:",
                      "            ffn[b.ratio]",            # every slot's ratio must be a choice, kept or not
                      "            kept -= 1"]
        if cut < d:                                          # slots that may
            lines += [f"    for b in {'stage' if cut == 0 else f'stage[cut{s}:]'}:",
                      "        if b.keep:",
                      "            f += ffn[b.ratio]",
                      "            if b.attn:",
                      "                a += attn",
                      "        else:",
                      "            ffn[b.ratio]",
                      "            kept -= 1"]
        lines += [f"    if kept < least{s}:",
                  "        raise Outside"]
    other = " + ".join(["stem", "head"] + [f"down{s}[i{s - 1}]" for s in range(1, NUM_STAGES)])
    lines += [f"    return f, a, {other}"]             # stem, head, then the downsamples: as the encoded path
    exec(compile("\n".join(lines), "<nas.latency.predictor: scalar path>", "exec"), names)
    return names["price"]


def _as_arch(x) -> Arch:
    if isinstance(x, Arch):
        return x
    if isinstance(x, dict):
        return Arch.from_dict(x)
    if isinstance(x, (str, Path)):
        return Arch.from_json(x)
    raise TypeError(f"expected an Arch, a dict or JSON text, got {type(x).__name__}")


class LatencyPredictor:
    """Predicts end-to-end latency (ms) of architectures of ``space`` from a per-unit table.

    ``table`` maps unit key -> median latency in ms (a ``pandas`` frame indexed by key with a ``p50_ms``
    column, as :func:`profilers.tables.table.read_table` returns, or a plain dict).
    """

    def __init__(self, table, space: SearchSpace | str = DEFAULT_SPACE, img_size: int = 224,
                 num_classes: int = 1000, calibration: Calibration | None = None,
                 fallback: str = "error", meta: TableMeta | None = None, mes: MES | None = None,
                 source: str | None = None):
        if fallback not in ("error", "regression"):
            raise ValueError("fallback must be 'error' or 'regression'")
        self.space = get_space(space)
        self.img_size = IMG_SIZE.check("img_size", img_size)
        self.num_classes = POSITIVE_INT.check("num_classes", num_classes)
        #: what the table measures (None for a table given as a dict)
        self.meta = meta
        self.calibration = calibration
        self.fallback = fallback
        self.mes_fn = mes or MES()
        self.source = source
        #: this host's speed when the predictor was made against its calibration, where it was measured
        #: (``from_table(..., rescale="now")``; a :class:`nas.latency.host_factor.HostFactor`), else None
        self.host_factor = None
        if hasattr(table, "columns"):
            col = "p50_ms" if "p50_ms" in table.columns else table.columns[0]
            self.table = {str(k): float(v) for k, v in table[col].items()}
        else:
            self.table = {str(k): float(v) for k, v in dict(table).items()}
        self._build_lookup()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_table(cls, path_or_device: str | Path, runtime: str | None = None, *, root=None,
                   fallback: str = "error", space: SearchSpace | str | None = None,
                   img_size: int | None = None, num_classes: int | None = None,
                   calibrated: bool = True, verify: str = "fingerprint",
                   allow_foreign: bool | None = None, rescale: str = "off") -> "LatencyPredictor":
        """Load a table by path or by device name.

        A device name resolves as :func:`profilers.tables.table.locate` says: a device with a ``local``
        connection (``local-cpu``) to this host's table in the user cache, another device to the shipped
        ``latency_tables/``. The calibration stored beside the table (``*.calibration.json``) is applied
        when present. ``space``, ``img_size`` and ``num_classes`` default to what the table records.

        A table of a ``local`` device must describe this host: ``verify="fingerprint"`` (default) compares
        the recorded host fingerprint and runtime version with this host's, ``"probe"`` also re-measures
        the probe units (seconds), ``"none"`` skips both. A mismatch raises
        :class:`profilers.tables.table.ForeignTableError` naming the command that profiles this host, unless
        ``allow_foreign`` (or ``EFFV2_ALLOW_FOREIGN_TABLE=1``) turns it into a loud warning.

        ``rescale="now"`` (a calibrated table of a ``local`` device) times the calibration's reference networks
        again (a few seconds), and scales every prediction by this host's speed now against then when the
        readings are steady (:mod:`nas.latency.host_factor`; what it found is :attr:`host_factor`); ``"off"``
        (default) predicts at the calibration's level.
        """
        if rescale not in ("off", "now"):
            raise ValueError(f"rescale must be 'off' or 'now', got {rescale!r}")
        table = LatencyTable.read(path_or_device, runtime, root)
        if verify != "none":
            table.verify_host(probe=(verify == "probe"), allow_foreign=allow_foreign)
        pred = cls.of_table(table, fallback=fallback, space=space, img_size=img_size, num_classes=num_classes,
                            calibrated=calibrated)
        if rescale == "now":     # timing networks needs torch and a runtime, predicting does not: imported here
            host_factor = importlib.import_module("nas.latency.host_factor")
            pred, pred.host_factor = host_factor.rescale_now(table, pred, allow_foreign=allow_foreign)
        return pred

    @classmethod
    def of_table(cls, table: LatencyTable, *, fallback: str = "error", space: SearchSpace | str | None = None,
                 img_size: int | None = None, num_classes: int | None = None,
                 calibrated: bool = True) -> "LatencyPredictor":
        """The predictor of a :class:`~profilers.tables.table.LatencyTable` already read (and checked)."""
        meta = table.meta
        if space is None:
            space = SearchSpace.from_dict(meta.space_def) if meta.space_def else (meta.space or DEFAULT_SPACE.name)
        img_size = img_size or meta.img_size or (meta.img_sizes[0] if meta.img_sizes else 224)
        num_classes = num_classes or meta.num_classes or 1000
        cpath = calibration_path(table.path)
        calib = load_calibration(cpath) if calibrated and cpath.exists() else None
        return cls(table.rows, space, img_size, num_classes, calib, fallback, meta, source=str(table.path))

    def for_space(self, space: SearchSpace | str) -> "LatencyPredictor":
        """The same table, calibration and settings predicting the architectures of another space (one
        whose units the table may or may not hold: :meth:`missing_keys` says)."""
        return self._replace(space=space)

    def rescaled(self, factor: float) -> "LatencyPredictor":
        """The same predictor with every prediction multiplied by ``factor`` (this host's speed now against
        its calibration: :mod:`nas.latency.host_factor`); needs a calibration. Costs nothing per prediction:
        the calibration's coefficients carry it."""
        if self.calibration is None:
            raise ValueError("only a calibrated predictor is rescaled: run python -m nas.calibrate")
        return self._replace(calibration=self.calibration.scaled(factor))

    def forbidding(self, keys) -> "LatencyPredictor":
        """The same table, calibration and settings with the units ``keys`` priced at infinity: a network that
        uses one of them is predicted ``inf`` ms (MES 0; no finite latency budget holds it). The search's
        ``--forbid-fallback`` keeps networks off the units that fell back from the accelerator to the CPU
        (:func:`profilers.tables.table.fallbacks`). Keys the table lacks stay missing."""
        table = dict(self.table)
        table.update({k: math.inf for k in keys if k in table})
        return self._replace(_Forbidding, table=table)

    def _replace(self, cls: type | None = None, **changes) -> "LatencyPredictor":
        """A predictor (of ``cls``, default this one's class) with this one's table and settings but
        ``changes`` (keyword arguments of ``__init__``)."""
        kept = dict(table=self.table, space=self.space, img_size=self.img_size, num_classes=self.num_classes,
                    calibration=self.calibration, fallback=self.fallback, meta=self.meta, mes=self.mes_fn,
                    source=self.source)
        return (cls or type(self))(**{**kept, **changes})

    @property
    def forbidden(self) -> list[str]:
        """The units priced at infinity (:meth:`forbidding`)."""
        return sorted(k for k, v in self.table.items() if v == math.inf)

    def fill_hint(self) -> str:
        """What to run to measure the units this table lacks (one sentence, for error messages)."""
        m = self.meta
        cmd = (f"python -m profilers.{m.runtime} --device {m.device.name} --space {self.space.name} --img-size "
               f"{self.img_size} --num-classes {self.num_classes}" if m else
               f"python -m profilers.<runtime> --device <device> --space {self.space.name} --img-size {self.img_size}")
        return f"Measure them with: {cmd} (it only measures what is missing), or pass fallback='regression'."

    def _build_lookup(self):
        sp = self.space
        W, ratios = sp.widths, sp.ratios
        specs = unit_grid(sp, self.img_size, self.num_classes)
        self._specs = specs
        known = [(sp_, self.table[sp_.key]) for sp_ in specs.values() if sp_.key in self.table]
        self._fallback = None
        if self.fallback == "regression" and known:
            self._fallback = _Fallback([k for k, _ in known], np.array([v for _, v in known]))

        def val(key):
            spec = specs[key]
            if spec.key in self.table:
                return self.table[spec.key]
            return self._fallback(spec) if self._fallback else np.nan

        self._stem = np.array([val(("stem", i)) for i in range(len(W[0]))])
        self._head = np.array([val(("head", i)) for i in range(len(W[3]))])
        self._down = [None] + [np.array([[val(("down", s, ip, i)) for i in range(len(W[s]))]
                                         for ip in range(len(W[s - 1]))]) for s in range(1, NUM_STAGES)]
        self._attn = [np.array([val(("attn", s, i)) for i in range(len(W[s]))]) if s in sp.attn_stages else None
                      for s in range(NUM_STAGES)]
        self._ffn = [np.array([[val(("ffn", s, i, ir)) for ir in range(len(ratios))] for i in range(len(W[s]))])
                     for s in range(NUM_STAGES)]
        self._price = _scalar_pricer(sp, self._stem, self._head, self._down, self._attn, self._ffn)
        self._encoded = None                                  # the encoded path's lookup, made on first use

    # -- prediction -----------------------------------------------------------------------------
    def _sums(self, arch: Arch) -> tuple[float, float, float, int]:
        """(sums of unit latencies in ms of the ``GROUPS``: ffn, attn, other; number of units) of one
        architecture, added in network order (:func:`_scalar_pricer`)."""
        try:
            f, a, o = self._price(arch)
        except (KeyError, IndexError, TypeError, ValueError):
            self.space.validate(arch)                        # names every problem
            raise
        if f != f or a != a or o != o:                       # NaN: some unit is missing
            self._raise_missing([arch])
        kept = [b for stage in arch.blocks for b in stage if b.keep]
        return f, a, o, 2 + NUM_STAGES - 1 + len(kept) + sum(1 for b in kept if b.attn)

    def group_sums(self, arch) -> tuple[np.ndarray, int]:
        """(per-group sums of unit latencies in ms, ``GROUPS`` order: ffn, attn, other; number of units).
        An architecture outside the space is an :class:`nas.space.ArchError`, never priced."""
        f, a, o, units = self._sums(_as_arch(arch))
        return np.array([f, a, o]), units

    def block_sum(self, arch) -> tuple[float, int]:
        """(sum of unit latencies in ms, number of units) of one architecture."""
        f, a, o, units = self._sums(_as_arch(arch))
        return f + a + o, units

    def predict(self, arch) -> float:
        """Predicted latency in ms of one architecture (an :class:`Arch`, its dict, or JSON text)."""
        if arch.__class__ is not Arch:
            arch = _as_arch(arch)
        try:
            f, a, o = self._price(arch)
        except (KeyError, IndexError, TypeError, ValueError):
            self.space.validate(arch)                        # names every problem
            raise
        s = f + a + o
        if s != s:                                           # NaN: some unit is missing
            self._raise_missing([arch])
        calibration = self.calibration
        return calibration.apply_sums(f, a, o) if calibration else s

    def predict_many(self, archs) -> np.ndarray:
        """Vectorised :meth:`predict`: a list of archs, or an integer matrix from ``space.encode`` /
        ``space.sample_encoded`` (the fast path: one table read per stage and row, see
        :class:`_EncodedLookup`). Equal to :meth:`predict` within rounding (the units are added in another
        order)."""
        f, a, o, s = self._totals(archs)
        return self.calibration.apply_columns(f, a, o, total=s) if self.calibration else s

    def block_sum_many(self, archs) -> np.ndarray:
        """Vectorised :meth:`block_sum`: the sums of unit latencies in ms (uncalibrated) of a list of archs
        or an encoded matrix."""
        return self._totals(archs)[3]

    def _totals(self, archs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if isinstance(archs, np.ndarray):
            codes = archs
        else:
            archs = [_as_arch(a) for a in archs]
            codes = self.space.encode(archs)
        f, a, o, s = self._sums_encoded(codes)
        if np.isnan(s).any():                                # too few blocks kept, or a unit is missing
            self.space.check_codes(codes)                    # the first: ArchError naming the row
            bad = np.flatnonzero(np.isnan(s))
            self._raise_missing(self.space.decode(codes[bad[:50]]))
        return f, a, o, s

    def _sums_encoded(self, codes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-group sums (ffn, attn, other) of encoded rows and their total (added in that order); an
        :class:`ArchError` naming the first row with a code out of range; NaN where a row keeps too few
        blocks or a unit is missing."""
        codes = np.asarray(codes)
        if self._encoded is None:
            self._encoded = _EncodedLookup.build(self) or False
        if (codes.ndim != 2 or codes.shape[1] != self.space.encoding_width or codes.dtype.kind not in "iu"
                or self._encoded is False):                  # the generic path (and its errors)
            groups, _ = self._group_sums_generic(codes)
            return groups[:, 0], groups[:, 1], groups[:, 2], groups.sum(1)
        if codes.dtype.itemsize != 1:                        # other integers: checked, then int8
            self.space.check_codes(codes, depths=False)
            codes = codes.astype(np.int8)
        return self._encoded.sums(codes)

    def _group_sums_generic(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The encoded path for any space: counts per stage with numpy. ``(groups, units)``; NaN where a
        unit is missing; an :class:`ArchError` for a row outside the space."""
        self.space.check_codes(codes, depths=False)          # depths are checked below, from the counts
        few = np.zeros(len(codes), dtype=bool)
        cols = columns(self.space)
        w = codes[:, cols.widths]
        groups = np.zeros((len(codes), 3))
        other = self._stem[w[:, 0]] + self._head[w[:, 3]]
        for s in range(1, NUM_STAGES):
            other += self._down[s][w[:, s - 1], w[:, s]]
        groups[:, 2] = other
        nr = len(self.space.ratios)
        keep_all = codes[:, cols.keep] != 0
        ratio_all = codes[:, cols.ratio]
        attn_all = codes[:, cols.attn] != 0
        units = np.full(len(codes), 2 + NUM_STAGES - 1, dtype=np.int64)
        c = 0
        for s, d in enumerate(self.space.max_depths):
            keep, ratio = keep_all[:, c:c + d], ratio_all[:, c:c + d]
            # per stage: how many kept blocks use each ratio, times that (width, ratio) unit's latency
            cnt = np.stack([((ratio == k) & keep).sum(1) for k in range(nr)], 1)
            rows = self._ffn[s][w[:, s]]
            groups[:, 0] += np.where(cnt > 0, rows * cnt, 0.0).sum(1)
            kept = cnt.sum(1)
            few |= kept < self.space.min_depths[s]
            units += kept
            if self._attn[s] is not None:
                n_attn = (attn_all[:, c:c + d] & keep).sum(1)
                groups[:, 1] += np.where(n_attn > 0, n_attn * self._attn[s][w[:, s]], 0.0)
                units += n_attn
            c += d
        if few.any():
            self.space.raise_bad_rows(few)
        return groups, units

    def _raise_missing(self, archs):
        missing = set()
        for a in archs:
            for u in arch_units(a, self.img_size, self.num_classes):
                if u.key not in self.table:
                    missing.add(u.key)
        raise MissingLatencyError(missing, self.fill_hint())

    def missing_keys(self, archs=None) -> list[str]:
        """Units of ``archs`` (default: the whole space) that the table lacks."""
        if archs is None:
            keys = {s.key for s in self._specs.values()}
        else:
            keys = {u.key for a in archs for u in arch_units(_as_arch(a), self.img_size, self.num_classes)}
        return sorted(k for k in keys if k not in self.table)

    # -- size and score -------------------------------------------------------------------------
    def params(self, arch) -> int:
        return count_params(_as_arch(arch), img_size=self.img_size, num_classes=self.num_classes)

    def macs(self, arch) -> int:
        return count_macs(_as_arch(arch), img_size=self.img_size, num_classes=self.num_classes)

    def mes(self, arch) -> float:
        """Mobile Efficiency Score from the analytic params and the predicted latency."""
        arch = _as_arch(arch)
        return self.mes_fn(params=self.params(arch), latency_ms=self.predict(arch))

    def fallback_report(self) -> dict:
        """Leave-one-out error of the regression fallback per unit kind (empty without fallback)."""
        return dict(self._fallback.report) if self._fallback else {}

    def __repr__(self):
        cal = f"calibrated on {self.calibration.n} networks" if self.calibration else "uncalibrated"
        return (f"LatencyPredictor({self.source or 'in-memory table'}, space={self.space.name}, "
                f"img_size={self.img_size}, {len(self.table)} entries, {cal})")


class _Forbidding(LatencyPredictor):
    """A :class:`LatencyPredictor` some of whose units are priced at infinity (:meth:`~LatencyPredictor.forbidding`):
    a calibration that would turn an infinite sum into NaN (a zero coefficient times infinity) gives ``inf``."""

    def predict(self, arch) -> float:
        y = super().predict(arch)
        return math.inf if y != y else y

    def predict_many(self, archs) -> np.ndarray:
        with np.errstate(invalid="ignore"):         # inf x 0 where a count is 0: selected away, then NaN -> inf
            y = super().predict_many(archs)
        y[np.isnan(y)] = math.inf
        return y

    def block_sum_many(self, archs) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return super().block_sum_many(archs)
