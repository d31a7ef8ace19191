"""The iPhone transport at its boundary: coremltools' remote-device API is replaced by
tests/fakes_coreml_remote.py (checked against the installed coremltools), and nothing leaves tmp_path."""
import asyncio
import dataclasses
import enum
import inspect
import math
import subprocess

import pytest

import fakes_coreml_remote as fake
from nas.core.errors import UserError
from profilers.runtimes import ProfilerUnavailable
from profilers.transports import coreml_remote as cr
from profilers.transports.coreml_remote import (RemoteIPhone, RemoteUnitError, parse_devicectl_devices,
                                                parse_measurement, parse_operation_execution)

TEAM = "ABCDE12345"
UDID = "00008101-000A1B2C3D4E5F60"
DETAILS = {UDID: {"product_type": "iPhone13,2", "marketing_name": "iPhone 12", "hardware_model": "D53gAP",
                  "pairing_state": "paired", "tunnel_state": "connected", "transport": "wired"}}


@pytest.fixture
def phone(tmp_path, monkeypatch):
    p = fake.FakePhone(tmp_path)
    p.install(monkeypatch, cr)
    monkeypatch.setattr(cr, "_devicectl_details", lambda: DETAILS)
    monkeypatch.delenv(cr.TEAM_ENV, raising=False)
    return p


def _iphone(tmp_path, **kw):
    return RemoteIPhone(team_id=kw.pop("team_id", TEAM), working_dir=tmp_path / "runner", details=DETAILS, **kw)


# -- the fake against the installed coremltools -------------------------------------------------------
def _default(d):
    return (type(d).__name__, d.name) if isinstance(d, enum.Enum) else d     # the fake's enums are its own classes


def _sig(f):
    return [(p.name, p.kind, _default(p.default)) for p in inspect.signature(f).parameters.values()]


def test_the_fake_has_the_installed_coremltools_names_signatures_and_shapes(tmp_path):
    ct = pytest.importorskip("coremltools")
    from coremltools.models import compute_device as cd
    from coremltools.models import compute_plan as cp
    from coremltools.models.ml_program.experimental import perf_utils, remote_device
    assert tuple(int(x) for x in ct.__version__.split(".")[:2]) >= (8, 3)
    p = fake.FakePhone(tmp_path)
    rd_f, pu_f, ct_f = p.remote_device(), p.perf_utils(), p.coremltools()

    for name in ("get_devices", "get_connected_devices", "prepare_for_model_debugging"):
        real, mine = getattr(remote_device.Device, name), getattr(rd_f.Device, name)
        assert [n for n, _, _ in _sig(real)] == [n for n, _, _ in _sig(mine)], name
        assert inspect.iscoroutinefunction(real) == inspect.iscoroutinefunction(mine), name
    assert inspect.iscoroutinefunction(remote_device.Device.prepare_for_model_debugging)
    for cls in ("Device", "AppSigningCredentials"):
        real, mine = getattr(remote_device, cls), getattr(rd_f, cls)
        assert [(f.name, f.default) for f in dataclasses.fields(real)] == \
            [(f.name, f.default) for f in dataclasses.fields(mine)], cls
        assert real.__dataclass_params__.frozen and mine.__dataclass_params__.frozen
    for name in ("DeviceType", "DeviceState"):
        assert [(e.name, e.value) for e in getattr(remote_device, name)] == \
            [(e.name, e.value) for e in getattr(rd_f, name)]
    assert [(u.name, u.value) for u in ct.ComputeUnit] == [(u.name, u.value) for u in ct_f.ComputeUnit]
    assert _sig(remote_device._DeviceCtlError.__init__) == _sig(rd_f._DeviceCtlError.__init__)
    assert str(remote_device._DeviceCtlError("boom", 7)) == str(rd_f._DeviceCtlError("boom", 7))
    for name in ("is_alive", "stop"):
        assert _sig(getattr(remote_device._AppSession, name)) == _sig(getattr(fake.FakeSession, name))
    assert _sig(ct.models.MLModel.__init__) == _sig(ct_f.models.MLModel.__init__)

    real_b, mine_b = perf_utils.MLModelBenchmarker, pu_f.MLModelBenchmarker
    assert [n for n, _, _ in _sig(real_b.__init__)] == [n for n, _, _ in _sig(mine_b.__init__)]
    for name in ("benchmark_load", "benchmark_predict", "benchmark_operation_execution"):
        real, mine = getattr(real_b, name), getattr(mine_b, name)
        assert [(n, d) for n, _, d in _sig(real)] == [(n, d) for n, _, d in _sig(mine)], name
        assert inspect.iscoroutinefunction(real) and inspect.iscoroutinefunction(mine), name
    for cls in ("Statistics", "Measurement", "OperationExecutionInfo"):
        assert [f.name for f in dataclasses.fields(getattr(real_b, cls))] == \
            [f.name for f in dataclasses.fields(getattr(mine_b, cls))], cls
    assert [f.name for f in dataclasses.fields(cp.MLComputePlanDeviceUsage)] == \
        [f.name for f in dataclasses.fields(fake.MLComputePlanDeviceUsage)]
    for cls in ("MLCPUComputeDevice", "MLGPUComputeDevice", "MLNeuralEngineComputeDevice"):
        assert _sig(getattr(cd, cls).__init__) == _sig(getattr(fake, cls).__init__), cls


