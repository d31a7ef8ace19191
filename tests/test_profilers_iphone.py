"""``python -m profilers.coreml --device iphone12 --team-id TEAM`` end to end, with coremltools' remote-device
API replaced by tests/fakes_coreml_remote.py (shaped like the installed library): the table it writes, the
compute-unit column, a unit the phone cannot load, and a rerun that times only what is missing. Conversion is
replaced by an empty package (the fake phone never reads one); the numbers are the fake's test data."""
from pathlib import Path

import pandas as pd
import pytest

import fakes_coreml_remote as fake
from nas.space.spaces import TINY_SPACE
from nas.space.units import space_units
from profilers import coreml
from profilers.tables.table import COMPUTE_COLUMN, LatencyTable, parse_compute
from profilers.transports import coreml_remote as cr

TEAM = "ABCDE12345"
DETAILS = {"00008101-000A1B2C3D4E5F60": {"product_type": "iPhone13,2", "marketing_name": "iPhone 12"}}


@pytest.fixture
def phone(tmp_path, monkeypatch):
    def export(self, module, input_shape, path):          # an empty package: the fake phone never reads it
        (Path(path) / "Data").mkdir(parents=True, exist_ok=True)
        return Path(path)

    monkeypatch.setattr(coreml.CoreMLProfiler, "export", export)
    p = fake.FakePhone(tmp_path)
    p.install(monkeypatch, cr)
    monkeypatch.setattr(cr, "_devicectl_details", lambda: DETAILS)
    monkeypatch.setenv("EFFV2_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(cr.TEAM_ENV, raising=False)
    return p


def _args(out, *more):
    return ["--device", "iphone12", "--team-id", TEAM, "--space", "tiny", "--img-size", "64", "--num-classes",
            "10", "--out", str(out), "--rounds", "2", "--warmup", "1", "--no-progress", *more]


def test_an_iphone_table_in_one_command_resumes_and_keeps_going_past_a_unit_it_cannot_load(phone, tmp_path, capsys):
    keys = [s.key for s in space_units(TINY_SPACE, 64, 10)]
    phone.fail_load = {f"{keys[1]}.mlpackage"}
    out = tmp_path / "iphone12.coreml.csv"
    assert coreml.main(_args(out)) == 0
    assert phone.prepare_calls and phone.prepare_calls[0]["credentials"].development_team == TEAM
    t = LatencyTable.read(out)
    assert t.meta.device.name == "iphone12" and t.meta.runtime == "coreml" and "iOS 17.5" in t.meta.runtime_version
    assert t.meta.host.get("os_version") == "17.5" and "team_id" not in t.meta.host
    assert keys[1] not in t.rows.index and set(t.rows.index) == set(keys) - {keys[1]}
    err = capsys.readouterr().err
    assert f"{keys[1]}: not measured" in err and "the phone could not load it" in err and "could not run" in err
    # every row: the fake's samples summarised over rounds, and the compute plan's shares beside them
    assert ((t.rows["p50_ms"] > 0.39) & (t.rows["p50_ms"] < 0.44)).all()
    raw = pd.read_csv(out, comment="#", index_col="key", keep_default_na=False)
    shares = parse_compute(raw.loc[keys[0], COMPUTE_COLUMN])
    assert shares == pytest.approx({"neural_engine": 0.7, "gpu": 0.2, "cpu": 0.1}, abs=2e-3)   # fakes PLAN
    assert not any(load.startswith(keys[0]) for load in phone.loads[len(keys):])

    phone.fail_load, phone.loads = set(), []                # the phone can load it now: only that unit is timed
    assert coreml.main(_args(out)) == 0
    assert phone.loads == [f"{keys[1]}.mlpackage"]
    assert set(LatencyTable.read(out).rows.index) == set(keys)


def test_an_iphone_without_a_team_id_or_a_phone_says_what_to_do(phone, tmp_path, capsys):
    out = tmp_path / "t.csv"
    phone.devices = []
    assert coreml.main(_args(out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "iphone" in err.lower() and not out.exists()


def test_whole_networks_for_calibration_are_timed_on_the_phone(phone, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cr.TEAM_ENV, TEAM)                  # the team id for nas.calibrate, which has no flag of it
    args = ["--device", "iphone12", "--space", "tiny", "--img-size", "64", "--num-classes", "10", "--rounds", "2",
            "--warmup", "1", "--no-progress"]
    assert coreml.main(args) == 0
    n = len(phone.loads)
    from nas.cli import calibrate
    assert calibrate.main(["--target", "iphone12", "--n", "4", "--uniform", "2", "--no-progress",
                           "--out-dir", str(tmp_path)]) == 0
    assert len(phone.loads) - n == 6 and "calibration on 6 networks" in capsys.readouterr().out
