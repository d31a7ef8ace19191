"""The PyTorch profiler plugin (profilers/torch.py): real CPU measurements of tiny units and a network, its
settings and refusals, the device registry's torch fields; the CUDA timing path where a GPU is present."""
import json
import math
import subprocess
import sys
import zipfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import profilers.convert
import profilers.torch as plugin
from conftest import FAST_PROTOCOL
from models import EfficientFormerV2
from nas.latency.measure import make_profiler
from nas.space.modules import build_unit
from nas.space.spaces import TINY_SPACE
from nas.space.units import space_units
from profilers import LatencyStats, get_profiler
from profilers.base import ProfilerUnavailable
from profilers.batch import measure_modules
from profilers.cli import main as cli_main
from profilers.devices import RUNTIMES, format_devices, get_device, list_devices
from profilers.onnxruntime import OnnxRuntimeProfiler
from profilers.stats import Protocol
from profilers.table import write_meta
from profilers.torch import TorchProfiler

ROOT = Path(__file__).resolve().parent.parent
UNITS = {u.kind: u for u in reversed(space_units(TINY_SPACE, 64, 10))}
CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()            # the CPU runner sets the device's thread count
    yield
    torch.set_num_threads(n)


def fast() -> Protocol:
    return Protocol(**FAST_PROTOCOL)


def sane(st: LatencyStats):
    assert isinstance(st, LatencyStats)
    for v in (st.p50_ms, st.p10_ms, st.p90_ms, st.mean_ms):
        assert math.isfinite(v) and v > 0
    assert st.p10_ms <= st.p50_ms <= st.p90_ms
    assert st.std_ms >= 0 and st.n >= 15 and math.isfinite(st.cv)


def _exported(prof: TorchProfiler, kind: str, folder: Path):
    torch.manual_seed(0)
    module, shape = build_unit(UNITS[kind])
    path = prof.export(module, shape, folder / f"{kind}.pt2")
    return path, shape


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------
def test_registry_has_the_torch_runtime_and_devices():
    assert "torch" in RUNTIMES
    assert get_profiler("torch") is TorchProfiler and get_profiler("pytorch") is TorchProfiler
    devs = list_devices()
    loc = devs["local-cpu"]
    assert loc.runtime == "onnxruntime" and "torch" in loc.runtimes
    assert (loc.mode, loc.batch, loc.channels_last, loc.cuda, loc.precision) == ("eager", 1, False, None, "fp32")
    for name, batch in (("h200", 1), ("h200-b64", 64), ("rtx4090", 1)):
        d = devs[name]
        assert (d.runtime, d.mode, d.precision, d.batch, d.cuda) == ("torch", "cudagraph", "fp16", batch, True)
        assert d.connection_type == "local" and d.extra["gpu"] and "must be measured on" in d.description
    a100 = devs["a100"]
    assert a100.runtime == "tensorrt" and "torch" in a100.runtimes and a100.mode == "cudagraph" and a100.cuda is True
    ort = devs["h200-ort"]
    assert ort.runtime == "onnxruntime" and ort.providers == ("CUDAExecutionProvider",)
    d = devs["h200-b64"].to_dict()
    assert (d["mode"], d["batch"], d["cuda"], d["gpu"]) == ("cudagraph", 64, True, "H200")
    assert "channels_last" in d and "compile_mode" not in d
    assert "h200" in format_devices() and "cudagraph b64" in format_devices()


@pytest.mark.parametrize("field,value", [("mode", "turbo"), ("batch", 0), ("batch", "4"), ("channels_last", "yes"),
                                         ("cuda", -1)])
def test_registry_rejects_bad_torch_fields(tmp_path, field, value):
    p = tmp_path / f"devices-{field}-{value}.json"
    p.write_text(json.dumps({"gpu-x": {"runtime": "torch", field: value}}))
    with pytest.raises(ValueError, match=field):
        list_devices(p)


# ----------------------------------------------------------------------------------------------
# CPU measurements
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["stem", "downsample", "attn", "ffn", "head"])
def test_measures_real_units_on_this_cpu(kind, tmp_path):
    prof = get_profiler("torch")("local-cpu", protocol=fast(), keep_exports=tmp_path)
    sane(prof.profile_spec(UNITS[kind]))
    saved = tmp_path / f"{UNITS[kind].key}.pt2"
    assert zipfile.is_zipfile(saved) and not prof._in_memory       # a torch.export archive, not the fallback