def test_the_real_measurement_and_compute_device_classes_parse():
    pytest.importorskip("coremltools")
    from coremltools.models import compute_device as cd
    from coremltools.models.compute_plan import MLComputePlanDeviceUsage
    from coremltools.models.ml_program.experimental.perf_utils import MLModelBenchmarker as B
    m = B.Measurement.from_samples([0.5, 0.4, 0.6])
    assert parse_measurement(m) == [0.5, 0.4, 0.6]

    def usage(cls):                     # the proxies exist only on macOS: build the objects without them
        return MLComputePlanDeviceUsage(object.__new__(cls), [])
    infos = [B.OperationExecutionInfo(None, None, usage(cd.MLNeuralEngineComputeDevice), B.Measurement.from_samples([3.0])),
             B.OperationExecutionInfo(None, None, usage(cd.MLGPUComputeDevice), B.Measurement.from_samples([1.0])),
             B.OperationExecutionInfo(None, None, None, B.Measurement.from_samples([]))]
    shares, basis = parse_operation_execution(infos)
    assert basis == "estimated_cost" and shares == pytest.approx({"neural_engine": 0.75, "gpu": 0.25, "cpu": 0.0})


# -- pure parsers -----------------------------------------------------------------------------------------
def test_measurements_are_per_run_ms_and_bad_ones_are_refused(tmp_path):
    B = fake.FakePhone(tmp_path).perf_utils().MLModelBenchmarker
    assert parse_measurement(B.Measurement.from_samples(list(fake.PREDICT_MS))) == fake.PREDICT_MS
    assert parse_measurement(B.Measurement.from_samples([0.0]), "load", allow_zero=True) == [0.0]
    for samples in ([], [float("nan")], [-1.0], [0.0]):
        with pytest.raises(ValueError):
            parse_measurement(B.Measurement.from_samples(samples))


def test_compute_unit_shares_follow_the_plans_cost_or_count_the_ops(tmp_path):
    p = fake.FakePhone(tmp_path)
    B = p.perf_utils().MLModelBenchmarker
    infos = asyncio.run(_ops(p))
    shares, basis = parse_operation_execution(infos)
    assert basis == "estimated_cost" and sum(shares.values()) == pytest.approx(1.0)
    assert shares == pytest.approx({"neural_engine": 0.7, "gpu": 0.2, "cpu": 0.1})
    uncosted = [dataclasses.replace(i, measurement=B.Measurement.from_samples([])) for i in infos]
    shares, basis = parse_operation_execution(uncosted)
    assert basis == "op_count" and shares == pytest.approx({"neural_engine": 0.5, "gpu": 0.25, "cpu": 0.25})
    with pytest.raises(ValueError):
        parse_operation_execution([i for i in infos if i.compute_device_usage is None])


