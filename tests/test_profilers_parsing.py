"""Parsing of real benchmark_model and trtexec output, and the adb error paths (no phone or GPU needed)."""
import math

import pytest

from profilers.transports.adb import AdbBenchmark, BenchmarkModelError, delegate_flags, parse_benchmark_model, round_stats
from profilers.plugin.base import ProfilerUnavailable
from profilers.tensorrt import TensorRTProfiler, TrtexecError, parse_trtexec, trtexec_stats

# benchmark_model on an Android phone, quoted from tensorflow/tensorflow issue #42507
# ("Timing discrepancy between tflite benchmark tool and android").
BM_ANDROID = """STARTING!
Duplicate flags: num_threads
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [/data/local/tmp/espcn_harmonic_2x_slim_w_cl.tflite]
Enable op profiling: [1]
#threads used for CPU inference: [4]
Loaded model /data/local/tmp/espcn_harmonic_2x_slim_w_cl.tflite
The input model file size (MB): 0.004448
Initialized session in 0.855ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=15 first=49060 curr=33682 min=32825 max=49060 avg=34825.1 std=3930

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=32891 curr=33978 min=32641 max=34005 avg=33209.4 std=450

Inference timings in us: Init: 855, First inference: 49060, Warmup (avg): 34825.1, Inference (avg): 33209.4
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=0 overall=12.8672
"""

# benchmark_model built from source on Linux (INFO: prefixes), quoted from tensorflow/tensorflow
# issue #73862 ("libtensorflowlite_c is slower than tf.lite").
BM_INFO = """INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Graph: [mobilenet_v1_1.0_224.tflite]
INFO: Signature to run: []
INFO: Loaded model mobilenet_v1_1.0_224.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 16.9008
INFO: Initialized session in 12.75ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=37 first=14744 curr=15520 min=13164 max=18295 avg=13764.3 std=967

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=74 first=14850 curr=13315 min=13105 max=15765 avg=13520.2 std=470

INFO: Inference timings in us: Init: 12750, First inference: 14744, Warmup (avg): 13764.3, Inference (avg): 13520.2
"""

# An older benchmark_model (2019), quoted from yuenshome/yuenshome.github.io issue #77 ("tflite benchmark").
BM_OLD = """Initialized session in 9.933ms
Running benchmark for at least 4 iterations and at least 0.5 seconds
count=7 first=127425 curr=66709 min=66709 max=127425 avg=76605.9 std=20944

Running benchmark for at least 10 iterations and at least 1 seconds
count=15 first=66753 curr=66800 min=66699 max=66838 avg=66767.6 std=39

Average inference timings in us: Warmup: 76605.9, Init: 9933, no stats: 66767.6
"""

# trtexec performance summary, quoted from NVIDIA/TensorRT issue #4177 (comment by lix19937).
TRT_NEW = """[10/03/2024-10:47:59] [I] === Performance summary ===
[10/03/2024-10:47:59] [I] Throughput: 130.298 qps
[10/03/2024-10:47:59] [I] Latency: min = 5.38672 ms, max = 13.3664 ms, mean = 7.60628 ms, median = 7.16092 ms, percentile(90%) = 10.2996 ms, percentile(95%) = 10.8698 ms, percentile(99%) = 12.9675 ms
[10/03/2024-10:47:59] [I] Enqueue Time: min = 2.72876 ms, max = 15.0201 ms, mean = 7.63062 ms, median = 7.86694 ms, percentile(90%) = 10.1792 ms, percentile(95%) = 11.7217 ms, percentile(99%) = 14.1848 ms
[10/03/2024-10:47:59] [I] H2D Latency: min = 0.0065918 ms, max = 0.0698242 ms, mean = 0.0122212 ms, median = 0.00814819 ms, percentile(90%) = 0.0253906 ms, percentile(95%) = 0.0270996 ms, percentile(99%) = 0.0515137 ms
[10/03/2024-10:47:59] [I] GPU Compute Time: min = 5.34595 ms, max = 13.3388 ms, mean = 7.58404 ms, median = 7.14139 ms, percentile(90%) = 10.2881 ms, percentile(95%) = 10.8175 ms, percentile(99%) = 12.9485 ms
[10/03/2024-10:47:59] [I] D2H Latency: min = 0.00390625 ms, max = 0.110596 ms, mean = 0.0100141 ms, median = 0.00439453 ms, percentile(90%) = 0.0254517 ms, percentile(95%) = 0.0319824 ms, percentile(99%) = 0.0994873 ms
[10/03/2024-10:47:59] [I] Total Host Walltime: 3.00082 s
[10/03/2024-10:47:59] [I] Total GPU Compute Time: 2.96536 s
"""

