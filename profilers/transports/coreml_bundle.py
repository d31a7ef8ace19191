"""Core ML device bundles: units converted here, timed on the phone, their timings read back into a table.

``python -m profilers.coreml --device iphone12`` writes a *device bundle* (:func:`write_bundle`;
``build/coreml/{device}/``: ``packages/{key}.mlpackage`` and ``manifest.json`` listing key -> package and
input shape). Time the packages on the device (an XCTest or benchmark app: warm up, then time
``prediction`` calls), then read the timings back (:func:`import_results`):

    python -m profilers.coreml import --device iphone12 results.json

``results.json`` maps each key to its per-run times in ms (``{"ffn_c32_h64_r56": [0.41, 0.40, ...]}``)
or to summary values (``{"ffn_c32_h64_r56": {"p50_ms": 0.40, "p10_ms": 0.39, "p90_ms": 0.43, "n": 500}}``);
optionally wrapped as ``{"device": "iphone12", "os": "iOS 17.5", "results": {...}}``. A CSV with
``key,ms`` (one row per run) or ``key,p50_ms[,p10_ms,p90_ms,mean_ms,std_ms,n]`` works too. Per-run times
get the same statistics as local measurements (5 consecutive rounds).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from tqdm import tqdm

from nas.core.cli import ArgumentParser, add_common_args, positive_int
from nas.core.files import atomic_write_text, claim_output, exclusive, parsing, read_json, read_text
from nas.space.modules import build_unit
from nas.space.spaces import get_space
from nas.space.units import BlockSpec, space_units

from profilers.runtimes import get_profiler
from profilers.plugin.base import Profiler
from profilers.plugin.cli import user_errors
from profilers.devices import get_device
from profilers.tables.runs import parse_shard, shard_specs
from profilers.timing.protocol import LatencyStats, summarize_runs
from profilers.tables.meta import TableError, TableMeta, now_iso
from profilers.tables.table import TableWriter, check_stats, existing_keys, format_row, table_path

__all__ = ["BUNDLE_ROOT", "write_bundle", "load_results", "import_results", "bundle_command", "import_command"]

log = logging.getLogger(__name__)

#: where bundles are written by default (``{BUNDLE_ROOT}/{device}``, in the folder the command runs in)
BUNDLE_ROOT = Path("build") / "coreml"


def write_bundle(profiler: Profiler, specs, bundle_dir: str | Path, *, space_name: str, img_size: int,
                 num_classes: int, limit: int | None = None, progress: bool = True) -> dict:
    """Convert ``specs`` with ``profiler`` (a :class:`profilers.coreml.CoreMLProfiler`) into
    ``bundle_dir/packages`` and (re)write ``manifest.json`` (resumable; the bundle's lock held)."""
    bundle = claim_output(bundle_dir, folder=True)
    with exclusive(bundle, "Core ML bundle", folder=True):
        return _write_bundle(profiler, specs, bundle, space_name=space_name, img_size=img_size,
                             num_classes=num_classes, limit=limit, progress=progress)


def _write_bundle(profiler: Profiler, specs, bundle: Path, *, space_name: str, img_size: int, num_classes: int,
                  limit: int | None, progress: bool) -> dict:
    (bundle / "packages").mkdir(parents=True, exist_ok=True)
    mpath = bundle / "manifest.json"
    manifest = _read_manifest(mpath)
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
        module, shape = build_unit(spec)
        rel = f"packages/{spec.key}.mlpackage"
        profiler.export(module, shape, bundle / rel)
        units[spec.key] = {"key": spec.key, "package": rel, "input_shape": list(shape), "spec": spec.to_dict()}
        manifest["units"] = sorted(units.values(), key=lambda u: u["key"])
        atomic_write_text(mpath, json.dumps(manifest, indent=2) + "\n")
    manifest["units"] = sorted(units.values(), key=lambda u: u["key"])
    atomic_write_text(mpath, json.dumps(manifest, indent=2) + "\n")
    return {"bundle": str(bundle), "converted": len(todo), "units": len(units)}


def _read_manifest(mpath: Path) -> dict:
    """A bundle's ``manifest.json`` ({} when there is none yet); TableError naming it when malformed."""
    if not mpath.exists():
        return {}
    manifest = read_json(mpath, "Core ML bundle manifest", TableError, fix="write the bundle again")
    with parsing(mpath, "Core ML bundle manifest", TableError, "write the bundle again"):
        if not all(isinstance(u, dict) and isinstance(u["key"], str) for u in manifest.get("units", [])):
            raise ValueError("'units' must list objects with a 'key'")
    return manifest


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_results(path: str | Path, rounds: int = 5) -> tuple[dict[str, LatencyStats], dict]:
    """Read on-device timings (see the module docstring) into ``{key: LatencyStats}`` and extra info."""
    path = Path(path)
    info: dict = {}
    out: dict[str, LatencyStats] = {}
    if path.suffix.lower() == ".csv":
        text = read_text(path, "results file", TableError)
        try:
            df = pd.read_csv(io.StringIO(text))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
            raise TableError(f"results file {path} is not a valid CSV: {e}") from None
        if "key" not in df.columns:
            raise TableError(f"{path}: a results CSV needs a 'key' column plus 'ms' (per run) or 'p50_ms'")
        if "ms" in df.columns:
            raw = {str(k): pd.to_numeric(g["ms"], errors="coerce").tolist() for k, g in df.groupby("key", sort=False)}
        elif "p50_ms" in df.columns:
            raw = {str(r["key"]): {c: r[c] for c in df.columns if c != "key" and not pd.isna(r[c])}
                   for _, r in df.iterrows()}
        else:
            raise TableError(f"{path}: a results CSV needs an 'ms' or a 'p50_ms' column")
    else:
        raw = read_json(path, "results file", TableError)
        if isinstance(raw.get("results"), dict):
            info = {k: v for k, v in raw.items() if k != "results"}
            raw = raw["results"]

    for k, v in raw.items():
        if isinstance(v, dict) and "runs_ms" in v:
            v = v["runs_ms"]
        if isinstance(v, list):
            if not v or not all(_number(t) and t > 0 for t in v):
                raise TableError(f"{path}: {k!r} must list finite positive per-run times in ms")
            out[k] = summarize_runs(v, rounds)
        elif isinstance(v, dict) and "p50_ms" in v:
            for f in ("p50_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "cv", "n"):
                if v.get(f) is not None and not _number(v[f]):
                    raise TableError(f"{path}: {k!r}: {f} must be a finite number, got {v[f]!r}")
            n = v.get("n") or 0
            if int(n) != n:
                raise TableError(f"{path}: {k!r}: n must be a whole number of timed runs, got {n!r}")
            g = lambda f: float(v[f]) if v.get(f) is not None else float("nan")
            out[k] = LatencyStats(g("p50_ms"), g("p10_ms"), g("p90_ms"), g("mean_ms"), g("std_ms"), g("cv"), int(n))
        else:
            raise TableError(f"{path}: {k!r} must map to a list of per-run ms or an object with p50_ms")
        check_stats(out[k], f"{path}: {k!r}")
    return out, info


def import_results(results: str | Path, device: str, out: str | Path | None = None, *, space: str | None = None,
                   img_size: int = 224, num_classes: int = 1000, bundle: str | Path | None = None) -> dict:
    """Append on-device timings to the device's Core ML table (keys already there are kept).

    Unit keys are looked up in the bundle's manifest, then in the space (``space``, else the bundle's);
    every timing is validated before anything is written. Returns ``{"path", "added", "skipped"}``.
    """
    dev = get_device(device)
    prof = get_profiler("coreml")(dev)
    out = Path(out) if out else table_path(dev.name, "coreml")
    bundle = Path(bundle) if bundle else BUNDLE_ROOT / dev.name
    stats, info = load_results(results, prof.protocol.rounds)
    specs = {}
    mpath = bundle / "manifest.json"
    manifest = _read_manifest(mpath)
    with parsing(mpath, "Core ML bundle manifest", TableError, "write the bundle again"):
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
    new = prof.table_meta(sp.name, img, nc).replace(
        runtime_version=f"Core ML on device ({info.get('os', 'OS not given')})",
        host={"measured_on": info.get("device_model", dev.name), "os": info.get("os"), "imported_from": str(results)},
        extra={"converter": prof.runtime_version()})
    claim_output(out)
    with exclusive(out, "latency table", folder=False):    # one writer per table
        old = TableMeta.read(out)
        if old is not None:
            diffs = old.differences(new)
            if diffs:
                raise TableError(f"{out} was measured with other settings ({'; '.join(diffs)}); write to another "
                                 f"table with --out")
        have = existing_keys(out)
        meta = old.joined(new) if old else new.joined(new)
        stamp = str(info.get("measured_at") or now_iso())
        lines = [format_row(specs[k].to_dict(), st, dev.threads, stamp) for k, st in stats.items() if k not in have]
        meta.write(out)                                   # every row was validated above: now write them
        with TableWriter(out) as w:
            for line in lines:
                w.write_line(line)
        added = len(lines)
        meta.replace(rows=len(existing_keys(out))).write(out)
    return {"path": str(out), "added": added, "skipped": len(stats) - added}


def import_command(argv: Sequence[str]) -> int:
    """``python -m profilers.coreml import``: the arguments after ``import`` (errors are raised, for the
    caller's :func:`nas.core.cli.command` to report)."""
    ap = ArgumentParser(prog="python -m profilers.coreml import",
                                 description="Append Core ML timings measured on a device to its table.")
    ap.add_argument("results", help="JSON or CSV of per-run ms (or p10/p50/p90) per unit key")
    ap.add_argument("--device", required=True)
    ap.add_argument("--bundle", default=None, help="bundle folder (default: build/coreml/{device})")
    ap.add_argument("--out", default=None, help="table path (default: latency_tables/{device}.coreml.csv)")
    ap.add_argument("--space", default=None)
    ap.add_argument("--img-size", type=positive_int, default=224)
    ap.add_argument("--num-classes", type=positive_int, default=1000)
    add_common_args(ap, progress=False)
    a = ap.parse_args(argv)
    with user_errors():
        r = import_results(a.results, a.device, a.out, space=a.space, img_size=a.img_size,
                           num_classes=a.num_classes, bundle=a.bundle)
    log.info("%s: added %d unit(s), %d already present", r["path"], r["added"], r["skipped"])
    return 0


def bundle_command(profiler: Profiler, args: argparse.Namespace) -> int:
    """``python -m profilers.coreml --device NAME`` where the device is not timed here: write its bundle
    (``args`` from :func:`profilers.plugin.cli.build_parser` plus ``--bundle``)."""
    dev = profiler.device
    with user_errors():
        sp = get_space(args.space)
        specs = shard_specs(space_units(sp, args.img_size, args.num_classes), parse_shard(args.shard))
        bundle = Path(args.bundle) if args.bundle else BUNDLE_ROOT / dev.name
        t0 = time.perf_counter()
        r = write_bundle(profiler, specs, bundle, space_name=sp.name, img_size=args.img_size,
                         num_classes=args.num_classes, limit=args.limit, progress=not args.no_progress)
    phone = dev.connection_type in ("iphone", "bundle")
    why = "it is timed on the phone" if phone else f"prediction needs macOS, this is {sys.platform}"
    log.info("%s: converted %d unit(s) in %.1f s, %d in the manifest (%s).\nTime each package on %s (see "
             "manifest.json), then run:\n  python -m profilers.coreml import --device %s results.json",
             r["bundle"], r["converted"], time.perf_counter() - t0, r["units"], why, dev.name, dev.name)
    if phone:
        log.info("Or time %s in one command, on a Mac with Xcode and the iPhone connected: python -m profilers.coreml "
                 "--device %s --team-id TEAMID (your Apple development team)", dev.name, dev.name)
    return 0