def test_batch_replaces_the_batch_dimension(tmp_path):
    prof = TorchProfiler("local-cpu", protocol=fast(), batch=4)
    path, shape = _exported(prof, "ffn", tmp_path)
    assert shape[0] == 1
    fn = prof.runner(path, shape)
    assert fn.input_shape == (4,) + tuple(shape[1:])
    sane(prof.protocol.measure(fn))
    assert prof.settings()["batch"] == 4 and prof.settings()["mode"] == "eager"


def test_channels_last(tmp_path):
    prof = TorchProfiler("local-cpu", protocol=fast(), channels_last=True)
    path, shape = _exported(prof, "stem", tmp_path)
    fn = prof.runner(path, shape)
    assert fn.channels_last and fn.dtype == torch.float32
    sane(prof.protocol.measure(fn))
    assert prof.settings()["channels_last"] is True


def test_a_module_torch_export_cannot_take_is_profiled_in_memory(tmp_path, monkeypatch):
    def refuse(*a, **kw):
        raise RuntimeError("cannot export this one")

    monkeypatch.setattr(torch.export, "export", refuse)
    prof = TorchProfiler("local-cpu", protocol=fast(), keep_exports=tmp_path)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    sane(prof.profile_module(net, (1, 3, 16, 16), name="conv"))
    marker = tmp_path / "conv.pt2"
    assert marker.exists() and not zipfile.is_zipfile(marker) and len(prof._in_memory) == 1
    marker.unlink()                                  # its batch is done: the next export forgets it
    prof.export(nn.ReLU(), (1, 3, 8, 8), tmp_path / "relu.pt2")
    assert list(prof._in_memory) == [str((tmp_path / "relu.pt2").resolve())]


def _tiny_net():
    torch.manual_seed(0)
    return EfficientFormerV2(TINY_SPACE.max_arch().net_config(10), img_size=64).eval()


def test_whole_network_through_make_profiler():
    prof = make_profiler("local-cpu", "torch")          # what nas.calibrate / nas.validate build
    assert isinstance(prof, TorchProfiler) and prof.mode == "eager" and prof.batch == 1
    prof.protocol = fast()
    sane(prof.profile_module(_tiny_net(), (1, 3, 64, 64)))


def test_networks_are_timed_with_the_settings_their_table_recorded():
    """A table written with overrides (--batch 2 --channels-last --out ...) records them; calibration and
    validation build their profiler from that record, not from the device entry."""
    table = TorchProfiler("local-cpu", protocol=fast(), batch=2, channels_last=True).table_meta("tiny", 64, 10)
    prof = make_profiler("local-cpu", "torch", settings=table["settings"])
    assert (prof.mode, prof.batch, prof.channels_last, prof.compile_mode) == ("eager", 2, True, None)
    prof = make_profiler("local-cpu", "torch", settings={"mode": "compile", "compile_mode": "max-autotune"})
    assert (prof.mode, prof.compile_mode, prof.batch) == ("compile", "max-autotune", 1)
    ort = make_profiler("local-cpu", "onnxruntime", settings={"exporter": "dynamo"})
    assert ort.dynamo and not make_profiler("local-cpu", "onnxruntime", settings={}).dynamo


@pytest.mark.slow
def test_compile_mode_on_cpu(tmp_path):
    prof = TorchProfiler("local-cpu", protocol=fast(), mode="compile")
    assert prof.compile_mode == "default" and prof.settings()["compile_mode"] == "default"
    path, shape = _exported(prof, "ffn", tmp_path)
    sane(prof.protocol.measure(prof.runner(path, shape)))


# ----------------------------------------------------------------------------------------------
# metadata and refusals
# ----------------------------------------------------------------------------------------------
def test_table_meta_records_runtime_mode_and_batch():
    meta = TorchProfiler("local-cpu", protocol=fast(), batch=2).table_meta("tiny", 64, 10)
    assert meta["runtime"] == "torch" and meta["runtime_version"] == f"torch {torch.__version__}"
    s = meta["settings"]
    assert (s["mode"], s["batch"], s["precision"], s["channels_last"], s["device_type"]) == \
        ("eager", 2, "fp32", False, "cpu")
    assert meta["device_entry"]["mode"] == "eager" and meta["device_entry"]["batch"] == 1
    json.dumps(meta)                                                  # the sidecar must be JSON


