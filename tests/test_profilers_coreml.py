"""Core ML: conversion on Linux, the device bundle, and importing on-device timings."""
import json

import pytest

from nas.space.units import space_units
from nas.space.spaces import TINY_SPACE
from profilers.plugin.base import ProfilerUnavailable
from profilers.coreml import CoreMLProfiler, main
from profilers.transports.coreml_bundle import import_results, load_results, write_bundle
from profilers.tables.table import TableError, read_table

ct = pytest.importorskip("coremltools")
UNITS = space_units(TINY_SPACE, 64, 10)


def test_bundle_conversion_and_import(tmp_path, capsys):
    prof = CoreMLProfiler("iphone12")
    specs = [u for u in UNITS if u.kind in ("ffn", "attn")][:2]
    bundle = tmp_path / "bundle"
    r = write_bundle(prof, specs, bundle, space_name="tiny", img_size=64, num_classes=10, progress=False)
    assert r["converted"] == 2
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["compute_units"] == "ALL" and manifest["precision"] == "fp16"
    for s, u in zip(sorted(specs, key=lambda s: s.key), manifest["units"]):
        pkg = bundle / u["package"]
        assert pkg.suffix == ".mlpackage" and pkg.is_dir() and u["input_shape"] == list(s.input_shape)
        spec = ct.utils.load_spec(str(pkg))
        inp = spec.description.input[0]
        assert inp.name == "input" and list(inp.type.multiArrayType.shape) == list(s.input_shape)
        assert spec.WhichOneof("Type") == "mlProgram"
    assert write_bundle(prof, specs, bundle, space_name="tiny", img_size=64, num_classes=10,
                        progress=False)["converted"] == 0                          # resumable

    # timings as an app on the phone would write them (per-run ms for one, summary for the other)
    res = tmp_path / "results.json"
    res.write_text(json.dumps({"os": "iOS 17.5", "results": {
        specs[0].key: [0.41, 0.40, 0.42, 0.40, 0.39, 0.41, 0.40, 0.43, 0.40, 0.41],
        specs[1].key: {"p50_ms": 0.8, "p10_ms": 0.75, "p90_ms": 0.9, "n": 500}}}))
    out = tmp_path / "iphone12.coreml.csv"
    r = import_results(res, "iphone12", out, bundle=bundle)
    assert r["added"] == 2
    df, meta = read_table(out)
    assert df.loc[specs[0].key, "p50_ms"] == pytest.approx(0.405) and df.loc[specs[0].key, "n"] == 10
    assert df.loc[specs[1].key, "p90_ms"] == 0.9 and meta["device"] == "iphone12" and meta["runtime"] == "coreml"
    assert "iOS 17.5" in meta["runtime_version"]
    capsys.readouterr()
    assert main(["import", "--device", "iphone12", "--bundle", str(bundle), "--out", str(out), str(res)]) == 0
    assert "added 0 unit(s), 2 already present" in capsys.readouterr().out
    assert main(["--device", "iphone12", "--space", "tiny", "--img-size", "64", "--num-classes", "10",
                 "--bundle", str(bundle), "--limit", "0", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "converted 0 unit(s)" in said and "2 in the manifest" in said and "profilers.coreml import" in said


def test_bad_results_and_prediction_off_macos(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"ffn_c16_h32_r16": "fast"}))
    with pytest.raises(TableError, match="ffn_c16_h32_r16"):
        load_results(bad)
    bad.write_text(json.dumps({"nonexistent_key": [1.0]}))
    with pytest.raises(TableError, match="unknown unit key"):
        import_results(bad, "iphone12", tmp_path / "t.csv", space="tiny", img_size=64, num_classes=10,
                       bundle=tmp_path)
    with pytest.raises(ProfilerUnavailable, match="--team-id TEAMID .* time it on the phone"):
        CoreMLProfiler("iphone12").check_ready()
