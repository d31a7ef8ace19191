"""Another project's view: the predictor works from an installed wheel, outside the repository."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_the_tables_and_the_predictor_api(tmp_path):
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(pip + ["wheel", "--no-deps", "-q", str(REPO), "-w", str(tmp_path / "w")],
                   check=True, cwd=tmp_path, timeout=300)
    wheel = next((tmp_path / "w").glob("effv2_nas-*.whl"))
    subprocess.run(pip + ["install", "-q", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True, timeout=300)
    code = ("from nas.latency.predictor import LatencyPredictor; from nas.space.spaces import DEFAULT_SPACE; "
            "p = LatencyPredictor.from_table('ref-epyc'); a = DEFAULT_SPACE.canonical('s0'); "
            "print(p.source); print(p.predict(a), p.params(a), p.mes(a))")
    env = {k: v for k, v in os.environ.items() if k != "EFFV2_TABLES"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(tmp_path / "site")},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    source, values = r.stdout.strip().splitlines()
    assert source.startswith(str(tmp_path / "site"))                  # the installed copy, not the repo's
    lat, params, mes = map(float, values.split())
    assert params == 3_600_256 and 0 < lat < 1000 and mes > 0
