"""The Qualcomm AI Hub transport at its boundary: the ``qai_hub`` package is replaced by tests/fakes_aihub.py
(checked against the real package's signatures, captured below), and everything is written under tmp_path."""
import json
import math
import threading
import time

import pytest

import fakes_aihub as fake
from profilers.runtimes import ProfilerUnavailable
from profilers.transports import aihub
from profilers.transports.aihub import AIHubError, JobLedger, parse_device, parse_profile, submit_all

# Signatures of qai-hub 0.56.0 (qai_hub/client.py), captured with inspect.signature: (name, kind, default repr).
POK = "POSITIONAL_OR_KEYWORD"
REAL_SIGNATURES = {
    "Client.__init__": [("self", POK, None), ("config", POK, "None"), ("profile", POK, "None"),
                        ("default_project_id", POK, "None"), ("client_mode", POK, "'library'")],
    "Client.get_devices": [("self", POK, None), ("name", POK, "''"), ("os", POK, "''"), ("attributes", POK, "None")],
    "Client.get_job": [("self", POK, None), ("job_id", POK, None), ("job_type", POK, "None")],
    "Client.submit_compile_job": [("self", POK, None), ("model", POK, None), ("device", POK, None),
                                  ("name", POK, "None"), ("input_specs", POK, "None"), ("options", POK, "''"),
                                  ("single_compile", POK, "True"), ("calibration_data", POK, "None"),
                                  ("retry", POK, "True"), ("project", POK, "None")],
    "Client.submit_inference_job": [("self", POK, None), ("model", POK, None), ("device", POK, None),
                                    ("inputs", POK, "None"), ("name", POK, "None"), ("options", POK, "''"),
                                    ("retry", POK, "True"), ("profile", POK, "True"), ("project", POK, "None")],
    "Client.set_verbose": [("self", POK, None), ("verbose", POK, "True")],
    "CompileJob.get_status": [("self", POK, None)],
    "CompileJob.get_target_model": [("self", POK, None)],
    "CompileJob.wait": [("self", POK, None), ("timeout", POK, "None")],
    "InferenceJob.get_status": [("self", POK, None)],
    "InferenceJob.download_profile": [("self", POK, None), ("filename", POK, "None")],
    "InferenceJob.wait": [("self", POK, None), ("timeout", POK, "None")],
}
REAL_DEVICE_FIELDS = ["name", "os", "attributes"]
REAL_JOBSTATUS_FIELDS = ["state", "message"]
REAL_STATES = ["SUCCESS", "FAILED", "CREATED", "UNSPECIFIED", "OPTIMIZING_MODEL", "PROVISIONING_DEVICE",
               "MEASURING_PERFORMANCE", "RUNNING_INFERENCE", "QUANTIZING_MODEL", "LINKING_MODELS"]
STATUS_PROPERTIES = ["code", "success", "failure", "finished", "running", "pending"]


def _params(f):
    import inspect
    return [(p.name, p.kind.name, None if p.default is inspect.Parameter.empty else repr(p.default))
            for p in inspect.signature(f).parameters.values()]


def _attr(mod, dotted):
    obj = mod
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _check_against(mod, signatures=REAL_SIGNATURES):
    import dataclasses
    for name, want in signatures.items():
        assert _params(_attr(mod, name)) == want, name
    assert [f.name for f in dataclasses.fields(mod.Device)] == REAL_DEVICE_FIELDS
    assert [f.name for f in dataclasses.fields(mod.JobStatus)] == REAL_JOBSTATUS_FIELDS
    assert [s.name for s in mod.JobStatus.State] == REAL_STATES
    assert all(isinstance(getattr(mod.JobStatus, p), property) for p in STATUS_PROPERTIES)
    assert isinstance(mod.Client.config, property)
    assert issubclass(mod.UserError, mod.Error) and issubclass(mod.InternalError, mod.Error)


def test_the_fake_has_the_real_client_signatures():
    _check_against(fake.Hub().module())


