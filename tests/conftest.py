import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import _tv_shim  # noqa: E402,F401  (lets timm import beside CPU-only torch)

torch.set_num_threads(min(2, torch.get_num_threads()))

# this host's tables (local devices) go to a throw-away cache, never the user's
os.environ["EFFV2_CACHE"] = tempfile.mkdtemp(prefix="effv2-test-cache-")
os.environ.pop("EFFV2_TABLES", None)
os.environ.pop("EFFV2_ALLOW_FOREIGN_TABLE", None)


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Give every parameter and BN statistic a non-trivial value, so equality tests can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        for n, b in module.named_buffers():
            if n.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 1.5 + 0.5)
            elif n.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * scale)
    return module


@pytest.fixture
def randomize():
    return randomize_


REPO = Path(__file__).resolve().parents[1]


def torchrun_train(config: dict, out, nproc: int = 2) -> subprocess.CompletedProcess:
    """``nas.training.train(TrainConfig(**config, out=out))`` under ``torchrun --standalone --nproc_per_node
    nproc`` (one thread per process); the finished process, its output captured."""
    script = Path(tempfile.mkdtemp(prefix="torchrun-train-")) / "train_ranks.py"
    script.write_text(
        "import sys\n"
        "import torch.distributed as dist\n"
        "from nas.core.logs import console\n"
        "from nas.training import TrainConfig, train\n"
        f"config = TrainConfig(**{config!r}, out=sys.argv[1])\n"
        "with console():\n"
        "    try:\n"
        "        train(config)\n"
        "    finally:\n"
        "        dist.destroy_process_group()\n")
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun) if torchrun.exists() else "torchrun", "--standalone", "--nproc_per_node", str(nproc),
           str(script), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


FAST_PROTOCOL = dict(warmup=2, warmup_s=0.005, rounds=3, round_s=0.01, min_runs=5, max_runs=40, retries=0)


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory):
    """A real ONNX Runtime table (this CPU, 1 thread) of the tiny space at 64 px and 10 classes."""
    from nas.space.units import probe_units, space_units
    from nas.space.spaces import TINY_SPACE
    from profilers import get_profiler
    from profilers.tables.runs import run_table
    from profilers.timing.protocol import Protocol
    out = tmp_path_factory.mktemp("tables") / "local-cpu.onnxruntime.csv"
    prof = get_profiler("onnxruntime")("local-cpu", protocol=Protocol(**FAST_PROTOCOL))
    run_table(prof, space_units(TINY_SPACE, 64, 10), out, space_name="tiny", img_size=64, num_classes=10,
              progress=False, probe_specs=probe_units(), space=TINY_SPACE.to_dict())
    return out


@pytest.fixture(scope="session")
def tiny_supernet(tmp_path_factory):
    """A supernet of the tiny space trained for a few steps on Fashion-MNIST at 64 px (a run folder)."""
    from nas.training import TrainConfig, train
    out = tmp_path_factory.mktemp("supernet")
    train(TrainConfig(space="tiny", img_size=64, batch_size=16, train_subset=800, eval_size=100, calib_batches=1, progress=False,
                      threads=1, steps=30, eval_every=0, lr=3e-3, plot=False, out=str(out)))
    return out


def meta_json(table) -> dict:
    """The JSON of a table's metadata sidecar (tests edit it to fake another host or probe)."""
    import json
    from profilers.tables.meta import meta_path
    return json.loads(meta_path(table).read_text())


def write_meta_json(table, d: dict) -> None:
    import json
    from profilers.tables.meta import meta_path
    meta_path(table).write_text(json.dumps(d, indent=1))
