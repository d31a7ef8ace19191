"""Driving TFLite/LiteRT ``benchmark_model`` on an Android phone over ``adb`` and parsing its output.

For each model: ``adb push`` it to the device work folder, run ``benchmark_model`` once per round
(``--graph --num_threads --warmup_runs --num_runs`` plus the delegate flags of the device entry, behind
an optional ``taskset`` mask), parse the timed-run line ``count=.. first=.. curr=.. min=.. max=.. avg=..
std=..`` (microseconds) and remove the file. ``benchmark_model`` reports no per-run times, so a table
row gets the median of the round means and pooled mean/std; p10/p90 stay empty.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from profilers.plugin.base import ProfilerUnavailable
from profilers.timing.protocol import LatencyStats, stats_from_round_summaries

__all__ = ["parse_benchmark_model", "BenchmarkModelError", "AdbBenchmark", "delegate_flags"]

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_COUNT_RE = re.compile(rf"count={_NUM}\s+first={_NUM}\s+curr={_NUM}\s+min={_NUM}\s+max={_NUM}\s+avg={_NUM}"
                       rf"\s+std={_NUM}")
_TIMINGS_RE = re.compile(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, "
                         rf"Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}")
_OLD_TIMINGS_RE = re.compile(rf"Average inference timings in us: Warmup: {_NUM}, Init: {_NUM}, "
                             rf"(?:no stats|Inference): {_NUM}")


class BenchmarkModelError(RuntimeError):
    """benchmark_model output without timings (the message quotes the end of it)."""


def parse_benchmark_model(text: str) -> dict:
    """Parse ``benchmark_model`` stdout.

    Returns ``{"runs": {count, first, curr, min, max, avg, std}, "warmup": {...} or None, "init_us",
    "first_inference_us", "warmup_avg_us", "inference_avg_us"}``; every time is in microseconds. ``runs``
    is the last ``count=`` line (the timed runs; the one before it is the warm-up).
    """
    stats = [dict(zip(("count", "first", "curr", "min", "max", "avg", "std"), map(float, m.groups())))
             for m in _COUNT_RE.finditer(text)]
    for s in stats:
        s["count"] = int(s["count"])
    out = {"runs": stats[-1] if stats else None, "warmup": stats[-2] if len(stats) >= 2 else None,
           "init_us": None, "first_inference_us": None, "warmup_avg_us": None, "inference_avg_us": None}
    m = _TIMINGS_RE.search(text)
    if m:
        out.update(zip(("init_us", "first_inference_us", "warmup_avg_us", "inference_avg_us"),
                       map(float, m.groups())))
    else:
        m = _OLD_TIMINGS_RE.search(text)
        if m:
            out["warmup_avg_us"], out["init_us"], out["inference_avg_us"] = map(float, m.groups())
    if out["runs"] is None and out["inference_avg_us"] is None:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise BenchmarkModelError(f"benchmark_model printed no timings; its output ended with:\n{tail}")
    return out


def delegate_flags(delegate: str | None, precision: str) -> list[str]:
    """benchmark_model flags for a device entry's delegate (gpu, nnapi, xnnpack/cpu)."""
    fp16 = str(precision).lower() in ("fp16", "float16")
    d = (delegate or "xnnpack").lower()
    if d == "gpu":
        return ["--use_gpu=true", f"--gpu_precision_loss_allowed={'true' if fp16 else 'false'}"]
    if d == "nnapi":
        return ["--use_nnapi=true"] + (["--nnapi_allow_fp16=true"] if fp16 else [])
    if d in ("xnnpack", "cpu"):
        return ["--use_xnnpack=true"] + (["--xnnpack_force_fp16=true"] if fp16 else [])
    raise ValueError(f"unknown TFLite delegate {delegate!r}; use gpu, nnapi or xnnpack")