def test_the_captured_signatures_and_profile_shape_are_the_installed_qai_hub():
    hub = pytest.importorskip("qai_hub")
    assert str(hub.__version__) == "0.56.0"          # a packaging Version, not a str
    _check_against(hub)
    from qai_hub import public_api_pb2 as pb
    from qai_hub.client import _profile_pb_to_python_dict

    def layer(name, kind, unit, t=None, cycles=None):
        kw = {"name": name, "layer_type_name": kind, "compute_unit": unit}
        kw.update({"execution_time": t} if t is not None else {})
        kw.update({"execution_cycles": cycles} if cycles is not None else {})
        return pb.LayerDetail(**kw)
    mem = pb.ProfileDetail.MemoryUsage(increase=pb.Range(lower=0, upper=1048576),
                                       peak=pb.Range(lower=2097152, upper=4194304))
    p12 = pb.ProfileDetail(
        major_version=1, minor_version=2, execution_time=301, after_execution_peak_memory=4194304,
        cold_load_time=250000, warm_load_time=41000, compile_time=0, execution_memory=mem,
        all_execution_times=[305, 301, 299, 310, 298, 302], all_cold_load_times=[250000],
        all_warm_load_times=[41000, 40500],
        layer_details=[layer("/conv/Conv", "CONV_2D", pb.COMPUTE_UNIT_NPU, 180, 90000),
                       layer("/act/Gelu", "GELU", pb.COMPUTE_UNIT_NPU, 40),
                       layer("/attn/Softmax", "SOFTMAX", pb.COMPUTE_UNIT_GPU, 60),
                       layer("/reshape", "RESHAPE", pb.COMPUTE_UNIT_CPU, 20)])
    assert _profile_pb_to_python_dict(p12) == fake.PROFILE_1_2
    p11 = pb.ProfileDetail(major_version=1, minor_version=1, execution_time=1234, after_execution_peak_memory=1,
                           cold_load_time=2, warm_load_time=3, compile_time=4,
                           layer_details=[layer("/conv/Conv", "CONV_2D", pb.COMPUTE_UNIT_NPU),
                                          layer("/act/Gelu", "GELU", pb.COMPUTE_UNIT_NPU),
                                          layer("/x", "RESHAPE", pb.COMPUTE_UNIT_CPU)])
    assert _profile_pb_to_python_dict(p11) == fake.PROFILE_1_1


# -- parsing ------------------------------------------------------------------------------------------------
def test_a_profile_with_per_run_times_gives_ms_and_time_weighted_unit_shares():
    r = parse_profile(fake.PROFILE_1_2)
    assert r.per_run and r.note is None
    assert r.samples_ms == pytest.approx((0.305, 0.301, 0.299, 0.310, 0.298, 0.302))
    assert r.compute_units_basis == "execution_time"
    assert r.compute_units == pytest.approx({"NPU": 220 / 300, "GPU": 60 / 300, "CPU": 20 / 300})
    assert sum(r.compute_units.values()) == pytest.approx(1.0)
    assert r.load_ms == pytest.approx(41.0)
    st = r.stats()
    assert st.n == 6 and st.p50_ms == pytest.approx(0.3015, abs=2e-3) and st.p10_ms <= st.p50_ms <= st.p90_ms


def test_an_older_profile_gives_one_estimated_sample_and_says_so():
    r = parse_profile(fake.PROFILE_1_1)
    assert not r.per_run and r.samples_ms == (1.234,)
    assert "estimated_inference_time" in r.note and "per-run" in r.note
    assert r.compute_units_basis == "layer_count"
    assert r.compute_units == pytest.approx({"NPU": 2 / 3, "GPU": 0.0, "CPU": 1 / 3})
    st = r.stats()
    assert st.p50_ms == pytest.approx(1.234) and st.n == 1 and math.isnan(st.p10_ms) and math.isnan(st.p90_ms)


@pytest.mark.parametrize("profile", [{}, {"execution_summary": {}}, {"execution_detail": []},
                                     {"execution_summary": {"all_inference_times": [300, -1]}},
                                     {"execution_summary": {"estimated_inference_time": 5}, "execution_detail": 3}])
def test_a_profile_of_another_shape_is_refused(profile):
    with pytest.raises(ValueError):
        parse_profile(profile)


def test_device_facts_come_from_its_attributes():
    d = fake.Device(*fake.DEVICES[2][:2], fake.DEVICES[2][2])
    m = parse_device(d)
    assert m["aihub_device"] == "Samsung Galaxy S23 (Family)" and m["chipset"] == "qualcomm-snapdragon-8gen2"
    assert m["os"] == "android" and m["os_version"] == "13" and m["vendor"] == "samsung" and m["frameworks"] == ["tflite"]


def test_the_ledger_sits_beside_the_table(tmp_path):
    assert aihub.ledger_path(tmp_path / "s24.tflite.csv") == tmp_path / "s24.tflite.aihub-jobs.json"


