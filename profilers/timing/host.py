"""Which machine a measurement describes: a host fingerprint, and its comparison with another one.

A latency table holds for the machine it was measured on. Its metadata records :func:`fingerprint`
(CPU vendor, model name, family/model/stepping, core count, the ISA extensions that select different
kernels, OS, architecture, the cores the process may use) next to the runtime, its version and the
thread count. :func:`differences` lists, in words, what differs between two fingerprints; fields that
either side did not record are not compared. A fingerprint alone cannot tell two machines of the same
name apart (two "AMD EPYC" hosts can differ by 1.5x): that is what a table's probe is for
(:mod:`profilers.timing.probe`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Iterable

__all__ = ["fingerprint", "differences", "host_id", "pinned", "COMPARED_FIELDS", "ISA_FLAGS"]

#: CPU feature flags that change which kernels a runtime picks (x86 and Arm names as /proc/cpuinfo has them)
ISA_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
             "asimd", "asimdhp", "asimddp", "sve", "sve2", "i8mm", "bf16")
#: fingerprint fields that must agree for a table to describe this host
COMPARED_FIELDS = ("vendor", "cpu", "family", "model", "stepping", "cores", "isa", "os", "machine")


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict:
    """The first processor's fields of ``/proc/cpuinfo`` ({} where there is none)."""
    out: dict = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        k, _, v = line.partition(":")
        out.setdefault(k.strip(), v.strip())
    return out


def _sysctl(name: str) -> str | None:
    try:
        r = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def fingerprint(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """This host as a plain dict (see the module docstring). Unknown fields are ``None``."""
    info = _cpuinfo(cpuinfo_path)
    flags = set((info.get("flags") or info.get("Features") or "").split())
    cpu = info.get("model name") or info.get("Model name") or info.get("Hardware")
    vendor = info.get("vendor_id") or info.get("CPU implementer")
    family, model, stepping = info.get("cpu family"), info.get("model"), info.get("stepping")
    if platform.system() == "Darwin":
        cpu = cpu or _sysctl("machdep.cpu.brand_string")
        vendor = vendor or ("Apple" if platform.machine() == "arm64" else _sysctl("machdep.cpu.vendor"))
    if not cpu:
        cpu = platform.processor() or None
    if info.get("CPU part"):                                  # Arm: part number and variant/revision
        model = model or info.get("CPU part")
        family = family or info.get("CPU architecture")
        stepping = stepping or f"{info.get('CPU variant', '')}/{info.get('CPU revision', '')}"
    fp = {"vendor": vendor, "cpu": cpu, "family": _int_or_str(family), "model": _int_or_str(model),
          "stepping": _int_or_str(stepping), "cores": os.cpu_count(),
          "isa": sorted(f for f in ISA_FLAGS if f in flags) if flags else None,
          "os": platform.system(), "machine": platform.machine(), "kernel": platform.release()}
    if hasattr(os, "sched_getaffinity"):
        fp["affinity"] = sorted(os.sched_getaffinity(0))
    return fp


def _int_or_str(v):
    if v is None or v == "":
        return None
    try:
        return int(v, 0) if isinstance(v, str) else int(v)
    except ValueError:
        return v


def differences(recorded: dict, current: dict, fields=COMPARED_FIELDS) -> list[str]:
    """What differs between two fingerprints, one phrase per field (fields missing on either side are
    not compared)."""
    out = []
    for f in fields:
        a, b = recorded.get(f), current.get(f)
        if a is None or b is None:
            continue
        if f == "isa":
            if sorted(a) != sorted(b):
                gone, new = sorted(set(a) - set(b)), sorted(set(b) - set(a))
                out.append("ISA " + ", ".join(([f"without {' '.join(gone)}"] if gone else [])
                                              + ([f"with {' '.join(new)}"] if new else [])) + " here")
        elif a != b:
            out.append(f"{f} {a!r} there, {b!r} here")
    return out


def host_id(fp: dict | None = None) -> str:
    """A short stable name for this kind of host (a hash of the compared fields), used to keep the tables
    of different machines apart in a shared cache folder."""
    fp = fp or fingerprint()
    key = json.dumps({f: fp.get(f) for f in COMPARED_FIELDS}, sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:10]


@contextlib.contextmanager
def pinned(cpus: Iterable[int] | None):
    """Run the enclosed code on the cores ``cpus`` only (as ``taskset`` would), then restore the previous
    affinity, and torch's thread count, which a runtime may set for its timing (the caller, a search or a
    calibration, keeps its own). Pinning is skipped for ``None`` or where the OS has no affinity call."""
    import torch                                  # only when pinning: importing this module needs no torch
    threads = torch.get_num_threads()
    before = None
    if cpus is not None and hasattr(os, "sched_setaffinity"):
        want = {int(c) for c in cpus}
        n = os.cpu_count() or 1
        if not want or not want <= set(range(n)):
            raise ValueError(f"cores {sorted(want)} requested, but this machine has cores 0..{n - 1}")
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, want)
    try:
        yield
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