class AdbBenchmark:
    """One phone reached with ``adb`` (``serial`` picks it when several are attached)."""

    def __init__(self, serial: str | None = None, benchmark_model: str | None = "/data/local/tmp/benchmark_model",
                 local_benchmark_model: str | Path | None = None, workdir: str = "/data/local/tmp/effv2_nas",
                 taskset: str | None = None, adb: str = "adb", timeout_s: float = 600):
        self.serial, self.remote_bm, self.local_bm = serial, benchmark_model, local_benchmark_model
        self.workdir, self.taskset, self.adb, self.timeout_s = workdir.rstrip("/"), taskset, adb, timeout_s
        self._ready = False

    # -- plumbing -------------------------------------------------------------------------------
    def _cmd(self, *args) -> list[str]:
        return [self.adb] + (["-s", self.serial] if self.serial else []) + list(args)

    def _run(self, *args, check: bool = True) -> str:
        p = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=self.timeout_s)
        if check and p.returncode != 0:
            raise ProfilerUnavailable(f"`{' '.join(self._cmd(*args))}` failed ({p.returncode}): "
                                      f"{(p.stderr or p.stdout).strip()[-800:]}")
        return p.stdout + p.stderr

    def _shell(self, *argv: str, check: bool = True) -> str:
        """Run ``argv`` in the phone's shell, every argument quoted: ``adb shell`` joins its arguments into
        one command line for the phone's shell, so an unquoted path could run anything."""
        return self._run("shell", " ".join(shlex.quote(str(a)) for a in argv), check=check)

    def attached(self) -> list[str]:
        """Serials of the attached devices in state ``device``."""
        out = subprocess.run([self.adb, "devices"], capture_output=True, text=True, timeout=60).stdout
        return [ln.split()[0] for ln in out.splitlines()[1:] if ln.strip().endswith("\tdevice") or
                (len(ln.split()) >= 2 and ln.split()[1] == "device")]

    def check(self) -> None:
        """Raise :class:`ProfilerUnavailable` naming what is missing: adb, a phone, or benchmark_model."""
        if self._ready:
            return
        if shutil.which(self.adb) is None:
            raise ProfilerUnavailable(
                f"adb is not on PATH ({self.adb!r}); install Android platform-tools (e.g. `apt install adb` or "
                f"the SDK's platform-tools) and connect the phone with USB debugging enabled")
        serials = self.attached()
        if not serials:
            raise ProfilerUnavailable("no Android device attached (`adb devices` lists none); connect the phone "
                                      "with USB debugging enabled and accept the host key on it")
        if self.serial and self.serial not in serials:
            raise ProfilerUnavailable(f"device serial {self.serial!r} is not attached; attached: {serials}")
        if not self.serial and len(serials) > 1:
            raise ProfilerUnavailable(f"several devices attached ({serials}); pass --adb-serial or set "
                                      f"connection.serial in profilers/devices.json")
        if self.local_bm:
            if not Path(self.local_bm).exists():
                raise ProfilerUnavailable(f"benchmark_model binary {self.local_bm} does not exist")
            self.remote_bm = self.remote_bm or "/data/local/tmp/benchmark_model"
            self._run("push", str(self.local_bm), self.remote_bm)
            self._shell("chmod", "+x", self.remote_bm)
        if not self.remote_bm:
            raise ProfilerUnavailable("no benchmark_model binary path given: pass --benchmark-model PATH (the "
                                      "android_aarch64 LiteRT benchmark_model; it is pushed for you)")
        probe = self._run("shell", f"ls {shlex.quote(self.remote_bm)} 2>/dev/null || echo MISSING", check=False)
        if "MISSING" in probe:
            raise ProfilerUnavailable(f"benchmark_model not found on the device at {self.remote_bm}; pass "
                                      f"--benchmark-model PATH to a local android_aarch64 build (it is pushed "
                                      f"there), or adb push it yourself")
        self._shell("mkdir", "-p", self.workdir)
        self._ready = True

    # -- measuring ------------------------------------------------------------------------------
    def command(self, remote_model: str, threads: int, warmup: int, runs: int, flags: list[str]) -> str:
        cmd = [self.remote_bm, f"--graph={remote_model}", f"--num_threads={int(threads)}",
               f"--warmup_runs={int(warmup)}", f"--num_runs={int(runs)}"] + list(flags)
        pre = ["taskset", self.taskset] if self.taskset else []
        return " ".join(shlex.quote(c) for c in pre + cmd)

    def benchmark(self, model: str | Path, threads: int, warmup: int, runs: int, rounds: int,
                  flags: list[str]) -> tuple[LatencyStats, list[dict]]:
        """Push ``model``, run benchmark_model ``rounds`` times, remove it; stats in ms and raw parses."""
        self.check()
        remote = f"{self.workdir}/{Path(model).name}"
        self._run("push", str(model), remote)
        try:
            parsed = []
            for _ in range(max(1, rounds)):
                parsed.append(parse_benchmark_model(self._run("shell", self.command(remote, threads, warmup,
                                                                                     runs, flags))))
        finally:
            self._shell("rm", "-f", remote, check=False)
        return round_stats(parsed), parsed


def round_stats(parsed: list[dict]) -> LatencyStats:
    """Statistics (ms) over benchmark_model runs parsed by :func:`parse_benchmark_model`."""
    avgs, stds, counts = [], [], []
    for p in parsed:
        r = p["runs"]
        if r is not None:
            avgs.append(r["avg"] / 1000.0)
            stds.append(r["std"] / 1000.0)
            counts.append(r["count"])
        else:
            avgs.append(p["inference_avg_us"] / 1000.0)
            stds.append(float("nan"))
            counts.append(1)
    return stats_from_round_summaries(avgs, stds, counts)
