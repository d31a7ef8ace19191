"""``python -m profilers.aihub --device galaxy-s24`` end to end, with the ``qai_hub`` package replaced by
tests/fakes_aihub.py (shaped like qai-hub 0.56, checked by tests/test_transport_aihub.py): the dry run, many
jobs in flight, the table and its compute-unit column, a failed job, a killed run that a rerun collects without
paying twice, and the one-line errors. The numbers are the fake's test data, written only under tmp_path."""
import csv
import json
import shutil

import pytest

import fakes_aihub as fake
from nas.space.spaces import TINY_SPACE
from nas.space.units import space_units
from profilers import aihub
from profilers.tables import table as table_mod
from profilers.tables.meta import meta_path
from profilers.tables.table import COMPUTE_COLUMN, LatencyTable, parse_compute
from profilers.transports.aihub import ledger_path

KEYS = [s.key for s in space_units(TINY_SPACE, 64, 10)]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    h = fake.Hub(polls=1)
    h.install(monkeypatch)
    monkeypatch.setattr(aihub, "POLL_S", 0.001)
    monkeypatch.setenv("EFFV2_CACHE", str(tmp_path / "cache"))
    return h


def _args(out, *more):
    return ["--device", "galaxy-s24", "--space", "tiny", "--img-size", "64", "--num-classes", "10", "--out", str(out),
            "--no-progress", *more]


