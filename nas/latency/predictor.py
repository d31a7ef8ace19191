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

from pathlib import Path
from typing import Iterable

import numpy as np

from models.configs import check_img_size
from nas.core.errors import UserError
from nas.latency.calibration import Calibration, calibration_path, load_calibration
from nas.latency.tables import resolve_table, verify_host
from nas.space.arch import NUM_STAGES, Arch
from nas.space.encoding import columns
from nas.space.metrics import MES, count_macs, count_params
from nas.space.spaces import DEFAULT_SPACE, SearchSpace, get_space
from nas.space.units import BlockSpec, arch_units, unit_grid
from profilers.table import TableError, meta_path, read_table

__all__ = ["LatencyPredictor", "MissingLatencyError", "Calibration", "calibration_path", "resolve_table"]


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
    column, as :func:`profilers.table.read_table` returns, or a plain dict).
    """

    def __init__(self, table, space: SearchSpace | str = DEFAULT_SPACE, img_size: int = 224,
                 num_classes: int = 1000, calibration: Calibration | None = None,
                 fallback: str = "error", meta: dict | None = None, mes: MES | None = None,
                 source: str | None = None):
        if fallback not in ("error", "regression"):
            raise ValueError("fallback must be 'error' or 'regression'")
        self.space = get_space(space)
        self.img_size, self.num_classes = check_img_size(img_size), num_classes
        self.meta = dict(meta or {})
        self.calibration = calibration
        self.fallback = fallback
        self.mes_fn = mes or MES()
        self.source = source
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
                   allow_foreign: bool | None = None) -> "LatencyPredictor":
        """Load a table by path or by device name.

        A device name resolves as :func:`nas.latency.tables.resolve_table` says: a device with a ``local``
        connection (``local-cpu``) to this host's table in the user cache, another device to the shipped
        ``latency_tables/``. The calibration stored beside the table (``*.calibration.json``) is applied
        when present. ``space``, ``img_size`` and ``num_classes`` default to what the table records.

        A table of a ``local`` device must describe this host: ``verify="fingerprint"`` (default) compares
        the recorded host fingerprint and runtime version with this host's, ``"probe"`` also re-measures
        the probe units (seconds), ``"none"`` skips both. A mismatch raises
        :class:`nas.latency.tables.ForeignTableError` naming the command that profiles this host, unless
        ``allow_foreign`` (or ``EFFV2_ALLOW_FOREIGN_TABLE=1``) turns it into a loud warning.
        """
        path = resolve_table(path_or_device, runtime, root)
        df, meta = read_table(path)
        if not meta_path(path).exists():
            raise TableError(f"latency table {path} has no metadata file {meta_path(path).name} beside it: without "
                             f"it nothing says which device, runtime, space and resolution its latencies are for. "
                             f"Restore it, or measure the table again with python -m profilers.<runtime>")
        if verify != "none":
            verify_host(path, meta, probe=(verify == "probe"), allow_foreign=allow_foreign)
        space = space or meta.get("space_def") or meta.get("space", DEFAULT_SPACE.name)
        if isinstance(space, dict):
            space = SearchSpace.from_dict(space)
        img_size = img_size or _first_int(meta.get("img_size", meta.get("img_sizes")), 224)
        num_classes = num_classes or _first_int(meta.get("num_classes"), 1000)
        calib = None
        cpath = calibration_path(path)
        if calibrated and cpath.exists():
            calib = load_calibration(cpath)
        return cls(df, space, img_size, num_classes, calib, fallback, meta, source=str(path))

    def for_space(self, space: SearchSpace | str) -> "LatencyPredictor":
        """The same table, calibration and settings predicting the architectures of another space (one
        whose units the table may or may not hold: :meth:`missing_keys` says)."""
        return type(self)(self.table, space, self.img_size, self.num_classes, self.calibration, self.fallback,
                          self.meta, self.mes_fn, self.source)

    def fill_hint(self) -> str:
        """What to run to measure the units this table lacks (one sentence, for error messages)."""
        dev, rt = self.meta.get("device"), self.meta.get("runtime")
        cmd = (f"python -m profilers.{rt} --device {dev} --space {self.space.name} --img-size {self.img_size} "
               f"--num-classes {self.num_classes}" if dev and rt else
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
        # list and dict views for the scalar path (Python lists index faster than numpy scalars)
        self._lists = (self._stem.tolist(), self._head.tolist(),
                       [None] + [d.tolist() for d in self._down[1:]],
                       [a.tolist() if a is not None else None for a in self._attn], [f.tolist() for f in self._ffn])
        self._widx = [{w: i for i, w in enumerate(ws)} for ws in W]
        self._ridx = {r: i for i, r in enumerate(ratios)}

    # -- prediction -----------------------------------------------------------------------------
    def group_sums(self, arch) -> tuple[np.ndarray, int]:
        """(per-group sums of unit latencies in ms, ``GROUPS`` order: ffn, attn, other; number of units).
        An architecture outside the space is an :class:`nas.space.ArchError`, never priced."""
        arch = _as_arch(arch)
        sp, (stem, head, down, attn_l, ffn_l) = self.space, self._lists
        try:
            if len(arch.blocks) != NUM_STAGES or len(arch.widths) != NUM_STAGES:
                raise ValueError
            wi = [self._widx[s][w] for s, w in enumerate(arch.widths)]
            ri = self._ridx
            other = stem[wi[0]] + head[wi[3]]
            units = 2
            for s in range(1, NUM_STAGES):
                other += down[s][wi[s - 1]][wi[s]]
                units += 1
            f_sum = a_sum = 0.0
            for s, stage in enumerate(arch.blocks):
                if len(stage) != sp.max_depths[s]:
                    raise ValueError
                ffn, attn, w, kept = ffn_l[s], attn_l[s], wi[s], 0
                for b in stage:
                    r = ri[b.ratio]                  # every slot's ratio must be a choice, kept or not
                    if b.attn:
                        if attn is None:
                            raise ValueError
                        if b.keep:
                            a_sum += attn[w]
                            units += 1
                    if b.keep:
                        f_sum += ffn[w][r]
                        kept += 1
                units += kept
                if kept < sp.min_depths[s]:
                    raise ValueError
        except (KeyError, IndexError, TypeError, ValueError):
            sp.validate(arch)                        # names every problem
            raise
        if f_sum != f_sum or a_sum != a_sum or other != other:      # NaN: some unit is missing
            self._raise_missing([arch])
        return np.array([f_sum, a_sum, other]), units

    def block_sum(self, arch) -> tuple[float, int]:
        """(sum of unit latencies in ms, number of units) of one architecture."""
        g, units = self.group_sums(arch)
        return float(g.sum()), units

    def predict(self, arch) -> float:
        """Predicted latency in ms of one architecture (an :class:`Arch`, its dict, or JSON text)."""
        g, _ = self.group_sums(arch)
        return self.calibration.apply_one(g) if self.calibration else float(g.sum())

    def predict_many(self, archs) -> np.ndarray:
        """Vectorised :meth:`predict`: a list of archs, or an integer matrix from ``space.encode`` /
        ``space.sample_encoded`` (the fast path: millions of rows per second)."""
        if isinstance(archs, np.ndarray):
            codes = archs
        else:
            archs = [_as_arch(a) for a in archs]
            codes = self.space.encode(archs)
        g, _ = self._group_sums_encoded(codes)
        s = g.sum(1)
        if np.isnan(s).any():
            bad = np.flatnonzero(np.isnan(s))
            self._raise_missing(self.space.decode(codes[bad[:50]]))
        return self.calibration.apply(g) if self.calibration else s

    def _group_sums_encoded(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _first_int(v, default):
    if v is None:
        return default
    if isinstance(v, (list, tuple)):
        return int(v[0]) if v else default
    return int(v)