# -- readiness and devices --------------------------------------------------------------------------------
def test_without_qai_hub_the_error_names_the_extra(monkeypatch):
    fake.without_qai_hub(monkeypatch)
    with pytest.raises(ProfilerUnavailable, match=r'pip install "effv2-nas\[aihub\]"'):
        aihub.check_ready()


def test_without_an_api_token_the_error_says_how_to_configure_one(monkeypatch):
    fake.Hub(configured=False).install(monkeypatch)
    with pytest.raises(ProfilerUnavailable) as e:
        aihub.check_ready()
    msg = str(e.value)
    assert "qai-hub configure --api_token TOKEN" in msg and "client.ini not found" in msg
    assert "\n" not in msg and "─" not in msg and "┌" not in msg


def test_a_ready_client_is_made_quiet(monkeypatch):
    hub = fake.Hub()
    hub.install(monkeypatch)
    aihub.check_ready()
    assert hub.verbose_set == [False]
    assert aihub.client_version() == "0.56.0"


def test_a_known_device_resolves_to_its_latest_os_and_chipset(monkeypatch):
    fake.Hub().install(monkeypatch)
    d = aihub.resolve_device("samsung galaxy s24 (family)")
    assert d.name == "Samsung Galaxy S24 (Family)" and d.os == "" and d.os_version == "15"
    assert d.chipset == "qualcomm-snapdragon-8gen3" and d.hub_device == fake.Device("Samsung Galaxy S24 (Family)", "")
    assert aihub.resolve_device("Samsung Galaxy S24 (Family)", os="14").hub_device.os == "14"
    with pytest.raises(AIHubError, match="not '9'"):
        aihub.resolve_device("Samsung Galaxy S24 (Family)", os="9")


@pytest.mark.parametrize("name,close", [("Samsung Galaxy S24", "Samsung Galaxy S24 (Family)"),
                                        ("Galaxy S23", "Samsung Galaxy S23 (Family)"),
                                        ("snapdragon x elite", "Snapdragon X Elite CRD")])
def test_an_unknown_device_lists_close_matches(monkeypatch, name, close):
    fake.Hub().install(monkeypatch)
    with pytest.raises(AIHubError) as e:
        aihub.resolve_device(name)
    assert repr(close) in str(e.value) and "qai-hub list-devices" in str(e.value)


# -- submitting -------------------------------------------------------------------------------------------
def _units(tmp_path, keys):
    out = {}
    for k in keys:
        p = tmp_path / f"{k}.onnx"
        p.write_bytes(b"onnx")
        out[k] = p
    return out


def _device():
    return aihub.AIHubDevice("Samsung Galaxy S24 (Family)", "", tuple(fake.DEVICES[1][2]),
                             fake.Device("Samsung Galaxy S24 (Family)", ""), os_version="15")


def _fast(_s):
    time.sleep(0.0005)


def test_every_unit_is_compiled_then_profiled_and_its_jobs_are_in_the_ledger(monkeypatch, tmp_path):
    hub = fake.Hub(profiles={"b": fake.PROFILE_1_1})
    hub.install(monkeypatch)
    units = _units(tmp_path, ["a", "b", "c"])
    ledger = tmp_path / "s24.tflite.aihub-jobs.json"
    run = submit_all(units, _device(), ledger, max_jobs=2, profile_options="--max_profiler_iterations 50",
                     poll_s=0.0, sleep=_fast, progress=False)
    assert list(run.outcomes) == ["a", "b", "c"] and not run.failures
    assert run.results["a"].per_run and not run.results["b"].per_run
    kinds = sorted((k, u) for k, u, _ in hub.submitted)
    assert kinds == [("compile", "a"), ("compile", "b"), ("compile", "c"), ("profile", "a"), ("profile", "b"),
                     ("profile", "c")]
    for kind, _, kw in hub.submitted:
        assert kw["device"] == fake.Device("Samsung Galaxy S24 (Family)", "")
        if kind == "compile":
            assert kw["options"] == "--target_runtime tflite" and str(kw["model"]).endswith(".onnx")
        else:
            assert kw["profile"] is True and kw["inputs"] is None and kw["options"] == "--max_profiler_iterations 50"
    book = json.loads(ledger.read_text())
    assert book["header"]["device"] == "Samsung Galaxy S24 (Family)" and book["header"]["target_runtime"] == "tflite"
    for k, o in run.outcomes.items():
        assert book["units"][k] == {"compile_job_id": o.compile_job_id, "profile_job_id": o.profile_job_id,
                                    "status": "done"}
        assert o.compile_job_id.startswith("jc") and o.profile_job_id.startswith("jp")
    meta = aihub.table_meta(_device(), "tflite", run, "0.56.0", ledger)
    assert meta["aihub_device"] == "Samsung Galaxy S24 (Family)" and meta["chipset"] == "qualcomm-snapdragon-8gen3"
    assert meta["os_version"] == "15" and meta["target_runtime"] == "tflite" and meta["qai_hub"] == "0.56.0"
    assert meta["jobs"]["a"]["profile_job_id"] == run.outcomes["a"].profile_job_id
    assert meta["jobs"]["b"]["per_run"] is False


