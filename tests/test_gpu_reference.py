"""benchmarks/gpu_reference.py, the one-run GPU reference pipeline, without measuring anything here.

The whole pipeline (profile, calibrate, validate) ran on this machine's CPU with
``--device local-cpu --space tiny`` (README); here the budget and the summary are checked.
"""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("gpu_reference", ROOT / "benchmarks" / "gpu_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_spent_budget_starts_nothing_and_says_so(tmp_path, capsys, caplog):
    mod = _script()
    rc = mod.main(["--device", "local-cpu", "--batch-device", "none", "--space", "tiny", "--img-size", "64",
                   "--num-classes", "10", "--budget-s", "0", "--out-dir", str(tmp_path / "t"),
                   "--report-dir", str(tmp_path)])
    assert rc == 0
    summary = json.loads((tmp_path / "gpu_reference.json").read_text())
    assert summary["local-cpu"]["profile"] == {"table": str(tmp_path / "t" / "local-cpu.torch.csv"), "units": 0, "of": 36,
                                               "measured_now": 0, "complete": False}
    assert "calibration" not in summary["local-cpu"]
    assert "not started" in caplog.text
    assert "| local-cpu | 0/36 | - | - |" in capsys.readouterr().out


def test_summary_reads_as_a_table():
    text = _script().format_summary({"some-gpu": {
        "profile": {"units": 158, "of": 158, "profiling_seconds": 301.2, "median_cv_pct": 0.8},
        "calibration": {"sum_of_blocks_mape_pct": 41.0, "sum_of_blocks_bias_pct": 40.5, "calibrated_mape_pct": 4.1},
        "validation": {"mape_pct": 5.2, "within_5_pct": 58.0, "within_10_pct": 90.0, "spearman": 0.95}}})
    row = text.splitlines()[2]
    assert row == ("| some-gpu | 158/158 | 301 | 0.80 % | MAPE 41.00 %, bias +40.50 % | 4.10 % | 5.20 % | 58 % | 90 % "
                   "| 0.950 |")