# An older trtexec summary (no '=' before some values, a cv warning), quoted from beyondli/Yolo_on_Jetson issue #4.
TRT_OLD = """=== Performance summary ===
Throughput: 169.352 qps 
Latency: min = 5.38959 ms, max 6.19507 ms, mean 5.93288 ms, median 6.02185 ms, percentile(99%) 6.17407 ms 
Enqueue Time: min = 0.596436 ms, max = 0.805542 ms, mean = 0.628294 ms, median = 0.625488 ms, percentile(99%) = 0.697754 ms 
H2D Latency: min = 0.800781 ms, max = 0.900391 ms, mean = 0.82323 ms, median = 0.817383 ms, percentile(99%) = 0.895874 ms 
GPU Compute Time: min = 3.17834 ms, max = 3.88306 ms, mean = 3.63242 ms, median = 3.71753 ms, percentile(99%) 3.87793 ms 
D2H Latency: min = 1.30469 ms, max = 1.56445 ms, mean 1.47722 ms, median = 1.48657 ms, percentile(99%) 1.50879 ms Total Host Walltime: 3.05281 s Total GPU Compute Time: 1.87796 s GPU compute time is unstable, with coefficient of variance = 5.55763%.
"""


def test_benchmark_model_android_output():
    p = parse_benchmark_model(BM_ANDROID)
    assert p["runs"] == {"count": 50, "first": 32891, "curr": 33978, "min": 32641, "max": 34005,
                         "avg": 33209.4, "std": 450}
    assert p["warmup"]["count"] == 15 and p["warmup"]["avg"] == 34825.1
    assert (p["init_us"], p["first_inference_us"], p["warmup_avg_us"], p["inference_avg_us"]) == \
        (855, 49060, 34825.1, 33209.4)


def test_benchmark_model_info_prefixed_and_old_output():
    p = parse_benchmark_model(BM_INFO)
    assert p["runs"]["count"] == 74 and p["runs"]["avg"] == 13520.2 and p["inference_avg_us"] == 13520.2
    old = parse_benchmark_model(BM_OLD)
    assert old["runs"]["count"] == 15 and old["inference_avg_us"] == 66767.6 and old["init_us"] == 9933


def test_benchmark_model_rounds_to_stats():
    st = round_stats([parse_benchmark_model(BM_ANDROID), parse_benchmark_model(BM_INFO)])
    assert st.n == 124
    assert st.p50_ms == pytest.approx((33.2094 + 13.5202) / 2)          # median of two round means
    assert st.mean_ms == pytest.approx((33.2094 * 50 + 13.5202 * 74) / 124)
    assert math.isnan(st.p10_ms) and math.isnan(st.p90_ms)               # not reported by the tool
    one = round_stats([parse_benchmark_model(BM_ANDROID)])
    assert one.p50_ms == pytest.approx(33.2094) and one.std_ms == pytest.approx(0.450)


def test_benchmark_model_without_timings_is_an_error():
    with pytest.raises(BenchmarkModelError, match="no timings"):
        parse_benchmark_model("STARTING!\nERROR: Could not open 'x.tflite'.\n")


