"""Real measurements on this machine's CPU: ONNX Runtime and LiteRT on tiny units and a whole network."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from models import EfficientFormerV2
from nas.space.modules import build_unit
from nas.space.units import probe_units, space_units
from nas.space.spaces import TINY_SPACE
from profilers import LatencyStats, get_profiler
from profilers.formats.convert import export_onnx
from profilers.timing.protocol import Protocol, summarize_rounds, summarize_runs, sweep_factors
from profilers.tables.table import read_table

FAST = dict(warmup=2, warmup_s=0.005, rounds=3, round_s=0.01, min_runs=5, max_runs=40, retries=0)
UNITS = {u.kind: u for u in reversed(space_units(TINY_SPACE, 64, 10))}
ROOT = Path(__file__).resolve().parent.parent


def sane(st: LatencyStats):
    assert isinstance(st, LatencyStats)
    assert 0 < st.p10_ms <= st.p50_ms <= st.p90_ms
    assert st.mean_ms > 0 and st.std_ms >= 0 and st.n >= 15 and math.isfinite(st.cv)


def test_summaries():
    st = summarize_rounds([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [3.0, 3.0, 4.0]])
    assert st.p50_ms == 2.0 and st.n == 9 and st.mean_ms == pytest.approx(22 / 9)
    assert st.cv == 0.0                                       # robust: one round off the others moves no MAD
    st = summarize_rounds([[1.0], [2.0], [4.0]])
    assert st.cv == pytest.approx(1.4826 * 1.0 / 2.0)
    assert summarize_runs([1.0] * 10).cv == 0.0


def test_rounds_are_interleaved_and_unsteady_entries_get_more_rounds():
    import time
    order, calls = [], iter(range(10 ** 6))
    p = Protocol(warmup=1, warmup_s=0, rounds=3, runs=2, max_cv=0.05, retries=2)

    def jumpy():                          # round medians cycle through 0.2, 1 and 3 ms: never steady
        order.append("jumpy")
        i = next(calls)                   # call 0 is the warm-up, then rounds of 2 calls
        time.sleep((0.0002, 0.001, 0.003)[((i - 1) // 2) % 3] if i else 0.0002)

    def steady():
        order.append("steady")
        time.sleep(0.0005)

    timing = p.measure_many({"jumpy": jumpy, "steady": steady})
    res = timing.stats
    assert len(timing.attempts["jumpy"]) == 3
    assert res["jumpy"].n == 3 * 3 * 2                               # every retry added 3 rounds of 2 calls
    assert res["steady"].n in (6, 12, 18) and res["steady"].n <= res["jumpy"].n
    assert order[:2] == ["jumpy", "steady"]                          # one warm-up call each
    timed = order[2:14]
    assert timed.count("jumpy") == timed.count("steady") == 6        # first pass: 3 rounds of each, alternating
    assert all(timed[k] == timed[k + 1] for k in range(0, 12, 2))    # a round is 2 calls of one entry
    assert 0 < res["steady"].p50_ms < res["jumpy"].p90_ms


def test_sweep_factors_recover_a_common_host_speed():
    rng = np.random.default_rng(0)
    level, host = np.log(rng.uniform(1, 10, 8)), np.log(rng.uniform(0.7, 1.3, 12))
    x = level[:, None] + host[None, :] + rng.normal(0, 0.002, (8, 12))
    x[0, 3] = np.nan                                   # an entry not timed in a sweep
    x[2:, 5] = np.nan                                  # a sweep of 2 entries: too few to tell host from entries
    f = sweep_factors(x)
    assert f[5] == 1.0 and np.median(f) == pytest.approx(1.0)
    want = np.exp(host - host[4])                      # same factors up to the centring
    keep = np.arange(12) != 5
    assert np.allclose((f / want)[keep] / np.median((f / want)[keep]), 1, atol=0.01)
    assert np.all(sweep_factors(x[:2]) == 1.0)         # 2 entries: nothing estimated
    with pytest.raises(ValueError):
        sweep_factors(np.ones(3))


@pytest.mark.parametrize("common_mode", [True, False])
def test_measure_many_removes_the_host_speed_its_entries_share(monkeypatch, common_mode):
    """A fake clock: 4 entries of 1, 2, 3 and 5 ms on a host that runs at 1x or 1.5x from sweep to sweep."""
    base = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 5.0}
    speeds = (1.0, 1.5, 1.0, 1.5, 1.5, 1.0)
    state = {"now": 0, "calls": 0}

    def entry(ms):
        def fn():
            i = state["calls"]
            state["calls"] += 1                        # 4 warm-up calls, then sweeps of 4 entries x 2 calls
            host = 1.0 if i < 4 else speeds[((i - 4) // 8) % len(speeds)]
            state["now"] += round(ms * host * 1e6)
        return fn

    monkeypatch.setattr("profilers.timing.protocol.time.perf_counter_ns", lambda: state["now"])
    p = Protocol(warmup=1, warmup_s=0, rounds=6, runs=2, retries=0, common_mode=common_mode)
    timing = p.measure_many({k: entry(v) for k, v in base.items()})
    res = timing.stats
    if common_mode:
        assert all(res[k].cv < 1e-9 for k in base), res                # what the entries share is gone
        assert res["d"].p50_ms / res["a"].p50_ms == pytest.approx(5.0)
        f = timing.host_factors                                        # the slow sweeps, found 1.5x slower
        assert [f[i] / f[0] for i in range(6)] == pytest.approx(list(speeds))
    else:
        assert all(res[k].cv > 0.1 for k in base) and timing.host_factors == []
    assert p.to_dict()["common_mode"] is common_mode and "host_factors" not in p.to_dict()


def test_a_plugin_times_the_shared_protocol_with_its_own_clock():
    """What the torch plugin does on CUDA (CUDA events): the protocol's warm-up, rounds and retries with
    another timer."""
    calls = []

    def timer(fn, runs):
        calls.append(runs)
        return np.full(runs, 2.0)

    p = Protocol(warmup=3, warmup_s=0, rounds=4, runs=5, retries=2)
    st = p.measure(lambda: None, timer=timer)
    assert (st.p50_ms, st.cv, st.n) == (2.0, 0.0, 20)
    assert calls == [1, 1, 1] + [5] * 4                  # warm-up call by call, then rounds; steady: no retry
    assert p.measure_many({"_": lambda: None}, timer=timer).attempts == {"_": [0.0]}


@pytest.mark.parametrize("kind", ["stem", "downsample", "attn", "ffn", "head"])
def test_onnxruntime_measures_real_units(kind):
    prof = get_profiler("onnxruntime")("local-cpu", protocol=Protocol(**FAST))
    sane(prof.profile_spec(UNITS[kind]))


def test_onnx_export_keeps_gelu_as_one_op(tmp_path):
    m, shape = build_unit(UNITS["ffn"])
    g = onnx.load(str(export_onnx(m, shape, tmp_path / "f.onnx")))
    ops = [n.op_type for n in g.graph.node]
    assert ops.count("Gelu") == 2 and "Erf" not in ops
    assert g.opset_import[0].version == 20


def _tiny_net():
    torch.manual_seed(0)
    return EfficientFormerV2(TINY_SPACE.max_arch().net_config(10), img_size=64).eval()


def test_onnxruntime_profiles_a_whole_network():
    prof = get_profiler("onnxruntime")("local-cpu", protocol=Protocol(**FAST))
    sane(prof.profile_module(_tiny_net(), (1, 3, 64, 64)))


@pytest.mark.slow
def test_tflite_measures_real_units_and_a_network():
    prof = get_profiler("tflite")("local-cpu", protocol=Protocol(**FAST))
    assert prof.runtime_version().startswith("ai-edge-litert")
    sane(prof.profile_spec(UNITS["ffn"]))
    sane(prof.profile_spec(UNITS["attn"]))
    sane(prof.profile_module(_tiny_net(), (1, 3, 64, 64)))


def test_cli_writes_table_and_metadata(tmp_path):
    out = tmp_path / "local-cpu.onnxruntime.csv"
    cmd = [sys.executable, "-m", "profilers.onnxruntime", "--device", "local-cpu", "--space", "tiny",
           "--img-size", "64", "--num-classes", "10", "--limit", "3", "--runs", "10", "--rounds", "3",
           "--out", str(out), "--no-progress", "--cpus", "none"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    df, meta = read_table(out)
    assert len(df) == 3 and (df["n"] % 30 == 0).all() and (df["threads"] == 1).all()   # 3 rounds of 10, or more
    assert list(df.columns[:8]) == ["kind", "cin", "cout", "res", "stride", "hidden", "attn", "classes"]
    for k in ("device", "runtime", "runtime_version", "precision", "threads", "created", "tool_version", "host",
              "img_sizes", "space"):
        assert k in meta
    assert meta["host"]["cpu"] and meta["host"]["cores"] and meta["img_sizes"] == [64] and meta["space"] == "tiny"
    assert meta["space_def"]["name"] == "tiny"
    probe = meta["probe"]["p50_ms"]                                   # the probe, measured with the table
    assert set(probe) == {u.key for u in probe_units()} and all(v > 0 for v in probe.values())
    assert meta["drift"]["factors"] and all(f > 0 for f in meta["drift"]["factors"])
    d = meta["drift"]                              # a probe reading before the first batch and after each one
    assert len(d["readings"]) == len(d["factors"]) + 1 and all(r > 0 for r in d["readings"])
    assert float(np.median(d["readings"])) == pytest.approx(1.0, abs=1e-3)     # the reference is their median
    hs = meta["host_speed_within_batches"]            # what the common mode divided out, for the user to see
    assert hs["sweeps"] >= 3 and 0 < hs["p10"] <= 1.0 <= hs["p90"]
    assert "measured 3 unit(s)" in r.stdout


def test_the_common_mode_is_on_unless_the_command_line_turns_it_off():
    from profilers.plugin.cli import build_parser
    ap = build_parser(get_profiler("onnxruntime"))
    assert ap.parse_args(["--device", "local-cpu"]).common_mode is True
    assert ap.parse_args(["--device", "local-cpu", "--no-common-mode"]).common_mode is False
