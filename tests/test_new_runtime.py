"""A new runtime is one plugin file plus device entries: defined here in a module of its own, registered the
documented way, it profiles a space into a table that the predictor reads, and no project file changes."""
import sys
import textwrap

import pytest

from nas.latency.predictor import LatencyPredictor
from nas.space.spaces import TINY_SPACE
from profilers import runtimes

PLUGIN = '''
"""A toy runtime: its "exported model" is a loop as long as the module has parameters (over 1000)."""
from dataclasses import dataclass
from pathlib import Path

from nas.core.values import POSITIVE_INT, setting
from profilers.plugin.base import Loaded, Profiler
from profilers.plugin.cli import main
from profilers.plugin.options import RuntimeOptions
from profilers.runtimes import register_runtime


@dataclass(frozen=True)
class ToyOptions(RuntimeOptions):
    spin: int = setting(50, POSITIVE_INT, help="extra loop iterations per call", flag="--spin")


@register_runtime
class ToyProfiler(Profiler):
    name = "toy"
    suffix = ".toy"
    Options = ToyOptions

    def export(self, module, input_shape, path):
        Path(path).write_text(str(sum(p.numel() for p in module.parameters())))
        return Path(path)

    def runtime_version(self):
        return "toy 1.0"

    def load(self, path, input_shape):
        n = int(Path(path).read_text()) // 1000 + self.options.spin

        def run():
            return sum(range(n))

        return Loaded(run)


if __name__ == "__main__":
    raise SystemExit(main(ToyProfiler))
'''

DEVICES = '{"toy-cpu": {"runtime": "toy", "spin": 20, "threads": 1, "connection": {"type": "local"}, ' \
          '"description": "the toy runtime on this machine"}}'


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy plugin module on the path, its device entry in a registry file of its own (EFFV2_DEVICES), and
    the runtime registry restored afterwards."""
    (tmp_path / "toy_runtime.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "devices.json").write_text(DEVICES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EFFV2_DEVICES", str(tmp_path / "devices.json"))
    runtimes.list_runtimes()                               # the shipped plugins found, then the toy on a copy
    monkeypatch.setattr(runtimes, "_REGISTRY", dict(runtimes._REGISTRY))
    monkeypatch.setattr(runtimes, "_ALIASES", dict(runtimes._ALIASES))
    monkeypatch.delitem(sys.modules, "toy_runtime", raising=False)
    import toy_runtime
    yield toy_runtime
    sys.modules.pop("toy_runtime", None)


def test_a_runtime_in_one_file_profiles_a_table_that_the_predictor_reads(toy, tmp_path, capsys):
    from profilers import get_profiler, list_runtimes
    from profilers.plugin.cli import main
    assert get_profiler("toy") is toy.ToyProfiler and "toy" in list_runtimes()
    out = tmp_path / "toy-cpu.toy.csv"
    args = ["--device", "toy-cpu", "--space", "tiny", "--img-size", "64", "--num-classes", "10", "--out", str(out),
            "--rounds", "2", "--warmup", "1", "--no-progress"]
    assert main(toy.ToyProfiler, args) == 0
    pred = LatencyPredictor.from_table(out)                 # the device is local: checked against this host
    assert pred.meta.runtime == "toy" and pred.meta.settings["spin"] == 20 and pred.meta.runtime_version == "toy 1.0"
    assert not pred.missing_keys() and pred.predict(TINY_SPACE.max_arch()) > pred.predict(TINY_SPACE.min_arch()) > 0
    assert main(toy.ToyProfiler, [*args[:-1], "--spin", "30"]) == 2        # its option, from the command line:
    assert "spin: table has 20, this run 30" in capsys.readouterr().err     # not into a table of another spin


def test_a_plugin_run_as_a_command_is_the_runtime_discovery_finds():
    """``python -m profilers.coreml`` registers its classes as ``__main__``; discovery imports the module again:
    one runtime, so every device's options read (none is shown invalid)."""
    import subprocess
    out = subprocess.run([sys.executable, "-m", "profilers.aihub", "--list-devices"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "galaxy-s24" in out.stdout and "iphone12" in out.stdout
    assert "invalid" not in out.stdout and "already" not in out.stdout
