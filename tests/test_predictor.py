import json
import random

import numpy as np
import pandas as pd
import pytest

from nas.space.units import arch_units, space_units
from nas.space.metrics import MES, count_params
from nas.latency.calibration_run import N_UNIFORM, calibration_archs
from nas.latency.predictor import Calibration, LatencyPredictor, MissingLatencyError
from nas.space.arch import ArchError
from nas.space.spaces import CPU_SPACE, DEFAULT_SPACE, TINY_SPACE, SearchSpace, get_space
from conftest import write_meta_json as write_meta
from profilers.devices import get_device
from profilers.tables.meta import TableMeta
from profilers.tables.table import COLUMNS


def random_table(space, img_size=224, seed=0):
    rng = np.random.default_rng(seed)
    return {u.key: float(rng.uniform(0.05, 3.0)) for u in space_units(space, img_size)}


@pytest.mark.parametrize("space", [DEFAULT_SPACE, TINY_SPACE], ids=lambda s: s.name)
def test_prediction_is_the_sum_of_the_arch_units(space):
    table = random_table(space)
    pred = LatencyPredictor(table, space)
    rng = random.Random(0)
    archs = [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(50)]
    expected = np.array([sum(table[u.key] for u in arch_units(a)) for a in archs])
    single = np.array([pred.predict(a) for a in archs])
    np.testing.assert_allclose(single, expected, rtol=1e-12)
    np.testing.assert_allclose(pred.predict_many(archs), expected, rtol=1e-12)
    np.testing.assert_allclose(pred.predict_many(space.encode(archs)), expected, rtol=1e-12)
    # dict and JSON forms are accepted
    assert pred.predict(archs[3].to_dict()) == pred.predict(archs[3].to_json()) == single[3]


def test_encoded_samples_match_object_path():
    pred = LatencyPredictor(random_table(DEFAULT_SPACE, seed=3), DEFAULT_SPACE)
    codes = DEFAULT_SPACE.sample_encoded(300, seed=5)
    np.testing.assert_allclose(pred.predict_many(codes),
                               [pred.predict(a) for a in DEFAULT_SPACE.decode(codes)], rtol=1e-12)


def test_missing_unit_is_an_error_naming_key_and_command():
    table = random_table(DEFAULT_SPACE)
    del table["attn_c96_r14_s2"]
    pred = LatencyPredictor(table, DEFAULT_SPACE, meta=TableMeta(get_device("pixel6"), "tflite"))
    s0 = DEFAULT_SPACE.canonical("s0")
    for call in (pred.predict, lambda a: pred.predict_many([a])):
        with pytest.raises(MissingLatencyError) as e:
            call(s0)
        assert e.value.keys == ["attn_c96_r14_s2"]
        assert "python -m profilers.tflite --device pixel6" in str(e.value)
    assert pred.missing_keys([s0]) == ["attn_c96_r14_s2"]
    assert pred.missing_keys() == ["attn_c96_r14_s2"]
    s1 = DEFAULT_SPACE.canonical("s1")          # does not use the missing unit
    assert pred.predict(s1) > 0


def test_regression_fallback_prices_missing_units():
    # latencies that are an exact linear function of the unit features: the fallback must recover them
    units = space_units(DEFAULT_SPACE)
    table = {u.key: 0.02 + u.macs / 2e8 + u.params / 5e6 for u in units}
    full = LatencyPredictor(dict(table), DEFAULT_SPACE)
    for k in ["attn_c96_r14_s2", "ffn_c96_h288_r14", "down_c48-96_r28"]:
        del table[k]
    pred = LatencyPredictor(table, DEFAULT_SPACE, fallback="regression")
    s0 = DEFAULT_SPACE.canonical("s0")
    assert pred.predict(s0) == pytest.approx(full.predict(s0), rel=1e-6)
    report = pred.fallback_report()
    assert set(report) == {"stem", "downsample", "attn", "ffn", "head"}
    assert all(r["loo_mape_pct"] < 1e-3 for r in report.values())


def test_calibration_fit_and_use():
    rng = np.random.default_rng(0)
    g = rng.uniform([5, 1, 0.5], [40, 10, 4], (20, 3))           # per-group sums: ffn, attn, other
    y = g @ [0.9, 1.2, 1.05] + 0.4                                  # a per-kind map, exactly
    cal = Calibration.fit(g, y)
    assert cal.model == "per_kind" and cal.n == 20
    np.testing.assert_allclose(cal.coef, (0.9, 1.2, 1.05, 0.4), atol=1e-6)
    assert cal.report["calibrated_mape_pct"] < 1e-4 and cal.report["uncalibrated_mape_pct"] > 1
    assert set(cal.report["loo_mape_pct"]) == {"per_kind", "affine", "scale"}
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again.coef == cal.coef and again.band == cal.band and again.model == cal.model
    table = random_table(DEFAULT_SPACE)
    raw = LatencyPredictor(table, DEFAULT_SPACE)
    calibrated = LatencyPredictor(table, DEFAULT_SPACE, calibration=cal)
    a = DEFAULT_SPACE.sample(7)
    groups, n_units = raw.group_sums(a)
    assert n_units == len(arch_units(a)) and groups.sum() == pytest.approx(raw.predict(a))
    expected = float(np.clip(groups @ [0.9, 1.2, 1.05] + 0.4, cal.band[0] * groups.sum(), cal.band[1] * groups.sum()))
    assert calibrated.predict(a) == pytest.approx(expected)
    codes = DEFAULT_SPACE.sample_encoded(500, seed=1)
    np.testing.assert_allclose(calibrated.predict_many(codes), [calibrated.predict(x) for x in DEFAULT_SPACE.decode(codes)])
    with pytest.raises(ValueError, match="at least 3"):
        Calibration.fit([[1, 1, 1], [2, 2, 2]], [1, 2])


