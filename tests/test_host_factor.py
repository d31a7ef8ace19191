"""Predictions that follow this host's speed now: the reference networks a calibration records, the factor
read from two passes over them (steady, unsteady, beyond the foreign-table tolerance, not for other devices),
a rescaled predictor, and a predictor that imports no torch."""
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from nas.latency import host_factor as hf_mod
from nas.latency.calibration import Calibration, CalibrationError
from nas.latency.host_factor import FOREIGN, measure_host_factor, reference_networks
from nas.latency.predictor import LatencyPredictor
from nas.space.spaces import TINY_SPACE
from profilers.tables.table import ForeignTableError, ForeignTableWarning, LatencyTable

ROOT = Path(__file__).resolve().parents[1]


def _calibration(reference=None):
    names = [n for n, _ in reference_networks(TINY_SPACE)]
    ref = {"names": names, "archs": [a.to_dict() for _, a in reference_networks(TINY_SPACE)],
           "p50_ms": [0.4, 0.1][:len(names)], "passes": [], "img_size": 64, "num_classes": 10}
    return Calibration("affine", (0.8, 0.05), (0.5, 2.0), n=5, reference=ref if reference is None else reference)


def test_a_rescaled_predictor_is_the_same_predictor_times_the_factor():
    pred = LatencyPredictor.from_table("ref-epyc", "onnxruntime", verify="none")
    assert pred.calibration is not None and pred.host_factor is None
    codes = pred.space.sample_encoded(2000, seed=1)
    slower = pred.rescaled(1.087)
    np.testing.assert_allclose(slower.predict_many(codes), 1.087 * pred.predict_many(codes), rtol=1e-12)
    arch = pred.space.max_arch()
    assert slower.predict(arch) == pytest.approx(1.087 * pred.predict(arch), rel=1e-12)
    assert slower.calibration.report["scaled_by"] == 1.087 and pred.calibration.report.get("scaled_by") is None
    with pytest.raises(ValueError):
        pred.rescaled(0.0)
    with pytest.raises(ValueError, match="rescale"):
        LatencyPredictor.from_table("ref-epyc", "onnxruntime", verify="none", rescale="sometimes")


def test_the_reference_networks_round_trip_and_are_checked():
    cal = _calibration()
    assert Calibration.from_dict(cal.to_dict()).reference == cal.reference
    bad = cal.to_dict()
    bad["reference"] = {**bad["reference"], "p50_ms": [-1.0, 0.1]}
    with pytest.raises(CalibrationError, match="reference"):
        Calibration.from_dict(bad, "t.json")
    old = cal.to_dict()
    del old["reference"]                                    # calibrations fitted before: no factor, still read
    assert Calibration.from_dict(old).reference == {}


@pytest.mark.parametrize("passes,steady,applied", [
    ([1.08, 1.09], True, True),                             # steadily ~8.5 % slower
    ([0.94, 0.95], True, True),                             # steadily faster
    ([1.00, 1.10], False, False),                           # moving: said, not applied
])
def test_the_factor_comes_from_two_passes_and_is_applied_only_when_steady(passes, steady, applied, tiny_table,
                                                                          monkeypatch):
    table = LatencyTable.read(tiny_table)
    cal = _calibration()
    then = dict(zip(cal.reference["names"], cal.reference["p50_ms"]))
    monkeypatch.setattr(hf_mod, "time_references",
                        lambda prof, refs, img, nc: [{k: v * r for k, v in then.items()} for r in passes])
    hf = measure_host_factor(table, cal)
    assert hf.steady is steady and hf.applied is applied and hf.readings == pytest.approx(tuple(passes), abs=1e-4)
    assert hf.factor == pytest.approx(math.sqrt(passes[0] * passes[1]), abs=1e-4)
    said = hf.describe()
    assert ("slower" in said if hf.factor > 1 else "faster" in said) if steady else "not rescaled" in said


def test_a_host_beyond_the_tolerance_is_a_foreign_table(tiny_table, monkeypatch):
    table = LatencyTable.read(tiny_table)
    cal = _calibration()
    then = dict(zip(cal.reference["names"], cal.reference["p50_ms"]))
    far = 1 + FOREIGN + 0.1
    monkeypatch.setattr(hf_mod, "time_references", lambda *a: [{k: v * far for k, v in then.items()}] * 2)
    monkeypatch.delenv("EFFV2_ALLOW_FOREIGN_TABLE", raising=False)
    with pytest.raises(ForeignTableError, match="as it runs now.*profile it again"):
        measure_host_factor(table, cal)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert measure_host_factor(table, cal, allow_foreign=True).applied
    assert any(issubclass(x.category, ForeignTableWarning) for x in w)


def test_no_factor_for_other_devices_nor_for_calibrations_without_reference(tiny_table, monkeypatch):
    monkeypatch.setattr(hf_mod, "time_references", lambda *a: pytest.fail("nothing is timed"))
    assert measure_host_factor(LatencyTable.read("ref-epyc", "onnxruntime"), _calibration()) is None
    assert measure_host_factor(LatencyTable.read(tiny_table), _calibration(reference={})) is None


def test_importing_the_predictor_imports_no_torch():
    code = ("import sys; from nas.latency import LatencyPredictor, LatencyTable; import nas.latency.calibration; "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "p = LatencyPredictor.from_table('ref-epyc', 'onnxruntime', verify='none'); "
            "p.predict_many(p.space.sample_encoded(10, seed=0)); assert 'torch' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_a_search_prices_networks_at_this_hosts_speed_now_unless_told_not_to(tiny_table, tmp_path, monkeypatch):
    import json
    import shutil

    from nas.latency.calibration import calibration_path
    from nas.search import SearchConfig
    from nas.search.inputs import _load_predictor
    from profilers.tables.meta import meta_path

    table = tmp_path / tiny_table.name                      # the tiny table with a calibration of its own
    shutil.copy(tiny_table, table)
    shutil.copy(meta_path(tiny_table), meta_path(table))
    cal = _calibration()
    calibration_path(table).write_text(json.dumps(cal.to_dict()))
    then = dict(zip(cal.reference["names"], cal.reference["p50_ms"]))
    monkeypatch.setattr(hf_mod, "time_references", lambda *a: [{k: v * 1.1 for k, v in then.items()}] * 2)
    _, pred = _load_predictor(SearchConfig(target=str(table), progress=False))
    _, plain = _load_predictor(SearchConfig(target=str(table), rescale=False, progress=False))
    assert pred.host_factor.applied and pred.host_factor.factor == pytest.approx(1.1) and plain.host_factor is None
    arch = TINY_SPACE.max_arch()
    assert pred.predict(arch) == pytest.approx(1.1 * plain.predict(arch), rel=1e-9)
