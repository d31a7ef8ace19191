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
import numpy as np
import torch
import torch.nn as nn

import profilers.formats.convert
import profilers.torch as plugin
from conftest import FAST_PROTOCOL
from models import EfficientFormerV2
from nas.space.modules import build_unit
from nas.space.spaces import TINY_SPACE
from nas.space.units import space_units
from profilers import LatencyStats, get_profiler
from profilers.plugin.base import ProfilerUnavailable
from profilers.timing.batch import measure_modules
from profilers.plugin.cli import main as cli_main
from profilers.devices import get_device, list_devices
from profilers.plugin.cli import format_devices
from profilers.plugin.options import OptionsError
from profilers.runtimes import list_runtimes
from profilers.tables.meta import TableMeta
from profilers.onnxruntime import OnnxRuntimeProfiler
from profilers.timing.protocol import Protocol
from profilers.torch import TorchOptions, TorchProfiler

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


def cpu(**options) -> TorchProfiler:
    """The torch plugin on this CPU, the local-cpu entry's options changed by ``options``."""
    dev = get_device("local-cpu")
    return TorchProfiler(dev, protocol=fast(), options=TorchOptions.from_entry(dev).replace(**options))


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
    assert "torch" in list_runtimes()
    assert get_profiler("torch") is TorchProfiler and get_profiler("pytorch") is TorchProfiler
    devs = list_devices()
    loc = devs["local-cpu"]
    assert loc.runtime == "onnxruntime" and "torch" in loc.runtimes and loc.precision == "fp32"
    o = TorchOptions.from_entry(loc)
    assert (o.mode, o.batch, o.channels_last, o.cuda) == ("eager", 1, False, None)
    for name, batch in (("h200", 1), ("h200-b64", 64), ("rtx4090", 1)):
        d = devs[name]
        o = TorchOptions.from_entry(d)
        assert (d.runtime, o.mode, d.precision, o.batch, o.cuda) == ("torch", "cudagraph", "fp16", batch, True)
        assert d.connection_type == "local" and o.gpu and "must be measured on" in d.description
    a100 = devs["a100"]
    o = TorchOptions.from_entry(a100)
    assert a100.runtime == "tensorrt" and "torch" in a100.runtimes and o.mode == "cudagraph" and o.cuda is True
    ort = devs["h200-ort"]
    assert ort.runtime == "onnxruntime" and get_profiler("onnxruntime").Options.from_entry(ort).providers == \
        ("CUDAExecutionProvider",)
    d = devs["h200-b64"].to_dict()
    assert (d["mode"], d["batch"], d["cuda"], d["gpu"]) == ("cudagraph", 64, True, "H200")
    assert "channels_last" in d and "compile_mode" not in d
    assert "h200" in format_devices() and "mode=cudagraph batch=64" in format_devices()


@pytest.mark.parametrize("field,value", [("mode", "turbo"), ("batch", 0), ("batch", "4"), ("channels_last", "yes"),
                                         ("cuda", -1)])
def test_the_plugin_refuses_bad_torch_fields_of_an_entry(tmp_path, field, value):
    p = tmp_path / f"devices-{field}-{value}.json"
    p.write_text(json.dumps({"gpu-x": {"runtime": "torch", field: value}}))
    dev = list_devices(p)["gpu-x"]                       # the common fields are the registry's
    with pytest.raises(OptionsError, match=rf"device 'gpu-x': {field}"):
        TorchOptions.from_entry(dev)                     # the torch fields, the plugin's


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
    prof = cpu(batch=4)
    path, shape = _exported(prof, "ffn", tmp_path)
    assert shape[0] == 1
    loaded = prof.load(path, shape)
    fn = loaded.run
    assert loaded.predict(np.zeros((4,) + tuple(shape[1:]), np.float32)).shape[0] == 4
    assert fn.input_shape == (4,) + tuple(shape[1:])
    sane(prof.protocol.measure(fn))
    assert prof.settings()["batch"] == 4 and prof.settings()["mode"] == "eager"


def test_channels_last(tmp_path):
    prof = cpu(channels_last=True)
    path, shape = _exported(prof, "stem", tmp_path)
    fn = prof.load(path, shape).run
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


def test_whole_network_through_the_tables_profiler():
    meta = TableMeta(get_device("local-cpu"), "torch", protocol=fast())
    prof = TorchProfiler.for_table(meta)                # what nas.calibrate / nas.validate build
    assert isinstance(prof, TorchProfiler) and prof.mode == "eager" and prof.batch == 1
    sane(prof.profile_module(_tiny_net(), (1, 3, 64, 64)))