def test_params_and_mes():
    pred = LatencyPredictor(random_table(DEFAULT_SPACE), DEFAULT_SPACE)
    a = DEFAULT_SPACE.canonical("s2")
    assert pred.params(a) == count_params(a)
    assert pred.mes(a) == pytest.approx(MES()(params=count_params(a), latency_ms=pred.predict(a)))


def test_bad_input_is_rejected_clearly():
    pred = LatencyPredictor(random_table(TINY_SPACE), TINY_SPACE)
    with pytest.raises(ValueError, match="encoded archs must have shape"):
        pred.predict_many(np.zeros((3, 5), dtype=np.int8))
    with pytest.raises(Exception, match="not in search space"):
        pred.predict(DEFAULT_SPACE.canonical("s0"))
    with pytest.raises(ValueError, match="fallback"):
        LatencyPredictor({}, TINY_SPACE, fallback="zero")


def test_a_table_of_a_space_read_from_json_loads_without_naming_the_space(tmp_path):
    """The table's metadata carries the whole space description, as supernet checkpoints do."""
    spec = {**TINY_SPACE.to_dict(), "name": "my-space", "widths": [[16], [32], [48, 64], [96]]}
    (tmp_path / "my-space.json").write_text(json.dumps(spec))
    space = get_space(str(tmp_path / "my-space.json"))
    rows = [{**{c: 0 for c in COLUMNS}, **u.to_dict(), "attn": int(u.attn), "p50_ms": v, "p10_ms": v, "p90_ms": v, "mean_ms": v,
             "std_ms": 0.0, "cv": 0.0, "n": 5, "threads": 1, "measured_at": "2026-01-01T00:00:00"}
            for u, v in ((u, 0.1 + 0.01 * i) for i, u in enumerate(space_units(space, 64, 10)))]
    path = tmp_path / "ref-x.onnxruntime.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    write_meta(path, {"device": "ref-x", "runtime": "onnxruntime", "space": space.name,
                      "space_def": space.to_dict(), "img_size": 64, "num_classes": 10})
    pred = LatencyPredictor.from_table(path, verify="none")
    assert isinstance(pred.space, SearchSpace) and pred.space.to_dict() == space.to_dict()
    assert pred.img_size == 64 and pred.num_classes == 10
    assert pred.predict(space.max_arch()) > pred.predict(space.min_arch()) > 0


def _calibrations():
    rng = np.random.default_rng(2)
    g = rng.uniform([5, 1, 0.5], [40, 10, 4], (20, 3))
    y = g @ [0.9, 1.2, 1.05] + 0.4 + rng.normal(0, 0.3, 20)
    return [None] + [Calibration.fit(g, y, models=[m]) for m in ("scale", "affine", "per_kind")]


@pytest.mark.parametrize("space", [DEFAULT_SPACE, CPU_SPACE, TINY_SPACE], ids=lambda s: s.name)
def test_encoded_lookup_gives_exactly_the_generic_sums(space):
    """The encoded path's per-stage tables hold the very numbers the generic count-times-latency path
    computes, in the same order: results are identical, not merely close, calibrated or not."""
    table = random_table(space, seed=11)
    codes = space.sample_encoded(30_000, seed=4)           # several chunks
    for calibration in _calibrations():
        pred = LatencyPredictor(table, space, calibration=calibration)
        fast = pred.predict_many(codes)
        groups, _ = pred._group_sums_generic(codes)
        expected = calibration.apply(groups) if calibration else groups.sum(1)
        assert np.array_equal(fast, expected)
        assert np.array_equal(pred.predict_many(codes.astype(np.int64)), expected)
        assert np.array_equal(pred.predict_many(np.asfortranarray(codes)), expected)
    pred = LatencyPredictor(table, space)
    archs = space.decode(codes[:200])
    assert np.array_equal(pred.predict_many(archs), pred.predict_many(codes)[:200])
    assert [pred.block_sum(a) for a in archs] == [(pred.predict(a), len(arch_units(a))) for a in archs]


def test_a_space_beyond_the_lookup_uses_the_generic_path():
    space = SearchSpace("deep", ((16, 24), (32,), (64, 96), (128,)), (2, 2, 17, 3), ratios=(1, 2, 3, 4), attn_slots=3)
    table = random_table(space)
    pred = LatencyPredictor(table, space)
    archs = [space.sample(i) for i in range(50)]
    expected = np.array([sum(table[u.key] for u in arch_units(a)) for a in archs])
    np.testing.assert_allclose(pred.predict_many(space.encode(archs)), expected, rtol=1e-12)
    assert pred._encoded is False