class Killed(BaseException):
    """The process dying (kill -9 of the run): nothing in the transport may swallow it."""


def test_a_killed_run_is_collected_by_the_rerun_without_resubmitting(monkeypatch, tmp_path):
    hub = fake.Hub(polls=3)
    hub.install(monkeypatch)
    units = _units(tmp_path, ["a", "b", "c", "d"])
    ledger = tmp_path / "s24.tflite.aihub-jobs.json"
    all_submitted = threading.Barrier(len(units), timeout=5)

    def dies(_s):                                   # killed while every unit's compile job runs on AI Hub
        all_submitted.wait()
        raise Killed()
    with pytest.raises(Killed):
        submit_all(units, _device(), ledger, max_jobs=4, poll_s=0.0, sleep=dies, progress=False)
    first = list(hub.submitted)
    assert sorted(u for k, u, _ in first if k == "compile") == sorted(units) and len(first) == len(units)
    book = json.loads(ledger.read_text())["units"]
    for _, u, _ in first:                           # every submission reached the ledger at once
        assert book[u]["compile_job_id"] in hub.jobs and book[u]["status"] == "compiling"

    plan = submit_all(units, _device(), ledger, dry_run=True).plan
    assert plan == {"units": 4, "compile_jobs": 0, "profile_jobs": 4, "collect": 4, "failed_kept": 0}
    run = submit_all(units, _device(), ledger, max_jobs=4, poll_s=0.0, sleep=_fast, progress=False)
    assert not run.failures and set(run.results) == set(units)
    assert [k for k, _, _ in hub.submitted[len(first):]] == ["profile"] * 4      # no compile job paid for twice
    for u, o in run.outcomes.items():
        assert o.compile_job_id == book[u]["compile_job_id"]

    n = len(hub.submitted)                          # a third run only collects the finished jobs
    run3 = submit_all(units, _device(), ledger, poll_s=0.0, sleep=_fast, progress=False)
    assert len(hub.submitted) == n and set(run3.results) == set(units)
    assert {u: o.profile_job_id for u, o in run3.outcomes.items()} == \
        {u: o.profile_job_id for u, o in run.outcomes.items()}


def test_an_interrupted_run_submits_nothing_more(monkeypatch, tmp_path):
    hub = fake.Hub(polls=3)
    hub.install(monkeypatch)
    units = _units(tmp_path, list("abcdef"))
    calls = []

    def interrupted_once(_s):
        calls.append(1)
        if len(calls) == 1:
            raise Killed()
        time.sleep(0.01)
    with pytest.raises(Killed):
        submit_all(units, _device(), tmp_path / "t.aihub-jobs.json", max_jobs=2, poll_s=0.0, sleep=interrupted_once,
                   progress=False)
    n = len(hub.submitted)
    assert sum(k == "compile" for k, _, _ in hub.submitted) < len(units)
    time.sleep(0.05)
    assert len(hub.submitted) == n                      # no worker goes on after the run has stopped


@pytest.mark.parametrize("max_jobs", [1, 2, 3])
def test_units_run_side_by_side_but_never_more_than_max_jobs(monkeypatch, tmp_path, max_jobs):
    hub = fake.Hub(polls=2, gate_at=max_jobs)
    hub.install(monkeypatch)
    units = _units(tmp_path, list("abcdef"))
    run = submit_all(units, _device(), tmp_path / "t.aihub-jobs.json", max_jobs=max_jobs, poll_s=0.0,
                     sleep=_fast, progress=False)
    assert not run.failures
    assert hub.peak_in_flight == max_jobs