def types_model(path):
    import types
    return types.SimpleNamespace(path=path)


async def _ops(p):
    B = p.perf_utils().MLModelBenchmarker
    dev = p.remote_device().Device.get_devices()[0]
    dev = await dev.prepare_for_model_debugging(working_directory=p.tmp_path)
    return await B(types_model("x.mlpackage"), device=dev).benchmark_operation_execution(iterations=3)


def test_devicectl_json_gives_model_and_pairing():
    doc = {"info": {"outcome": "success"}, "result": {"devices": [
        {"identifier": "ID-1", "deviceProperties": {"name": "Ada's iPhone", "osVersionNumber": "17.5"},
         "hardwareProperties": {"udid": UDID, "deviceType": "iPhone", "productType": "iPhone13,2",
                                "marketingName": "iPhone 12", "hardwareModel": "D53gAP"},
         "connectionProperties": {"pairingState": "paired", "tunnelState": "connected", "transportType": "wired"}},
        {"identifier": "ID-2", "hardwareProperties": {}}]}}
    assert parse_devicectl_devices(doc) == DETAILS
    assert parse_devicectl_devices({}) == {}


# -- finding the phone -----------------------------------------------------------------------------------
def test_anywhere_but_a_mac_says_so(monkeypatch):
    monkeypatch.setattr(cr, "_is_macos", lambda: False)
    with pytest.raises(ProfilerUnavailable, match="needs a Mac with Xcode"):
        cr.find_iphone()
    with pytest.raises(ProfilerUnavailable, match="needs a Mac with Xcode"):
        RemoteIPhone(team_id=TEAM)


def test_without_coremltools_the_error_names_the_extra(monkeypatch):
    monkeypatch.setattr(cr, "_is_macos", lambda: True)
    monkeypatch.setitem(__import__("sys").modules, "coremltools", None)
    with pytest.raises(ProfilerUnavailable, match=r'pip install "effv2-nas\[coreml\]"'):
        cr.find_iphone()


def test_without_xcode_or_devicectl_the_error_says_what_to_install(phone, monkeypatch):
    monkeypatch.setattr(cr.shutil, "which", lambda cmd, *a, **k: None)
    with pytest.raises(ProfilerUnavailable, match="Xcode is not installed"):
        cr.find_iphone(details={})
    monkeypatch.setattr(cr.shutil, "which", lambda cmd, *a, **k: "/usr/bin/xcrun" if cmd == "xcrun" else None)
    monkeypatch.setattr(cr.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 72, "", 'xcrun: error: unable to find utility "devicectl", not a developer tool or in PATH'))
    with pytest.raises(ProfilerUnavailable, match="`devicectl` is missing"):
        cr.find_iphone(details={})


def test_devicectl_found_by_xcrun_is_put_on_path_for_coremltools(phone, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setattr(cr.shutil, "which", lambda cmd, *a, **k: "/usr/bin/xcrun" if cmd == "xcrun" else None)
    tool = "/Applications/Xcode.app/Contents/Developer/usr/bin/devicectl"
    monkeypatch.setattr(cr.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a[0], 0, tool + "\n", ""))
    assert cr.find_iphone(details={}).udid == UDID
    assert cr.os.environ["PATH"].startswith("/Applications/Xcode.app/Contents/Developer/usr/bin")


def test_no_phone_lists_what_devicectl_sees(phone):
    phone.devices = []
    with pytest.raises(ProfilerUnavailable, match="no iPhone is connected .*no device at all"):
        cr.find_iphone(details={})
    phone.devices = [("Studio", "mac", "M-1", "15.0", "", "connected"), ("Pad", "ipad", "P-1", "17.0", "enabled",
                                                                          "connected")]
    with pytest.raises(ProfilerUnavailable, match="'Studio' \\(mac\\), 'Pad' \\(ipad\\)"):
        cr.find_iphone(details={})


