"""The predictor's whole path on real measurements: table -> calibration -> validation."""
import json

import numpy as np
import pandas as pd
import pytest

from nas.latency.calibration_run import calibrate
from nas.space.arch import Arch
from nas.latency.predictor import LatencyPredictor, calibration_path
from nas.latency.validation import validate


@pytest.mark.slow
def test_calibrate_then_validate_on_a_measured_tiny_table(tiny_table, tmp_path):
    raw = LatencyPredictor.from_table(tiny_table)
    assert raw.calibration is None and raw.space.name == "tiny" and raw.img_size == 64
    cal = calibrate(str(tiny_table), n_random=4, n_uniform=2, out_dir=tmp_path / "cal", progress=False)
    stored = json.loads(calibration_path(tiny_table).read_text())
    assert stored["n"] == 6 and len(stored["archs"]) == 6 and stored["model"] in ("scale", "affine")
    assert set(stored["report"]["loo_mape_pct"]) == {"scale", "affine"}     # 6 networks: per_kind not eligible
    pred = LatencyPredictor.from_table(tiny_table)
    assert pred.calibration is not None and pred.calibration.to_dict() == cal.to_dict()
    nets = pd.read_csv(next((tmp_path / "cal").glob("local-cpu.onnxruntime.networks-*.csv")))   # keyed journal
    assert len(nets) == 6 and (nets["p50_ms"] > 0).all() and (nets["probe_factor"] > 0).all()
    # the calibration fits its own networks at least as well (relative error) as the raw block sums
    archs = [Arch.from_dict(a) for a in stored["archs"]]
    measured = nets.set_index("arch").loc[[a.to_json() for a in archs], "p50_ms"].to_numpy()
    rel = lambda p: float((((p.predict_many(archs) - measured) / measured) ** 2).sum())
    assert rel(pred) <= rel(raw) + 1e-9

    # the reference networks, timed right after: this host's speed now against then, applied when steady
    ref = stored["reference"]
    assert ref["names"] and len(ref["p50_ms"]) == len(ref["names"]) and min(ref["p50_ms"]) > 0
    now = LatencyPredictor.from_table(tiny_table, rescale="now")
    hf = now.host_factor
    assert hf is not None and len(hf.readings) == 2 and min(hf.readings) > 0 and hf.applied == hf.steady
    arch = now.space.max_arch()
    assert now.predict(arch) == pytest.approx(pred.predict(arch) * (hf.factor if hf.applied else 1.0), rel=1e-12)

    report = validate(str(tiny_table), n=6, out_dir=tmp_path / "val", predictor=pred, repeat=3, progress=False)
    assert report["n"] == 6 and report["calibrated"]
    w, h = report["with_host_factor"], report["host_factor"]    # the figures with and without the factor
    assert h["factor"] > 0 and 0 <= w["within_5_pct"] <= w["within_10_pct"] <= 100
    assert 0 <= report["within_5_pct"] <= report["within_10_pct"] <= 100 and -1 <= report["spearman"] <= 1
    assert report["mape_pct"] >= 0 and np.isfinite(report["mape_pct"])
    c = report["ceiling"]                                    # the same 3 networks measured twice
    assert c["n"] == 3 and 0 <= c["within_5_pct"] <= c["within_10_pct"] <= 100 and c["mean_abs_diff_pct"] >= 0
    assert 0 <= c["one_factor_within_5_pct"] <= c["one_factor_within_10_pct"] <= 100
    rows = pd.read_csv(tmp_path / "val" / "local-cpu.onnxruntime.validation.csv")
    assert len(rows) == 6 and {"p50_ms", "predicted_ms"} <= set(rows.columns)
    held_out = {json.dumps(a) for a in stored["archs"]}
    assert not held_out & {json.dumps(json.loads(a)) for a in rows["arch"]}      # validation is held out
    assert (tmp_path / "val" / "local-cpu.onnxruntime.validation.png").stat().st_size > 1000
