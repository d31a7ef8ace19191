"""Latency you can trust on this host: fingerprints, the probe, drift correction, host-bound tables,
first-use profiling and a calibration that cannot predict nonsense."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.space.units import probe_units, space_units
from nas.latency.calibration import Calibration, CalibrationError, calibration_path, load_calibration
from nas.latency.predictor import LatencyPredictor
from nas.space.spaces import DEFAULT_SPACE, TINY_SPACE
from profilers.tables.table import ForeignTableError, ForeignTableWarning, LatencyTable, locate as resolve_table
from profilers import get_profiler
from profilers.plugin.cli import main as profile_main
from profilers.timing.batch import measure_batches
from profilers.devices import get_device
from profilers.timing.host import differences, fingerprint, host_id, pinned
from profilers.timing.probe import ProbeCheck, probe_ratio
from profilers.timing.protocol import LatencyStats, Protocol
from conftest import meta_json as read_meta, write_meta_json as write_meta
from profilers.tables.table import TABLES_DIR, device_tables_dir, host_tables_dir, meta_path, table_path

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(warmup=2, warmup_s=0.005, rounds=3, round_s=0.01, min_runs=5, max_runs=40, retries=0)


# -- fingerprints --------------------------------------------------------------------------------------
def test_fingerprint_describes_this_host_and_differences_name_fields():
    fp = fingerprint()
    assert fp["cores"] == os.cpu_count() and fp["os"] and fp["machine"]
    assert differences(fp, fingerprint()) == []
    other = {**fp, "cpu": "Some Other CPU", "cores": (fp["cores"] or 1) + 2}
    diffs = differences(other, fp)
    assert any(d.startswith("cpu 'Some Other CPU' there") for d in diffs) and any(d.startswith("cores") for d in diffs)
    assert differences({"cpu": fp["cpu"]}, fp) == []                  # fields one side lacks are not compared
    assert differences({**fp, "isa": ["avx512f"]}, {**fp, "isa": ["avx2"]}) == ["ISA without avx512f, with avx2 here"]
    assert host_id(fp) == host_id(dict(fp, kernel="x", affinity=[1])) != host_id(other)


def test_fingerprint_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
                    "model name\t: AMD EPYC\nstepping\t: 1\nflags\t\t: fpu sse4_2 avx avx2 fma\n\nprocessor\t: 1\n")
    fp = fingerprint(str(info))
    assert (fp["vendor"], fp["cpu"], fp["family"], fp["model"], fp["stepping"]) == ("AuthenticAMD", "AMD EPYC", 25, 1, 1)
    assert fp["isa"] == ["avx", "avx2", "fma", "sse4_2"]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_pinned_restores_the_affinity():
    before = os.sched_getaffinity(0)
    with pinned([0]):
        assert os.sched_getaffinity(0) == {0}
    assert os.sched_getaffinity(0) == before
    with pytest.raises(ValueError, match="cores"):
        with pinned([10_000]):
            pass


# -- probe and drift correction -------------------------------------------------------------------------
def _stats(ms):
    return LatencyStats(ms, ms * 0.9, ms * 1.1, ms, ms * 0.05, 0.01, 10)


def test_probe_factor_and_check():
    specs = probe_units()
    assert len({s.key for s in specs}) == 3 and {s.kind for s in specs} == {"ffn", "attn", "stem"}
    base = {s.key: _stats(1.0 + i) for i, s in enumerate(specs)}
    reference = {k: v.p50_ms for k, v in base.items()}
    assert probe_ratio(reference, base) == 1.0
    assert probe_ratio(reference, {k: _stats(v.p50_ms * 1.08) for k, v in base.items()}) == pytest.approx(1.08)
    check = ProbeCheck.compare(reference, {k: _stats(v.p50_ms * r) for (k, v), r in zip(base.items(), (1.5, 1.6, 2.2))})
    assert not check.ok and check.factor == pytest.approx((1.5 * 1.6 * 2.2) ** (1 / 3))
    assert "+50.0%" in check.describe()
    assert ProbeCheck.compare(reference, {k: _stats(v.p50_ms * 1.05) for k, v in base.items()}).ok


class _FakeProfiler:
    """A profiler stand-in whose host runs at ``speed(t)`` for its t-th measurement."""
    name, suffix, keep_exports, cpus = "fake", ".x", None, None

    def __init__(self, true_ms, speed):
        self.true_ms, self.speed, self.t = true_ms, speed, 0

    def export(self, module, shape, path):
        return path

    def load(self, path, shape):
        return None

    def measure(self, path, shape):
        self.t += 1
        return _stats(self.true_ms[path.stem.removeprefix("probe_")] * self.speed(self.t))

    def measure_batch(self, paths):
        return {name: self.measure(path, shape) for name, (path, shape) in paths.items()}, {}


def _drift_run(speed, reference=True, correct=True):
    specs = probe_units()
    true = {s.key: 0.5 + i for i, s in enumerate(specs)}
    true.update({f"u{i}": 0.1 * (i + 1) for i in range(7)})
    prof = _FakeProfiler(true, speed)
    reference = {s.key: true[s.key] for s in specs} if reference else None
    items = [(f"u{i}", lambda: (torch.nn.Identity(), (1, 3, 8, 8))) for i in range(7)]
    probe = [(s.key, lambda: (torch.nn.Identity(), (1, 3, 8, 8))) for s in specs]
    batches = list(measure_batches(prof, items, probe, reference, batch_size=3, progress=False,
                                   correct_drift=correct))
    assert [k for b in batches for k in b.stats] == [f"u{i}" for i in range(7)]      # in order, batch by batch
    res = {k: v for b in batches for k, v in b.stats.items()}
    return batches, {k: v.p50_ms / true[k] for k, v in res.items()}


def test_a_steady_shift_of_the_host_is_measured_by_the_probe_and_divided_out():
    batches, rel = _drift_run(lambda t: 1.25)                # the host 25 % slower than at the reference
    assert [b.drift for b in batches] == pytest.approx([1.25] * 3) and [b.factor for b in batches] == [b.drift for b in batches]
    assert [r for b in batches for r in b.readings] == pytest.approx([1.25] * 4)
    assert all(r == pytest.approx(1.0) for r in rel.values())          # on the reference's scale
    batches, rel = _drift_run(lambda t: 1.25, correct=False)  # the default: drift recorded, not applied
    assert [b.drift for b in batches] == pytest.approx([1.25] * 3) and {b.factor for b in batches} == {1.0}
    assert all(r == pytest.approx(1.25) for r in rel.values())


def test_a_host_changing_speed_during_a_batch_is_not_corrected_from_two_readings():
    batches, rel = _drift_run(lambda t: 1.03 ** t)           # 3 % slower with every measurement
    assert [b.drift for b in batches] == [1.0, 1.0, 1.0]     # before and after disagree: left as measured
    readings = [r for b in batches for r in b.readings]
    assert len(readings) == 4 and readings == sorted(readings)


# -- host-bound tables --------------------------------------------------------------------------------
def test_local_device_tables_live_in_this_hosts_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFV2_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EFFV2_TABLES", raising=False)
    assert host_tables_dir() == tmp_path / "cache" / "tables" / host_id()
    assert table_path("local-cpu", "onnxruntime") == host_tables_dir() / "local-cpu.onnxruntime.csv"
    assert table_path("ref-epyc", "onnxruntime") == TABLES_DIR / "ref-epyc.onnxruntime.csv"
    assert table_path("pixel6", "tflite").parent == device_tables_dir() == tmp_path / "cache" / "tables" / "devices"
    assert str(device_tables_dir()) not in str(TABLES_DIR)           # a phone measured here: never the package
    with pytest.raises(Exception, match="python -m profilers.onnxruntime --device local-cpu"):
        resolve_table("local-cpu")
    monkeypatch.delenv("EFFV2_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert host_tables_dir().parent.parent == tmp_path / "xdg" / "effv2-nas"


def test_reference_device_is_another_machines_table_shipped_as_it_is(capsys):
    dev = get_device("ref-epyc")
    assert dev.connection_type == "reference" and dev.entry["fingerprint"]["cpu"] == "AMD EPYC"
    pred = LatencyPredictor.from_table("ref-epyc")                   # usable anywhere, for examples and tests
    assert pred.calibration is not None and pred.meta.device.name == "ref-epyc"
    assert 5 < pred.predict(DEFAULT_SPACE.canonical("s0")) < 50
    assert profile_main(get_profiler("onnxruntime"), ["--device", "ref-epyc"]) == 2
    assert "reference device" in capsys.readouterr().err


def test_reference_pytorch_table_is_shipped_with_its_calibration_and_what_it_was_measured_as(tmp_path):
    pred = LatencyPredictor.from_table("ref-epyc", "torch")
    assert pred.meta.runtime == "torch" and pred.meta.extra["measured_as"] == "local-cpu"
    assert pred.meta.settings["mode"] == "eager" and pred.meta.settings["batch"] == 1
    assert pred.meta.connection == "reference" and "not on one scale" in pred.meta.extra["note"]
    assert pred.calibration is not None and not pred.missing_keys([DEFAULT_SPACE.canonical("s0")])
    torch_s0 = pred.predict(DEFAULT_SPACE.canonical("s0"))
    assert torch_s0 > LatencyPredictor.from_table("ref-epyc").predict(DEFAULT_SPACE.canonical("s0")) > 0

    import importlib.util                                             # the script that shipped it
    spec = importlib.util.spec_from_file_location("ship_table", ROOT / "benchmarks" / "ship_table.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    (tmp_path / "here").mkdir()
    (tmp_path / "out").mkdir()
    src = _copy_table(TABLES_DIR / "ref-epyc.torch.csv", tmp_path / "here")
    out = ship.ship(src, "ref-epyc", "a note", tmp_path / "out")
    assert read_meta(out)["note"] == "a note" and read_meta(out)["device"] == "ref-epyc"
    with pytest.raises(SystemExit, match="not a reference device"):
        ship.ship(src, "local-cpu", "a note", tmp_path / "out")


def _copy_table(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    shutil.copy(src, dst)
    shutil.copy(meta_path(src), meta_path(dst))
    if calibration_path(src).exists():
        shutil.copy(calibration_path(src), calibration_path(dst))
    return dst


def test_a_table_from_another_host_is_an_error_unless_asked_for(tiny_table, tmp_path, monkeypatch):
    monkeypatch.delenv("EFFV2_ALLOW_FOREIGN_TABLE", raising=False)
    assert LatencyPredictor.from_table(tiny_table).meta.device.name == "local-cpu"   # measured here: fine
    t = _copy_table(tiny_table, tmp_path)
    meta = read_meta(t)
    meta["host"] = {**meta["host"], "cpu": "AMD EPYC 7B13", "cores": 64}
    write_meta(t, meta)
    with pytest.raises(ForeignTableError) as e:
        LatencyPredictor.from_table(t)
    msg = str(e.value)
    assert "does not describe this host" in msg and "cpu 'AMD EPYC 7B13' there" in msg
    assert "python -m profilers.onnxruntime --device local-cpu --space tiny --img-size 64" in msg
    assert "allow_foreign" in msg
    with pytest.warns(ForeignTableWarning, match="ON PURPOSE"):
        LatencyPredictor.from_table(t, allow_foreign=True)
    monkeypatch.setenv("EFFV2_ALLOW_FOREIGN_TABLE", "1")
    with pytest.warns(ForeignTableWarning):
        LatencyPredictor.from_table(t)


def test_same_name_but_another_speed_is_caught_by_the_probe(tiny_table, tmp_path, monkeypatch):
    monkeypatch.delenv("EFFV2_ALLOW_FOREIGN_TABLE", raising=False)
    t = _copy_table(tiny_table, tmp_path)
    meta = read_meta(t)
    same = LatencyTable.read(t).check_host(probe=True, tolerance=9.0)   # this host, re-measured: only a gross gap
    assert same.ok and same.probe is not None and 0.1 < same.probe.factor < 10      # fails on a busy CI host
    meta["probe"]["p50_ms"] = {k: v / 30 for k, v in meta["probe"]["p50_ms"].items()}    # "30x faster there"
    write_meta(t, meta)
    LatencyPredictor.from_table(t)                                    # the fingerprint alone cannot tell
    with pytest.raises(ForeignTableError, match="probe"):
        LatencyPredictor.from_table(t, verify="probe")


def test_profiling_into_another_hosts_table_is_refused(tiny_table, tmp_path):
    t = _copy_table(tiny_table, tmp_path)
    meta = read_meta(t)
    meta["host"] = {**meta["host"], "model": 12345}
    write_meta(t, meta)
    df = t.read_text().splitlines()
    t.write_text("\n".join(df[:-1]) + "\n")                          # one unit missing: a run would append
    code = profile_main(get_profiler("onnxruntime"), ["--device", "local-cpu", "--space", "tiny", "--img-size", "64",
                                                      "--num-classes", "10", "--out", str(t), "--no-progress"])
    assert code == 2


# -- the calibration cannot produce nonsense -------------------------------------------------------------
@pytest.mark.parametrize("table", sorted(TABLES_DIR.glob("*.csv")), ids=lambda p: p.name)
def test_every_shipped_table_predicts_positive_latencies_above_its_floor(table):
    pred = LatencyPredictor.from_table(table)
    space = pred.space
    codes = np.concatenate([space.encode([space.min_arch(), space.max_arch()]),
                            space.sample_encoded(100_000, seed=0)])
    y = pred.predict_many(codes)
    raw = LatencyPredictor.from_table(table, calibrated=False).predict_many(codes)
    assert np.isfinite(y).all() and (y > 0).all()
    if pred.calibration is not None:
        assert (y >= pred.calibration.floor(raw) * (1 - 1e-12)).all() and (pred.calibration.floor(raw) > 0).all()
        assert y[0] < y[1]                                            # the smallest arch is faster than the largest


def test_fit_on_noisy_tiny_networks_falls_back_and_stays_positive():
    table = {u.key: float(v) for u, v in zip(space_units(TINY_SPACE, 64, 10),
                                               np.random.default_rng(0).uniform(0.01, 0.3, 10_000))}
    pred = LatencyPredictor(table, TINY_SPACE, 64, 10)
    rng = np.random.default_rng(1)
    archs = [TINY_SPACE.sample(i) for i in range(5)]
    g = np.array([pred.group_sums(a)[0] for a in archs])
    noisy = g.sum(1) * rng.uniform(0.4, 2.5, len(archs))             # measurements with +-150 % noise
    cal = Calibration.fit(g, noisy)
    assert cal.model in ("scale", "affine")                          # 5 networks: the per-kind model is not eligible
    assert all(np.isfinite(v) for v in cal.report["loo_mape_pct"].values())
    calibrated = LatencyPredictor(table, TINY_SPACE, 64, 10, calibration=cal)
    codes = np.concatenate([TINY_SPACE.encode([TINY_SPACE.min_arch(), TINY_SPACE.max_arch()]),
                            TINY_SPACE.sample_encoded(20_000, seed=2)])
    y, s = calibrated.predict_many(codes), pred.predict_many(codes)
    assert (y > 0).all() and (y >= cal.floor(s) * (1 - 1e-12)).all() and (y <= cal.band[1] * s * (1 + 1e-12)).all()


def test_the_case_that_went_negative_cannot_any_more():
    # an unconstrained a*sum + b*units + c fit on these points extrapolates below zero for small subnets
    sums = np.array([2.0, 2.4, 3.1, 3.3, 4.0, 4.4])
    units = np.array([9, 10, 14, 12, 18, 17])
    y = np.array([1.60, 2.10, 2.30, 3.10, 3.00, 3.90])
    X = np.stack([sums, units, np.ones_like(sums)], 1)
    a, b, c = np.linalg.lstsq(X, y, rcond=None)[0]
    assert a * 0.3 + b * 9 + c < 0                                   # the old model's nonsense, reproduced
    g = np.stack([sums * 0.6, sums * 0.3, sums * 0.1], 1)
    cal = Calibration.fit(g, y)
    small = np.array([0.18, 0.09, 0.03])
    assert cal.apply(small) >= cal.floor(small.sum()) > 0


def test_calibration_files_are_validated_on_load(tmp_path):
    p = tmp_path / "x.calibration.json"
    good = Calibration.fit([[1, 1, 1], [2, 1, 1], [3, 2, 1], [4, 2, 2]], [3.1, 4.2, 6.3, 8.1]).to_dict()
    for bad, problem in [({**good, "coef": [float("nan")] * len(good["coef"])}, "non-negative"),
                         ({**good, "coef": [-1.0] * len(good["coef"])}, "non-negative"),
                         ({**good, "band": [0, 2]}, "band"),
                         ({"model": "x", "coef": [1.0, 0, 0]}, "older calibration format")]:
        p.write_text(json.dumps(bad))
        with pytest.raises(CalibrationError, match=problem) as e:
            load_calibration(p)
        assert str(p) in str(e.value)
    p.write_text("{not json")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        load_calibration(p)


# -- first use: this host's table, profiled and calibrated ----------------------------------------------
@pytest.mark.slow
def test_local_target_profiles_and_calibrates_itself_once(tmp_path, monkeypatch):
    from nas.latency.first_use import ensure_local_table
    monkeypatch.setenv("EFFV2_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EFFV2_TABLES", raising=False)
    monkeypatch.setattr(Protocol, "__init__", _fast_init)
    said = []
    path = ensure_local_table("local-cpu", None, TINY_SPACE, 64, 10, calibrate_networks=5, progress=False,
                              say=said.append)
    assert path == host_tables_dir() / "local-cpu.onnxruntime.csv" and calibration_path(path).exists()
    assert any("profiling it now" in s for s in said) and any("calibration on" in s for s in said)
    pred = LatencyPredictor.from_table("local-cpu")
    assert pred.calibration is not None and pred.space.name == "tiny"
    check = LatencyTable.read(path).check_host(probe=True, tolerance=9.0)   # this host: same fingerprint, probe
    assert check.differences == [] and check.probe is not None          # re-measured (a busy CI host can move
    assert all(0 < r < float("inf") for r in check.probe.ratios.values())  # it far: only a gross gap fails)
    assert check.ok
    y = pred.predict_many(TINY_SPACE.sample_encoded(1000, seed=0))
    assert (y > 0).all()
    said.clear()
    assert ensure_local_table("local-cpu", None, TINY_SPACE, 64, 10, progress=False, say=said.append,
                              tolerance=9.0) == path
    assert said == []                                                # complete and calibrated: nothing to do


_real_init = Protocol.__init__


def _fast_init(self, **kw):
    _real_init(self, **{**FAST, **kw})


@pytest.mark.slow
def test_validate_quick_says_whether_the_table_holds(tiny_table, tmp_path):
    from nas.latency.calibration_run import calibrate
    from nas.latency.validation import quick_check
    t = _copy_table(tiny_table, tmp_path)
    calibrate(str(t), n_random=5, out_dir=tmp_path / "cal", progress=False)
    rep = quick_check(str(t), n=3, tolerance=9.0)
    assert rep.probe is not None and rep.networks["n"] == 3 and rep.seconds > 0
    assert "verdict" in rep.describe()
    meta = read_meta(t)
    meta["probe"]["p50_ms"] = {k: v * 30 for k, v in meta["probe"]["p50_ms"].items()}   # far beyond any noise
    write_meta(t, meta)
    moved = quick_check(str(t), n=3)
    assert not moved.holds and any("probe moved" in r for r in moved.reasons)
    r = subprocess.run([sys.executable, "-m", "nas.validate", "--quick", "--target", str(t), "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "does NOT hold" in r.stdout