def test_several_phones_must_be_chosen_between(phone):
    phone.devices = [("Ada's iPhone", "iphone", UDID, "17.5", "enabled", "connected"),
                     ("Bob's iPhone", "iphone", "00008110-0001", "18.1", "enabled", "connected")]
    with pytest.raises(ProfilerUnavailable) as e:
        cr.find_iphone(details=DETAILS)
    msg = str(e.value)
    assert "several iPhones" in msg and UDID in msg and "00008110-0001" in msg and "--iphone" in msg
    assert "iPhone 12" in msg
    assert cr.find_iphone("bob's iphone", details={}).udid == "00008110-0001"
    assert cr.find_iphone(UDID, details={}).name == "Ada's iPhone"
    with pytest.raises(ProfilerUnavailable, match="no iPhone named or with UDID 'Cy'"):
        cr.find_iphone("Cy", details={})


@pytest.mark.parametrize("state,dev_mode,pairing,match", [
    ("unavailable", "enabled", "paired", "state 'unavailable': connect it with a cable, unlock it and tap Trust"),
    ("connected", "enabled", "unpaired", "not paired with this Mac"),
    ("connected", "disabled", "paired", "Developer Mode 'disabled'")])
def test_a_locked_untrusted_or_undeveloped_phone_says_what_to_do(phone, state, dev_mode, pairing, match):
    phone.devices = [("Ada's iPhone", "iphone", UDID, "17.5", dev_mode, state)]
    details = {UDID: dict(DETAILS[UDID], pairing_state=pairing)}
    with pytest.raises(ProfilerUnavailable, match=match):
        cr.find_iphone(details=details)


# -- the team id and the app -----------------------------------------------------------------------------
def test_no_team_id_names_the_flag_and_the_variable(phone, tmp_path, monkeypatch):
    with pytest.raises(ProfilerUnavailable) as e:
        RemoteIPhone(working_dir=tmp_path)
    assert "--team-id" in str(e.value) and "EFFV2_TEAM_ID" in str(e.value)
    with pytest.raises(ProfilerUnavailable, match="not an Apple development team id"):
        RemoteIPhone(team_id="ABC; rm -rf", working_dir=tmp_path)
    monkeypatch.setenv(cr.TEAM_ENV, "zyxwv98765")
    assert RemoteIPhone(working_dir=tmp_path, details=DETAILS).team_id == "ZYXWV98765"


def test_the_app_is_prepared_once_and_every_package_measured_with_it(phone, tmp_path):
    a, b = fake.package(tmp_path, "a"), fake.package(tmp_path, "b")
    with _iphone(tmp_path) as iphone:
        ta = iphone.measure(a, iterations=10, warmup=3)
        tb = iphone.measure(b, iterations=4, warmup=0)
        meta = iphone.meta()
    assert len(phone.prepare_calls) == 1
    call = phone.prepare_calls[0]
    assert call["credentials"] == fake.AppSigningCredentials(development_team=TEAM)
    assert call["working_directory"] == tmp_path / "runner" and call["udid"] == UDID
    assert ta.samples_ms == tuple(fake.PREDICT_MS) and tb.samples_ms == tuple(fake.PREDICT_MS[:4])
    assert ta.load_ms == pytest.approx(fake.LOAD_MS)
    assert ta.compute_units == pytest.approx({"neural_engine": 0.7, "gpu": 0.2, "cpu": 0.1})
    assert ta.compute_units_basis == "estimated_cost"
    assert phone.loads == ["a.mlpackage", "b.mlpackage"] and phone.unloads == ["a.mlpackage", "b.mlpackage"]
    assert phone.predictions == (3 + 10 + 1) + (4 + 1)           # warm-up, timed runs, one for the compute plan
    assert all(m["skip_model_load"] and m["compute_units"] == fake.ComputeUnit.ALL for m in phone.models)
    st = ta.stats()
    assert st.n == 10 and st.p10_ms <= st.p50_ms <= st.p90_ms and not math.isnan(st.cv)
    assert meta["model"] == "iPhone13,2" and meta["marketing_name"] == "iPhone 12" and meta["udid"] == UDID
    assert meta["os_version"] == "17.5" and meta["name"] == "Ada's iPhone" and meta["coremltools"] == "9.0"
    assert meta["compute_units"] == "ALL"