def test_a_dry_run_says_what_it_would_submit_without_the_client(monkeypatch, tmp_path, capsys):
    fake.without_qai_hub(monkeypatch)                     # no client, no network: only the plan
    out = tmp_path / "s24.csv"
    assert aihub.main(_args(out, "--dry-run", "--max-jobs", "4", "--limit", "10")) == 0
    said = capsys.readouterr().out
    assert "10 to measure" in said and "10 compile and 10 profile job(s), 4 unit(s) at a time (3 wave(s))" in said
    assert not out.exists() and not ledger_path(out).exists()
    # the dry run resolves its target as a run does: a reference device is refused, --device is required
    assert aihub.main(["--device", "ref-epyc", "--dry-run", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'ref-epyc' is a reference device" in err
    with pytest.raises(SystemExit) as e:
        aihub.main(["--dry-run"])
    assert e.value.code == 2 and "--device is required" in capsys.readouterr().err


def test_a_table_from_hosted_jobs_keeps_going_past_a_failed_job(hub, tmp_path, capsys):
    hub.compile_fail = {KEYS[2]: "Failed to compile: op GELU is not supported by the target runtime"}
    out = tmp_path / "s24.csv"
    npu = ("--compute-unit", "npu")
    assert aihub.main(_args(out, "--max-jobs", "6", *npu)) == 0
    err = capsys.readouterr().err
    t = LatencyTable.read(out)
    assert set(t.rows.index) == set(KEYS) - {KEYS[2]}
    assert f"{KEYS[2]}: not measured (compile job jc" in err and "GELU is not supported" in err
    # the fake's profile: per-run times 0.298-0.310 ms; NPU 220 of 300 us of layer time, GPU 60, CPU 20
    assert ((t.rows["p50_ms"] > 0.29) & (t.rows["p50_ms"] < 0.32)).all()
    raw = table_mod.read_rows(out)
    assert parse_compute(raw.loc[KEYS[0], COMPUTE_COLUMN]) == pytest.approx({"npu": 0.733, "gpu": 0.2, "cpu": 0.067},
                                                                            abs=2e-3)
    assert hub.peak_in_flight > 1                          # jobs ran side by side
    kinds = [k for k, _, _ in hub.submitted]
    assert kinds.count("compile") == len(KEYS) and kinds.count("profile") == len(KEYS) - 1
    opts = {kw["options"] for k, _, kw in hub.submitted if k == "profile"}
    assert opts == {"--max_profiler_iterations 140 --compute_unit npu"}
    assert t.meta.runtime == "aihub" and t.meta.host["chipset"] == "qualcomm-snapdragon-8gen3"
    assert t.meta.host["os_version"] == "15" and t.meta.host["job_ledger"] == ledger_path(out).name
    ledger = json.loads(ledger_path(out).read_text())
    assert ledger["units"][KEYS[2]]["status"] == "failed" and ledger["units"][KEYS[0]]["profile_job_id"]

    hub.compile_fail = {}                                  # a rerun keeps the failure; --retry-failed submits it
    n = len(hub.submitted)
    assert aihub.main(_args(out)) == 2                     # another profile option: not into this table
    assert "compute_unit: table has 'npu', this run None" in capsys.readouterr().err
    assert aihub.main(_args(out, *npu)) == 0 and len(hub.submitted) == n
    assert aihub.main(_args(out, *npu, "--retry-failed")) == 0
    assert [(k, u) for k, u, _ in hub.submitted[n:]] == [("compile", KEYS[2]), ("profile", KEYS[2])]
    assert set(LatencyTable.read(out).rows.index) == set(KEYS)


def test_a_killed_run_is_collected_by_the_rerun_without_new_jobs(hub, tmp_path, monkeypatch):
    out = tmp_path / "s24.csv"
    real = table_mod.TableWriter.append
    calls = []

    def killed(self, *a, **k):                             # the jobs finished, the process died before its rows
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(table_mod.TableWriter, "append", killed)
    with pytest.raises(KeyboardInterrupt):
        aihub.main(_args(out, "--max-jobs", "4", "--limit", "8"))
    submitted = [(k, u) for k, u, _ in hub.submitted]
    assert len(submitted) == 16 and calls
    monkeypatch.setattr(table_mod.TableWriter, "append", real)
    assert aihub.main(_args(out, "--max-jobs", "4", "--limit", "8")) == 0
    assert [(k, u) for k, u, _ in hub.submitted] == submitted      # collected from the ledger, not paid again
    rows = set(LatencyTable.read(out).rows.index)
    assert len(rows) == 8 and rows == {u for _, u in submitted}


@pytest.mark.parametrize("case", ["no_package", "no_token", "unknown_device"])
def test_what_is_missing_is_said_in_one_line(case, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EFFV2_CACHE", str(tmp_path / "cache"))
    args = _args(tmp_path / "t.csv")
    if case == "no_package":
        fake.without_qai_hub(monkeypatch)
        want = 'pip install "effv2-nas[aihub]"'
    elif case == "no_token":
        fake.Hub(configured=False).install(monkeypatch)
        want = "qai-hub configure --api_token TOKEN"
    else:
        h = fake.Hub()
        h.devices = [d for d in h.devices if "S24" not in d.name]
        h.install(monkeypatch)
        want = "no device 'Samsung Galaxy S24 (Family)'; did you mean"
    assert aihub.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and want in err and not (tmp_path / "t.csv").exists()


def test_whole_networks_for_calibration_go_through_the_same_jobs(hub, tmp_path, capsys):
    args = ["--device", "galaxy-s24", "--space", "tiny", "--img-size", "64", "--num-classes", "10", "--no-progress"]
    assert aihub.main(args) == 0                           # the device's own table, in the user's cache
    n = len(hub.submitted)
    from nas.cli import calibrate
    assert calibrate.main(["--target", "galaxy-s24", "--n", "4", "--uniform", "1", "--no-progress",
                           "--out-dir", str(tmp_path)]) == 0
    nets = [(k, u) for k, u, _ in hub.submitted[n:]]
    assert len(nets) == 10 and all(u.startswith("net-") for _, u in nets)      # 5 networks: compile + profile
    assert "calibration on 5 networks" in capsys.readouterr().out


def test_units_that_fell_back_to_the_cpu_are_reported_and_can_be_kept_out_of_the_search(hub, tmp_path):
    import copy
    from nas.latency.predictor import LatencyPredictor
    from nas.search import SearchConfig
    from nas.search.base import SearchError
    from nas.search.inputs import forbid_fallbacks
    from nas.search.objective import Budget
    from nas.space.units import arch_units
    from profilers.tables.table import coverage_report

    arch = TINY_SPACE.max_arch()
    unit = next(u.key for u in arch_units(arch, 64, 10) if u.key.startswith("ffn"))
    on_cpu = copy.deepcopy(fake.PROFILE_1_2)
    for layer in on_cpu["execution_detail"]:
        layer["compute_unit"] = "CPU"
    hub.profiles = {unit: on_cpu}
    out = tmp_path / "s24.csv"
    assert aihub.main(_args(out)) == 0
    text, missing = coverage_report(out)
    assert not missing and "fell back from the accelerator (1 units" in text and f"  {unit}  (npu=0.000;gpu=0.000;cpu=1.000)" in text

    table = LatencyTable.read(out)
    pred = forbid_fallbacks(table, LatencyPredictor.of_table(table))
    assert pred.forbidden == [unit] and pred.predict(arch) == float("inf") and pred.mes(arch) == 0.0
    assert pred.predict(TINY_SPACE.min_arch()) == LatencyPredictor.of_table(table).predict(TINY_SPACE.min_arch())
    assert pred.predict_many([arch])[0] == float("inf") and not Budget(params=1e12).allows(1, pred.predict(arch))

    cpu = tmp_path / "cpu.csv"                              # a table without compute units: said, not ignored
    rows = list(csv.reader(out.read_text().splitlines()))
    i = rows[0].index(COMPUTE_COLUMN)
    cpu.write_text("".join(",".join(r[:i] + r[i + 1:]) + "\n" for r in rows))
    shutil.copy(meta_path(out), meta_path(cpu))
    with pytest.raises(SearchError, match="does not record"):
        forbid_fallbacks(LatencyTable.read(cpu), pred)
    assert "forbid_fallback" not in SearchConfig().identity()       # earlier searches' folders still resume
    assert SearchConfig(forbid_fallback=True).identity()["forbid_fallback"] is True


def test_an_unreadable_job_ledger_is_named_in_one_line(hub, tmp_path, capsys):
    out = tmp_path / "s24.csv"
    ledger_path(out).write_text("{not json")
    assert aihub.main(_args(out, "--limit", "2")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(ledger_path(out)) in err and "move it away" in err
    assert not hub.submitted
