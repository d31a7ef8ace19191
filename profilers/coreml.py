"""Core ML profiler: mlprogram ``.mlpackage`` conversion (any OS), timing on a Mac or on the phone.

Conversion goes through ``torch.export`` (``ct.convert(exported_program, convert_to="mlprogram",
compute_precision=FLOAT16, compute_units=<device entry>, minimum_deployment_target=iOS16)``) with an fp32
input named ``input`` and an output named ``output``.

* Device connection ``local`` on macOS: each package is timed with ``MLModel.predict`` and the shared
  protocol (this times the Mac, not a phone).
* Device connection ``bundle`` (``iphone12``), or any device off macOS: ``python -m profilers.coreml
  --device iphone12`` writes a *device bundle* (``build/coreml/{device}/``: ``packages/{key}.mlpackage``
  and ``manifest.json`` listing key -> package and input shape). Time the packages on the device (an
  XCTest or benchmark app: warm up, then time ``prediction`` calls), then read the timings back:

      python -m profilers.coreml import --device iphone12 results.json

  ``results.json`` maps each key to its per-run times in ms (``{"ffn_c32_h64_r56": [0.41, 0.40, ...]}``)
  or to summary values (``{"ffn_c32_h64_r56": {"p50_ms": 0.40, "p10_ms": 0.39, "p90_ms": 0.43, "n": 500}}``);
  optionally wrapped as ``{"device": "iphone12", "os": "iOS 17.5", "results": {...}}``. A CSV with
  ``key,ms`` (one row per run) or ``key,p50_ms[,p10_ms,p90_ms,mean_ms,std_ms,n]`` works too. Per-run times
  get the same statistics as local measurements (5 consecutive rounds).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nas.core.cli import command

from profilers.base import (Profiler, ProfilerUnavailable, build_parser, default_out, main as base_main, parse_shard,
                   quiet_output, shard_specs)
from profilers.devices import DeviceError, get_device
from profilers.stats import LatencyStats, summarize_runs
from nas.core.files import atomic_write_text
from profilers.table import (TableError, TableWriter, check_compatible, check_stats, existing_keys, format_row, now_iso,
                    read_meta, write_meta)

__all__ = ["CoreMLProfiler", "export_coreml", "write_bundle", "load_results", "import_results", "BUNDLE_ROOT"]

BUNDLE_ROOT = Path(__file__).resolve().parent.parent / "build" / "coreml"


def _ct(quiet: bool = True):
    try:
        with quiet_output(quiet), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import coremltools as ct
    except ImportError:
        raise ProfilerUnavailable("coremltools is not installed: pip install 'effv2-nas[coreml]' "
                                  "(coremltools==9.0, numpy<2.4)") from None
    return ct


def export_coreml(module: torch.nn.Module, input_shape: tuple, path: Path, compute_units: str = "ALL",
                  precision: str = "fp16", target: str = "iOS16", quiet: bool = True) -> Path:
    """Convert ``module`` to an mlprogram package at ``path`` (input ``input`` fp32, output ``output``)."""
    ct = _ct(quiet)
    x = torch.randn(*input_shape)
    prec = ct.precision.FLOAT16 if str(precision).lower() in ("fp16", "float16") else ct.precision.FLOAT32
    with quiet_output(quiet), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        ep = torch.export.export(module.eval(), (x,)).run_decompositions({})
        ml = ct.convert(ep, convert_to="mlprogram", compute_precision=prec,
                        compute_units=ct.ComputeUnit[compute_units],
                        minimum_deployment_target=getattr(ct.target, target),
                        inputs=[ct.TensorType(name="input", shape=tuple(input_shape), dtype=np.float32)],
                        outputs=[ct.TensorType(name="output", dtype=np.float32)])
        ml.save(str(path))
    return Path(path)


class CoreMLProfiler(Profiler):
    name = "coreml"
    suffix = ".mlpackage"

    @property
    def compute_units(self) -> str:
        return self.device.compute_units or "ALL"

    def runtime_version(self) -> str:
        try:
            from importlib.metadata import version
            return f"coremltools {version('coremltools')}"
        except Exception:
            return "unknown"

    def settings(self) -> dict:
        return {"compute_units": self.compute_units, "converter": "coremltools (torch.export route)",
                "minimum_deployment_target": self.device.extra.get("minimum_deployment_target", "iOS16"),
                "connection": self.device.connection_type}

    def check_ready(self) -> None:
        if self.device.connection_type == "bundle":
            raise ProfilerUnavailable(
                f"{self.device.name} is timed on the phone itself: write a bundle with python -m profilers.coreml "
                f"--device {self.device.name}, time it on the device, then python -m profilers.coreml import "
                f"--device {self.device.name} results.json")
        if sys.platform != "darwin":
            raise ProfilerUnavailable(
                f"Core ML prediction needs macOS (this is {sys.platform}); conversion works here: "
                f"python -m profilers.coreml --device {self.device.name} writes a device bundle to time elsewhere")

    def export(self, module, input_shape, path):
        return export_coreml(module, input_shape, path, self.compute_units, self.device.precision,
                             self.device.extra.get("minimum_deployment_target", "iOS16"), quiet=self.quiet)

    def profile_module(self, module, input_shape, name: str = "model") -> LatencyStats:
        self.check_ready()
        return super().profile_module(module, input_shape, name)

    def runner(self, path, input_shape):                       # macOS only
        self.check_ready()
        ct = _ct(self.quiet)
        m = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit[self.compute_units])
        feed = {"input": np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)}
        return lambda: m.predict(feed)


# ----------------------------------------------------------------------------------------------
# device bundles
# ----------------------------------------------------------------------------------------------
def write_bundle(profiler: CoreMLProfiler, specs, bundle_dir: str | Path, *, space_name: str, img_size: int,
                 num_classes: int, limit: int | None = None, progress: bool = True) -> dict:
    """Convert ``specs`` into ``bundle_dir/packages`` and (re)write ``manifest.json`` (resumable)."""
    from tqdm import tqdm
    bundle = Path(bundle_dir)
    (bundle / "packages").mkdir(parents=True, exist_ok=True)
    mpath = bundle / "manifest.json"
    manifest = json.loads(mpath.read_text()) if mpath.exists() else {}
    units = {u["key"]: u for u in manifest.get("units", [])}
    todo = [s for s in specs if s.key not in units or not (bundle / units[s.key]["package"]).exists()]
    if limit is not None:
        todo = todo[:max(0, int(limit))]
    manifest.update({
        "device": profiler.device.name, "runtime": "coreml", "compute_units": profiler.compute_units,
        "precision": profiler.device.precision, "converter": profiler.runtime_version(),
        "minimum_deployment_target": profiler.settings()["minimum_deployment_target"],
        "space": space_name, "img_size": img_size, "num_classes": num_classes,
        "input_name": "input", "input_dtype": "float32", "output_name": "output",
        "suggested_protocol": {"warmup_runs": 50, "timed_runs": 500, "note": "load the model first (ANE loads "
                               "can take seconds), then warm up, then time each prediction"},
        "results_format": "JSON {key: [per-run ms, ...]} or {key: {p50_ms, p10_ms, p90_ms, n}}; import with "
                          f"python -m profilers.coreml import --device {profiler.device.name} results.json",
        "created": manifest.get("created", now_iso()), "updated": now_iso()})
    for spec in tqdm(todo, desc=f"{profiler.device.name}/coreml bundle", unit="unit", disable=not progress):
        torch.manual_seed(0)
        module, shape = spec.build()
        rel = f"packages/{spec.key}.mlpackage"
        profiler.export(module, shape, bundle / rel)
        units[spec.key] = {"key": spec.key, "package": rel, "input_shape": list(shape), "spec": spec.to_dict()}
        manifest["units"] = sorted(units.values(), key=lambda u: u["key"])
        atomic_write_text(mpath, json.dumps(manifest, indent=2) + "\n")
    manifest["units"] = sorted(units.values(), key=lambda u: u["key"])
    mpath.write_text(json.dumps(manifest, indent=2) + "\n")
    return {"bundle": str(bundle), "converted": len(todo), "units": len(units)}


def load_results(path: str | Path, rounds: int = 5) -> tuple[dict[str, LatencyStats], dict]:
    """Read on-device timings (see the module docstring) into ``{key: LatencyStats}`` and extra info."""
    path = Path(path)
    if not path.exists():
        raise TableError(f"results file {path} does not exist")
    info: dict = {}
    out: dict[str, LatencyStats] = {}
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path)
        if "key" not in df.columns:
            raise TableError(f"{path}: a results CSV needs a 'key' column plus 'ms' (per run) or 'p50_ms'")
        if "ms" in df.columns:
            for k, g in df.groupby("key", sort=False):
                out[str(k)] = summarize_runs(g["ms"].astype(float).to_numpy(), rounds)
            return out, info
        if "p50_ms" not in df.columns:
            raise TableError(f"{path}: a results CSV needs an 'ms' or a 'p50_ms' column")
        raw = {str(r["key"]): {c: r[c] for c in df.columns if c != "key" and not pd.isna(r[c])}
               for _, r in df.iterrows()}
    else:
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise TableError(f"{path} is not valid JSON: {e}") from None
        if isinstance(raw, dict) and isinstance(raw.get("results"), dict):
            info = {k: v for k, v in raw.items() if k != "results"}
            raw = raw["results"]
        if not isinstance(raw, dict):
            raise TableError(f"{path}: expected a JSON object mapping unit keys to timings")
    def number(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    for k, v in raw.items():
        if isinstance(v, dict) and "runs_ms" in v:
            v = v["runs_ms"]
        if isinstance(v, list):
            if not v or not all(number(t) and t > 0 for t in v):
                raise TableError(f"{path}: {k!r} must list finite positive per-run times in ms")
            out[k] = summarize_runs(v, rounds)
        elif isinstance(v, dict) and "p50_ms" in v:
            for f in ("p50_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "cv", "n"):
                if v.get(f) is not None and not number(v[f]):
                    raise TableError(f"{path}: {k!r}: {f} must be a finite number, got {v[f]!r}")
            g = lambda f: float(v[f]) if v.get(f) is not None else float("nan")
            out[k] = LatencyStats(g("p50_ms"), g("p10_ms"), g("p90_ms"), g("mean_ms"), g("std_ms"), g("cv"),
                                  int(v.get("n") or 0))
        else:
            raise TableError(f"{path}: {k!r} must map to a list of per-run ms or an object with p50_ms")
        check_stats(out[k], f"{path}: {k!r}")
    return out, info


def import_results(results: str | Path, device: str, out: str | Path | None = None, *, space: str | None = None,
                   img_size: int = 224, num_classes: int = 1000, bundle: str | Path | None = None) -> dict:
    """Append on-device timings to the device's Core ML table (keys already there are kept)."""
    from nas.space.units import BlockSpec, space_units
    from nas.space.spaces import get_space
    dev = get_device(device)
    prof = CoreMLProfiler(dev)
    out = Path(out) if out else default_out(dev.name, "coreml", None)
    bundle = Path(bundle) if bundle else BUNDLE_ROOT / dev.name
    stats, info = load_results(results, prof.protocol.rounds)
    specs = {}
    mpath = bundle / "manifest.json"
    manifest = json.loads(mpath.read_text()) if mpath.exists() else {}
    for u in manifest.get("units", []):
        specs[u["key"]] = BlockSpec.from_dict(u["spec"])
    sp = get_space(space or manifest.get("space") or "efficientformerv2")
    img = int(manifest.get("img_size", img_size)) if not space else img_size
    nc = int(manifest.get("num_classes", num_classes)) if not space else num_classes
    for u in space_units(sp, img, nc):
        specs.setdefault(u.key, u)
    unknown = [k for k in stats if k not in specs]
    if unknown:
        raise TableError(f"{results}: unknown unit key(s) {unknown[:5]}{'...' if len(unknown) > 5 else ''} (not in "
                         f"bundle {bundle} nor in space {sp.name!r} at {img} px)")
    meta_new = prof.table_meta(sp.name, img, nc)
    meta_new["runtime_version"] = f"Core ML on device ({info.get('os', 'OS not given')})"
    meta_new["host"] = {"measured_on": info.get("device_model", dev.name), "os": info.get("os"),
                        "imported_from": str(results)}
    meta_new["converter"] = prof.runtime_version()
    check_compatible(out, meta_new)
    have = existing_keys(out)
    old = read_meta(out)
    meta = {**old, **meta_new, "created": old.get("created", now_iso()), "updated": now_iso()}
    meta["img_sizes"] = sorted(set(old.get("img_sizes", [])) | {img})
    meta["spaces"] = sorted(set(old.get("spaces", [])) | {sp.name})
    stamp = str(info.get("measured_at") or now_iso())
    lines = [format_row(specs[k].to_dict(), st, dev.threads, stamp) for k, st in stats.items() if k not in have]
    write_meta(out, meta)                             # every row was validated above: now write them
    with TableWriter(out) as w:
        for line in lines:
            w.write_line(line)
    added = len(lines)
    meta["rows"] = len(existing_keys(out))
    write_meta(out, meta)
    return {"path": str(out), "added": added, "skipped": len(stats) - added}


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def _import_main(argv) -> int:
    ap = argparse.ArgumentParser(prog="python -m profilers.coreml import",
                                 description="Append Core ML timings measured on a device to its table.")
    ap.add_argument("results", help="JSON or CSV of per-run ms (or p10/p50/p90) per unit key")
    ap.add_argument("--device", required=True)
    ap.add_argument("--bundle", default=None, help="bundle folder (default: build/coreml/{device})")
    ap.add_argument("--out", default=None, help="table path (default: latency_tables/{device}.coreml.csv)")
    ap.add_argument("--space", default=None)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--num-classes", type=int, default=1000)
    a = ap.parse_args(argv)
    try:
        r = import_results(a.results, a.device, a.out, space=a.space, img_size=a.img_size,
                           num_classes=a.num_classes, bundle=a.bundle)
    except (TableError, DeviceError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{r['path']}: added {r['added']} unit(s), {r['skipped']} already present")
    return 0


def _drop_option(argv: list[str], opt: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == opt:
            skip = True
        elif not a.startswith(opt + "="):
            out.append(a)
    return out


@command
def main(argv=None) -> int:
    """``python -m profilers.coreml`` (bundle or Mac timing) and ``python -m profilers.coreml import``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "import":
        return _import_main(argv[1:])
    ap = build_parser("coreml")
    ap.add_argument("--bundle", default=None, help="bundle folder (default: build/coreml/{device})")
    args, _ = ap.parse_known_args(argv)
    try:
        dev = get_device(args.device) if args.device else None
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if dev is None or args.list_devices or args.coverage or (dev.connection_type == "local" and sys.platform == "darwin"):
        return base_main(CoreMLProfiler, _drop_option(argv, "--bundle"))
    args = ap.parse_args(argv)
    from nas.space.units import space_units
    from nas.space.spaces import get_space
    try:
        sp = get_space(args.space)
        specs = shard_specs(space_units(sp, args.img_size, args.num_classes), parse_shard(args.shard))
        prof = CoreMLProfiler(dev, threads=args.threads, quiet=not args.verbose)
        bundle = Path(args.bundle) if args.bundle else BUNDLE_ROOT / dev.name
        t0 = time.perf_counter()
        r = write_bundle(prof, specs, bundle, space_name=sp.name, img_size=args.img_size,
                         num_classes=args.num_classes, limit=args.limit, progress=not args.no_progress)
    except (ProfilerUnavailable, TableError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    why = "it is timed on the phone" if dev.connection_type == "bundle" else f"prediction needs macOS, this is {sys.platform}"
    print(f"{r['bundle']}: converted {r['converted']} unit(s) in {time.perf_counter() - t0:.1f} s, {r['units']} in "
          f"the manifest ({why}).\nTime each package on {dev.name} (see manifest.json), then run:\n"
          f"  python -m profilers.coreml import --device {dev.name} results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