def test_benchmark_and_compute_units_alone(phone, tmp_path):
    a = fake.package(tmp_path, "a")
    iphone = _iphone(tmp_path, compute_units="cpu_and_ne")
    t = iphone.benchmark(a, iterations=3, warmup=1)
    assert t.samples_ms == tuple(fake.PREDICT_MS[:3]) and t.compute_units is None
    assert iphone.compute_units(a) == pytest.approx({"neural_engine": 0.7, "gpu": 0.2, "cpu": 0.1})
    assert phone.loads == ["a.mlpackage"]                        # one load serves both
    assert phone.models[0]["compute_units"] == fake.ComputeUnit.CPU_AND_NE
    iphone.close()
    with pytest.raises(UserError, match="unknown Core ML compute units"):
        _iphone(tmp_path, compute_units="NPU")


def test_a_package_the_phone_cannot_compile_is_an_error_naming_it_and_the_others_go_on(phone, tmp_path):
    phone.fail_load = {"bad.mlpackage"}
    pkgs = {k: fake.package(tmp_path, k) for k in ("a", "bad", "c")}
    with _iphone(tmp_path) as iphone:
        with pytest.raises(RemoteUnitError) as e:
            iphone.measure(pkgs["bad"])
        assert e.value.stage == "load" and "bad.mlpackage" in str(e.value)
        assert "Failed to build the model execution plan" in str(e.value)
        done, failed = iphone.measure_all(pkgs, iterations=2, warmup=0)
    assert set(done) == {"a", "c"} and set(failed) == {"bad"}
    assert len(phone.prepare_calls) == 1


def test_an_app_that_stops_ends_the_run(phone, tmp_path):
    phone.die_on_predict = True
    with pytest.raises(ProfilerUnavailable, match="model-runner app on 'Ada's iPhone'.* stopped"):
        _iphone(tmp_path).measure(fake.package(tmp_path, "a"))


def test_a_failed_build_or_signing_says_where_to_look(phone, tmp_path):
    phone.prepare_error = RuntimeError("[Error Code 65] None")      # _AppBuilder.Error drops xcodebuild's output
    with pytest.raises(ProfilerUnavailable) as e:
        _iphone(tmp_path).benchmark(fake.package(tmp_path, "a"))
    msg = str(e.value)
    assert TEAM in msg and "[Error Code 65]" in msg and "ModelRunner.xcworkspace" in msg and "\n" not in msg


def test_a_coremltools_without_the_model_runner_project_says_so(tmp_path, monkeypatch):
    p = fake.FakePhone(tmp_path, ship_modelrunner=False)
    p.install(monkeypatch, cr)
    with pytest.raises(ProfilerUnavailable, match="no model-runner Xcode project"):
        _iphone(tmp_path).benchmark(fake.package(tmp_path, "a"))
    assert p.prepare_calls == []


def test_compute_units_need_ios_17_4(phone, tmp_path):
    phone.devices = [("Old iPhone", "iphone", UDID, "16.7.2", "enabled", "connected")]
    a = fake.package(tmp_path, "a")
    iphone = _iphone(tmp_path)
    with pytest.raises(ProfilerUnavailable, match="iOS 17.4 or later.*16.7.2"):
        iphone.compute_units(a)
    t = iphone.measure(a, iterations=2, warmup=0)
    assert t.compute_units is None and len(t.samples_ms) == 2
    iphone.close()


def test_a_missing_package_or_bad_iterations_are_user_errors(phone, tmp_path):
    iphone = _iphone(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        iphone.benchmark(tmp_path / "nope.mlpackage")
    with pytest.raises(UserError, match="iterations"):
        iphone.benchmark(fake.package(tmp_path, "a"), iterations=0)
    assert phone.prepare_calls == []