def test_a_failed_job_is_reported_with_its_id_and_message_and_the_others_go_on(monkeypatch, tmp_path):
    hub = fake.Hub(compile_fail={"b": "Failed to compile model: op 'Erf' is not supported by the TFLite runtime."},
                   profile_fail={"c": "Failed to profile the model: out of memory on the device."})
    hub.install(monkeypatch)
    units = _units(tmp_path, ["a", "b", "c", "d"])
    ledger = tmp_path / "t.aihub-jobs.json"
    run = submit_all(units, _device(), ledger, max_jobs=2, poll_s=0.0, sleep=_fast, progress=False)
    assert set(run.results) == {"a", "d"} and set(run.failures) == {"b", "c"}
    b, c = run.outcomes["b"], run.outcomes["c"]
    assert b.failed_stage == "compile" and b.failed_job_id == b.compile_job_id and b.profile_job_id is None
    assert "'Erf' is not supported" in b.error
    assert c.failed_stage == "profile" and c.failed_job_id == c.profile_job_id and "out of memory" in c.error
    book = json.loads(ledger.read_text())["units"]
    assert book["b"]["status"] == "failed" and "Erf" in book["b"]["message"]

    n = len(hub.submitted)                                          # a rerun reports them again, submits nothing
    rerun = submit_all(units, _device(), ledger, poll_s=0.0, sleep=_fast, progress=False)
    assert len(hub.submitted) == n and rerun.outcomes["b"].error == b.error
    assert rerun.outcomes["c"].profile_job_id == c.profile_job_id

    hub.compile_fail.clear()
    hub.profile_fail.clear()
    retried = submit_all(units, _device(), ledger, retry_failed=True, poll_s=0.0, sleep=_fast, progress=False)
    assert not retried.failures
    assert [u for _, u, _ in hub.submitted[n:]].count("b") == 2 and retried.outcomes["a"].compile_job_id == \
        run.outcomes["a"].compile_job_id


def test_a_dry_run_counts_the_jobs_without_the_client(monkeypatch, tmp_path):
    fake.without_qai_hub(monkeypatch)
    units = {k: tmp_path / f"{k}.onnx" for k in "abc"}
    ledger = tmp_path / "t.aihub-jobs.json"
    run = submit_all(units, "Samsung Galaxy S24 (Family)", ledger, dry_run=True)
    assert run.dry_run and not run.outcomes
    assert run.plan == {"units": 3, "compile_jobs": 3, "profile_jobs": 3, "collect": 0, "failed_kept": 0}
    book = JobLedger(ledger, {"device": "Samsung Galaxy S24 (Family)", "os": "", "target_runtime": "tflite",
                              "compile_options": "--target_runtime tflite", "profile_options": ""})
    book.record("a", compile_job_id="jc1", status="compiling")
    book.record("b", compile_job_id="jc2", profile_job_id="jp3", status="profiling")
    plan = submit_all(units, "Samsung Galaxy S24 (Family)", ledger, dry_run=True).plan
    assert plan == {"units": 3, "compile_jobs": 1, "profile_jobs": 2, "collect": 2, "failed_kept": 0}


def test_a_ledger_of_other_settings_is_refused(monkeypatch, tmp_path):
    fake.Hub().install(monkeypatch)
    units = _units(tmp_path, ["a"])
    ledger = tmp_path / "t.aihub-jobs.json"
    submit_all(units, _device(), ledger, poll_s=0.0, sleep=_fast, progress=False)
    with pytest.raises(AIHubError, match="target_runtime: 'tflite' there, 'qnn_dlc' here"):
        submit_all(units, _device(), ledger, target_runtime="qnn_dlc", dry_run=True)


def test_a_missing_token_stops_the_run_before_any_submission(monkeypatch, tmp_path):
    hub = fake.Hub(configured=False)
    hub.install(monkeypatch)
    with pytest.raises(ProfilerUnavailable, match="qai-hub configure --api_token TOKEN"):
        submit_all(_units(tmp_path, ["a"]), _device(), tmp_path / "t.aihub-jobs.json", progress=False)
    assert hub.submitted == []


def test_an_unknown_device_name_stops_the_run_with_close_matches(monkeypatch, tmp_path):
    fake.Hub().install(monkeypatch)
    with pytest.raises(AIHubError, match="Samsung Galaxy S23 \\(Family\\)"):
        submit_all(_units(tmp_path, ["a"]), "Galaxy S23", tmp_path / "t.aihub-jobs.json", progress=False)


@pytest.mark.parametrize("kw,match", [({"target_runtime": "tf"}, "unknown AI Hub target runtime"),
                                      ({"max_jobs": 0}, "max_jobs"),
                                      ({"compile_options": "--target_runtime onnx"}, "target_runtime")])
def test_bad_arguments_are_refused(tmp_path, kw, match):
    with pytest.raises(AIHubError, match=match):
        submit_all({}, "x", tmp_path / "t.aihub-jobs.json", dry_run=True, **kw)