def test_cudagraph_on_a_cpu_device_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="cudagraph"):
        TorchProfiler("local-cpu", mode="cudagraph")
    assert cli_main(TorchProfiler, ["--device", "local-cpu", "--mode", "cudagraph", "--out",
                                    str(tmp_path / "t.csv")]) == 2
    assert "cudagraph" in capsys.readouterr().err


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        TorchProfiler(replace(get_device("local-cpu"), precision="int8"))


def test_command_line_overrides_need_their_own_table(tmp_path, capsys):
    assert cli_main(TorchProfiler, ["--device", "local-cpu", "--batch", "4"]) == 2
    assert "--out" in capsys.readouterr().err
    out = tmp_path / "b1.csv"
    out.write_text("")
    write_meta(out, {"device": "local-cpu", "runtime": "torch", "settings": {"mode": "eager", "batch": 1}})
    assert cli_main(TorchProfiler, ["--device", "local-cpu", "--batch", "4", "--out", str(out)]) == 2
    assert "batch" in capsys.readouterr().err


@pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without CUDA")
def test_a_cuda_device_without_cuda_is_refused():
    prof = TorchProfiler("h200", protocol=fast())
    assert prof.settings()["mode"] == "cudagraph" and prof.settings()["device_type"] == "cuda"
    with pytest.raises(ProfilerUnavailable, match="CUDA") as e:
        prof.check_ready()
    assert "download.pytorch.org/whl/cu" in str(e.value) and "H200" in str(e.value)
    with pytest.raises(ProfilerUnavailable, match="CUDA"):            # never measured anywhere else
        prof.profile_spec(UNITS["ffn"])


def test_onnxruntime_gpu_provider_names_the_package():
    prof = OnnxRuntimeProfiler("h200-ort")
    if "CUDAExecutionProvider" in prof._ort().get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(ProfilerUnavailable, match="pip install onnxruntime-gpu"):
        prof.check_ready()


def test_help_runs_and_torch_is_pytorch():
    r = subprocess.run([sys.executable, "-m", "profilers.torch", "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "--mode" in r.stdout and "--channels-last" in r.stdout and "--batch" in r.stdout
    assert profilers.convert.torch is sys.modules["torch"] is torch and hasattr(torch, "export")
    assert Path(torch.__file__).resolve() != Path(plugin.__file__).resolve()


# ----------------------------------------------------------------------------------------------
# CUDA
# ----------------------------------------------------------------------------------------------
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["eager", "cudagraph"])
def test_cuda_timing_path(mode, tmp_path):
    dev = replace(get_device("h200"), name="this-gpu", extra={})      # whatever GPU this machine has
    prof = TorchProfiler(dev, protocol=fast(), mode=mode)
    prof.check_ready()
    assert prof.runner(tmp_path / "x.pt2", (1, 3, 8, 8)) is None      # timed by measure(), with CUDA events
    sane(prof.profile_spec(UNITS["ffn"]))
    sane(prof.profile_spec(UNITS["attn"]))
    assert prof.settings()["gpu"] == torch.cuda.get_device_name()


def test_measuring_leaves_the_callers_thread_count(monkeypatch):
    """The CPU runner sets torch's thread count to the device's for its timing; a search or calibration
    that measures networks in its own process gets its own thread count back (profilers.host.pinned)."""
    prof = TorchProfiler("local-cpu", protocol=fast(), cpus=None)
    before = torch.get_num_threads()
    torch.set_num_threads(2 if prof.threads != 2 else 1)
    mine = torch.get_num_threads()
    try:
        spec = space_units(TINY_SPACE, 64, 10)[0]
        res = measure_modules(prof, [(spec.key, partial(build_unit, spec))], progress=False)
        assert res[spec.key].p50_ms > 0
        assert torch.get_num_threads() == mine
        module, shape = build_unit(spec)
        assert prof.profile_module(module, shape).p50_ms > 0                # the one-module path too
        assert torch.get_num_threads() == mine
    finally:
        torch.set_num_threads(before)


def test_gpu_tables_record_the_driver_from_nvml_or_nvidia_smi(monkeypatch):
    import types
    nvidia_driver = plugin.nvidia_driver
    monkeypatch.setitem(sys.modules, "pynvml", None)                 # no NVML: nvidia-smi answers
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: types.SimpleNamespace(returncode=0, stdout="580.159.03\n"))
    assert nvidia_driver() == "580.159.03"

    def missing(*a, **k):
        raise FileNotFoundError("nvidia-smi")
    monkeypatch.setattr(subprocess, "run", missing)                  # neither: unknown, not an error
    assert nvidia_driver() is None