def test_trtexec_summary():
    p = parse_trtexec(TRT_NEW)
    g = p["GPU Compute Time"]
    assert g == {"min": 5.34595, "max": 13.3388, "mean": 7.58404, "median": 7.14139, "p90": 10.2881,
                 "p95": 10.8175, "p99": 12.9485}
    assert p["Latency"]["median"] == 7.16092 and p["total_gpu_compute_s"] == 2.96536
    assert p["throughput_qps"] == 130.298
    st = trtexec_stats([p])
    assert st.p50_ms == 7.14139 and st.p90_ms == 10.2881 and st.mean_ms == pytest.approx(7.58404)
    assert st.n == round(2965.36 / 7.58404)
    assert math.isnan(st.p10_ms)


def test_trtexec_old_summary_and_cv():
    p = parse_trtexec(TRT_OLD)
    g = p["GPU Compute Time"]
    assert g["median"] == 3.71753 and g["mean"] == 3.63242 and g["p99"] == 3.87793
    assert p["Latency"]["max"] == 6.19507
    assert p["cv_pct"] == pytest.approx(5.55763) and p["total_gpu_compute_s"] == 1.87796
    st = trtexec_stats([p, parse_trtexec(TRT_NEW)])
    assert st.p50_ms == pytest.approx((3.71753 + 7.14139) / 2)
    with pytest.raises(TrtexecError, match="GPU Compute Time"):
        parse_trtexec("[I] Building engine...\n[E] Error[4]: network has no outputs\n")


def test_tensorrt_missing_tool_says_what_to_install():
    prof = TensorRTProfiler("a100", trtexec="/nonexistent/trtexec")
    with pytest.raises(ProfilerUnavailable, match="trtexec"):
        prof.check_ready()


def test_delegate_flags():
    assert delegate_flags("gpu", "fp16") == ["--use_gpu=true", "--gpu_precision_loss_allowed=true"]
    assert delegate_flags("nnapi", "fp32") == ["--use_nnapi=true"]
    assert delegate_flags("xnnpack", "fp32") == ["--use_xnnpack=true"]
    cmd = AdbBenchmark(taskset="c0").command("/data/local/tmp/m.tflite", 1, 10, 50, ["--use_xnnpack=true"])
    assert cmd.startswith("taskset c0 /data/local/tmp/benchmark_model --graph=/data/local/tmp/m.tflite")
    assert "--num_threads=1 --warmup_runs=10 --num_runs=50" in cmd


def test_adb_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))                 # no adb anywhere
    with pytest.raises(ProfilerUnavailable, match="adb is not on PATH"):
        AdbBenchmark().check()
    from profilers.tflite import TFLiteProfiler
    from profilers.plugin.cli import main as base_main
    rc = base_main(TFLiteProfiler, ["--device", "pixel6", "--space", "tiny", "--img-size", "64",
                                    "--out", str(tmp_path / "px.csv"), "--no-progress"])
    assert rc == 2
    assert "adb is not on PATH" in capsys.readouterr().err


def _fake_adb(tmp_path, devices_out: str, ls_out: str = "") -> str:
    script = tmp_path / "adb"
    script.write_text("#!/bin/sh\n"
                      f'if [ "$1" = devices ]; then printf "{devices_out}"; exit 0; fi\n'
                      f'echo "{ls_out}"\n')
    script.chmod(0o755)
    return str(script)


def test_adb_no_device_and_missing_binary(tmp_path):
    adb = _fake_adb(tmp_path, "List of devices attached\\n\\n")
    with pytest.raises(ProfilerUnavailable, match="no Android device attached"):
        AdbBenchmark(adb=adb).check()
    adb = _fake_adb(tmp_path, "List of devices attached\\nR5CT1234\\tdevice\\n", "MISSING")
    with pytest.raises(ProfilerUnavailable, match="benchmark_model not found"):
        AdbBenchmark(adb=adb).check()
    with pytest.raises(ProfilerUnavailable, match="no benchmark_model binary path given"):
        AdbBenchmark(adb=adb, benchmark_model=None).check()