def test_bad_rows_are_named_in_any_chunk():
    pred = LatencyPredictor(random_table(DEFAULT_SPACE), DEFAULT_SPACE)
    codes = DEFAULT_SPACE.sample_encoded(20_000, seed=0)
    bad = codes.copy()
    bad[17_001, 0] = -1
    with pytest.raises(ArchError, match="encoded row 17001 "):
        pred.predict_many(bad)
    bad = codes.copy()
    bad[12_345, 4:4 + DEFAULT_SPACE.max_depths[0]] = 0           # stage 1 keeps no block
    bad[19_999, 4 + DEFAULT_SPACE.max_depths[0]:4 + sum(DEFAULT_SPACE.max_depths[:2])] = 0
    with pytest.raises(ArchError, match=r"encoded row 12345 \(of 2 bad rows\)"):
        pred.predict_many(bad)
    table = random_table(DEFAULT_SPACE)
    del table["ffn_c16_h32_r56"]                                  # a missing unit does not hide a bad row
    with pytest.raises(ArchError, match="encoded row 12345 "):
        LatencyPredictor(table, DEFAULT_SPACE).predict_many(bad)


def test_attention_only_where_the_space_allows_it_one_at_a_time_too():
    pred = LatencyPredictor(random_table(CPU_SPACE), CPU_SPACE)
    arch = CPU_SPACE.max_arch()
    assert pred.predict(arch) > 0
    for stage, slot, keep in [(2, 0, True), (2, 0, False), (0, 1, True), (3, 3, False)]:
        bad = arch.replace(stage=stage, slot=slot, keep=keep, attn=True)
        with pytest.raises(ArchError, match="attention is only allowed in the last 2 slots"):
            pred.predict(bad)
        with pytest.raises(ArchError):
            pred.predict_many([bad])
    assert pred.predict(arch.replace(stage=2, slot=7, keep=False, attn=True)) > 0   # an allowed slot, dropped


@pytest.mark.parametrize("space", [DEFAULT_SPACE, CPU_SPACE, TINY_SPACE], ids=lambda s: s.name)
def test_calibration_networks_span_the_space(space):
    """What a calibration measures: the published variants the space holds, its smallest and largest
    networks, and networks between them evenly spread in log predicted latency; chosen without measuring."""
    pred = LatencyPredictor(random_table(space, seed=5), space)
    archs = calibration_archs(pred, n=8, seed=0, n_uniform=0)
    variants = [space.canonical(v) for v in ("s0", "s1", "s2", "l") if space.fits(v)]
    assert archs[:len(variants)] == variants
    assert space.min_arch() in archs and space.max_arch() in archs
    assert len(archs) == len(variants) + 8 and len({a.to_json() for a in archs}) == len(archs)
    assert all(space.contains(a) for a in archs)
    lo, hi = np.log(pred.block_sum_many([space.min_arch(), space.max_arch()]))
    between = np.sort(np.log(pred.block_sum_many(archs[len(variants) + 2:])))
    assert len(between) == 6
    step = (hi - lo) / 7                                           # six points evenly spaced between the ends
    assert np.all(np.abs(between - (lo + step * np.arange(1, 7))) < step / 2)
    assert calibration_archs(pred, n=8, seed=0, n_uniform=0) == archs           # deterministic for a seed
    assert calibration_archs(pred, n=8, seed=1, n_uniform=0)[len(variants) + 2:] != archs[len(variants) + 2:]
    assert calibration_archs(pred, n=2, seed=0, n_uniform=0) == archs[:len(variants) + 2]


@pytest.mark.parametrize("space", [DEFAULT_SPACE, CPU_SPACE, TINY_SPACE], ids=lambda s: s.name)
def test_calibration_networks_include_uniformly_random_subnets(space):
    """Besides the networks that span the range, a calibration measures subnets drawn as the space samples
    them (the mix of unit kinds a search and a validation meet most), none twice, none a spanning one."""
    pred = LatencyPredictor(random_table(space, seed=5), space)
    spanning = calibration_archs(pred, n=8, seed=0, n_uniform=0)
    archs = calibration_archs(pred, n=8, seed=0, n_uniform=5)
    assert archs[:len(spanning)] == spanning
    uniform = archs[len(spanning):]
    assert len(uniform) == 5 and len({a.to_json() for a in archs}) == len(archs)
    assert {a.to_json() for a in uniform} <= {space.sample(i).to_json() for i in range(50)}
    assert calibration_archs(pred, n=8, seed=0) == calibration_archs(pred, n=8, seed=0, n_uniform=N_UNIFORM)
    assert len(calibration_archs(pred, n=8, seed=0)) == len(spanning) + N_UNIFORM
    assert calibration_archs(pred, n=8, seed=1, n_uniform=5)[len(spanning):] != uniform