def test_networks_are_timed_with_the_settings_their_table_recorded():
    """A table written with overrides (--batch 2 --channels-last --out ...) records them; calibration and
    validation build their profiler from that record, not from the device entry."""
    meta = cpu(batch=2, channels_last=True).table_meta("tiny", 64, 10)
    prof = TorchProfiler.for_table(meta)
    assert (prof.mode, prof.batch, prof.channels_last, prof.compile_mode) == ("eager", 2, True, None)
    prof = TorchProfiler.for_table(meta.replace(settings={"mode": "compile", "compile_mode": "max-autotune"}))
    assert (prof.mode, prof.compile_mode, prof.batch) == ("compile", "max-autotune", 1)
    ort = get_profiler("onnxruntime")
    assert ort.for_table(meta.replace(runtime="onnxruntime", settings={"exporter": "dynamo"})).options.exporter == \
        "dynamo"
    assert ort.for_table(meta.replace(runtime="onnxruntime", settings={})).options.exporter == "torchscript"


@pytest.mark.slow
def test_compile_mode_on_cpu(tmp_path):
    prof = cpu(mode="compile")
    assert prof.compile_mode == "default" and prof.settings()["compile_mode"] == "default"
    path, shape = _exported(prof, "ffn", tmp_path)
    sane(prof.protocol.measure(prof.load(path, shape).run))


# ----------------------------------------------------------------------------------------------
# metadata and refusals
# ----------------------------------------------------------------------------------------------
def test_table_meta_records_runtime_mode_and_batch():
    meta = cpu(batch=2).table_meta("tiny", 64, 10).to_dict()
    assert meta["runtime"] == "torch" and meta["runtime_version"] == f"torch {torch.__version__}"
    s = meta["settings"]
    assert (s["mode"], s["batch"], s["precision"], s["channels_last"], s["device_type"]) == \
        ("eager", 2, "fp32", False, "cpu")
    assert meta["device_entry"]["mode"] == "eager" and meta["device_entry"]["batch"] == 1
    json.dumps(meta)                                                  # the sidecar must be JSON


def test_cudagraph_on_a_cpu_device_is_refused(tmp_path, capsys):
    with pytest.raises(OptionsError, match="cudagraph"):
        cpu(mode="cudagraph")
    assert cli_main(TorchProfiler, ["--device", "local-cpu", "--mode", "cudagraph", "--out",
                                    str(tmp_path / "t.csv")]) == 2
    assert "cudagraph" in capsys.readouterr().err


def test_unknown_precision_is_refused():
    with pytest.raises(OptionsError, match="precision"):
        TorchProfiler(replace(get_device("local-cpu"), precision="int8"))


def test_command_line_overrides_need_their_own_table(tmp_path, capsys):
    assert cli_main(TorchProfiler, ["--device", "local-cpu", "--batch", "4"]) == 2
    assert "--out" in capsys.readouterr().err
    out = tmp_path / "b1.csv"
    assert cli_main(TorchProfiler, ["--device", "local-cpu", "--space", "tiny", "--img-size", "64", "--num-classes",
                                    "10", "--limit", "1", "--rounds", "1", "--out", str(out), "--no-progress"]) == 0
    assert cli_main(TorchProfiler, ["--device", "local-cpu", "--space", "tiny", "--img-size", "64", "--num-classes",
                                    "10", "--batch", "4", "--out", str(out), "--no-progress"]) == 2
    assert "batch: table has 1, this run 4" in capsys.readouterr().err


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
    assert profilers.formats.convert.torch is sys.modules["torch"] is torch and hasattr(torch, "export")
    assert Path(torch.__file__).resolve() != Path(plugin.__file__).resolve()


# ----------------------------------------------------------------------------------------------
# CUDA
# ----------------------------------------------------------------------------------------------
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["eager", "cudagraph"])
def test_cuda_timing_path(mode, tmp_path):
    dev = replace(get_device("h200"), name="this-gpu")                # whatever GPU this machine has
    prof = TorchProfiler(dev, protocol=fast(), options=TorchOptions(mode=mode, cuda=True))
    prof.check_ready()
    assert prof.load(tmp_path / "x.pt2", (1, 3, 8, 8)) is None       # timed by measure(), with CUDA events
    sane(prof.profile_spec(UNITS["ffn"]))
    sane(prof.profile_spec(UNITS["attn"]))
    assert prof.settings()["gpu_name"] == torch.cuda.get_device_name()


def test_measuring_leaves_the_callers_thread_count(monkeypatch):
    """The CPU runner sets torch's thread count to the device's for its timing; a search or calibration
    that measures networks in its own process gets its own thread count back (profilers.timing.host.pinned)."""
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
