"""Tables: resumable runs, shards and merge, coverage, malformed files, the device registry."""
import ast
import json
from pathlib import Path

import pytest

from nas.core.version import TOOL, __version__
from nas.space.units import space_units
from nas.space.spaces import TINY_SPACE
from profilers import get_profiler
from profilers.plugin.cli import main as cli_main
from profilers.coverage import main as coverage_main
from profilers.devices import DeviceError, get_device, list_devices
from profilers.merge import main as merge_main
from profilers.plugin.cli import format_devices
from profilers.plugin.options import OptionsError
from profilers.runtimes import UnknownRuntime
from profilers.tables.meta import TableMeta
from profilers.tables.runs import parse_shard, run_table, shard_specs
from profilers.tables.table import (COLUMNS, LatencyTable, TableError, coverage_report, merge_tables, meta_path,
                                    missing_keys, read_table, table_path)
from profilers.timing.protocol import Protocol

FAST = dict(warmup=2, warmup_s=0.005, rounds=3, round_s=0.01, min_runs=5, max_runs=40, retries=0)
UNITS = space_units(TINY_SPACE, 64, 10)
ROOT = Path(__file__).resolve().parent.parent


def ort(threads=None):
    return get_profiler("onnxruntime")("local-cpu", threads=threads, protocol=Protocol(**FAST))


def some_units(n=6):
    kinds = {}
    for u in UNITS:                       # a few of each kind, cheap ones first
        kinds.setdefault(u.kind, []).append(u)
    out = [kinds["stem"][0], kinds["downsample"][0], kinds["ffn"][0], kinds["attn"][0], kinds["head"][0],
           kinds["ffn"][1], kinds["downsample"][1]]
    return out[:n]


def run(prof, specs, out, **kw):
    return run_table(prof, specs, out, space_name="tiny", img_size=64, num_classes=10, progress=False, **kw)


# ----------------------------------------------------------------------------------------------
def test_device_registry_has_the_required_devices():
    devs = list_devices()
    assert {"iphone12", "pixel6", "a100", "local-cpu"} <= set(devs)
    assert (devs["iphone12"].runtime, devs["iphone12"].precision) == ("coreml", "fp16")
    assert get_profiler("coreml").Options.from_entry(devs["iphone12"]).compute_units == "ALL"
    assert devs["pixel6"].runtime == "tflite" and devs["pixel6"].connection_type == "adb"
    assert devs["a100"].runtime == "tensorrt" and devs["a100"].precision == "fp16"
    loc = get_device("local-cpu")
    assert loc.runtime == "onnxruntime" and "tflite" in loc.runtimes and loc.threads == 1
    assert "local-cpu" in format_devices()


def test_unknown_device_lists_known_ones(capsys):
    with pytest.raises(DeviceError) as e:
        get_device("pixel99")
    assert "pixel99" in str(e.value) and "iphone12" in str(e.value) and "local-cpu" in str(e.value)
    assert cli_main(get_profiler("onnxruntime"), ["--device", "pixel99"]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'pixel99'" in err and "pixel6" in err
    assert cli_main(get_profiler("onnxruntime"), ["--list-devices"]) == 0
    assert "iphone12" in capsys.readouterr().out


def test_table_path_and_profiler_registry(tmp_path):
    assert table_path("local-cpu", "onnxruntime").name == "local-cpu.onnxruntime.csv"
    assert table_path("pixel6", "tflite", tmp_path) == tmp_path / "pixel6.tflite.csv"
    assert get_profiler("onnxruntime").name == "onnxruntime" and get_profiler("coreml").name == "coreml"
    with pytest.raises(UnknownRuntime, match="unknown runtime 'tvm'; known runtimes: aihub, coreml, onnxruntime"):
        get_profiler("tvm")
    with pytest.raises(OptionsError, match="profiled with"):
        get_profiler("coreml")("local-cpu")


def test_resume_after_a_killed_run_measures_only_the_rest(tmp_path):
    out = tmp_path / "local-cpu.onnxruntime.csv"
    specs = some_units(6)

    class Killed(Exception):
        pass

    prof = ort()
    real, exported = prof.export, []

    def dying(module, shape, path):       # the run "dies" while exporting the 4th unit
        if len(exported) == 3:
            raise Killed()
        exported.append(path.stem)
        return real(module, shape, path)

    prof.export = dying
    with pytest.raises(Killed):
        run(prof, specs, out, batch_size=1)
    t = LatencyTable.read(out)
    assert list(t.rows.index) == [s.key for s in specs[:3]]              # every finished batch was kept
    assert (t.meta.device.name, t.meta.runtime, t.meta.threads) == ("local-cpu", "onnxruntime", 1)

    prof2 = ort()
    measured = []
    orig = prof2.export
    prof2.export = lambda m, shape, path: (measured.append(path.stem), orig(m, shape, path))[1]
    res = run(prof2, specs, out)
    assert measured == [s.key for s in specs[3:]]                         # only the missing ones
    assert (res.measured, res.skipped, res.remaining) == (3, 3, 0)
    t = LatencyTable.read(out)
    assert len(t.rows) == 6 and set(t.rows.index) == {s.key for s in specs}
    assert t.meta.rows == 6 and t.meta.profiling_seconds > 0
    assert run(ort(), specs, out).measured == 0                         # nothing left to do


def test_incomplete_last_line_is_ignored_then_repaired(tmp_path, capsys, caplog):
    out = tmp_path / "t.csv"
    specs = some_units(3)
    run(ort(), specs[:2], out)
    assert capsys.readouterr().out == ""                                  # the library logs, it does not print
    with open(out, "a") as f:
        f.write(f"{specs[2].key},ffn,16,16,16,1")                       # killed mid-write
    df, _ = read_table(out)
    assert "incomplete last line" in caplog.text                          # a log warning, one line
    assert len(df) == 2
    assert run(ort(), specs, out).measured == 1
    assert len(read_table(out)[0]) == 3


def test_appending_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "t.csv"
    run(ort(), some_units(1), out)
    with pytest.raises(TableError, match="threads"):
        run(ort(threads=2), some_units(2), out)


def test_shards_partition_and_merge_equals_unsharded(tmp_path, capsys):
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) is None
    for bad in ("0/2", "3/2", "x"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    parts = [shard_specs(UNITS, (i, 3)) for i in (1, 2, 3)]
    keys = [s.key for p in parts for s in p]
    assert sorted(keys) == sorted(u.key for u in UNITS) and len(keys) == len(set(keys))
    assert [s.key for s in shard_specs(UNITS, (2, 3))] == [s.key for s in parts[1]]   # deterministic

    specs = some_units(5)
    paths = []
    for i in (1, 2):
        p = tmp_path / f"shard{i}.csv"
        run(ort(), shard_specs(specs, (i, 2)), p, shard=(i, 2))
        paths.append(p)
    whole = tmp_path / "whole.csv"
    assert merge_main([str(p) for p in paths] + ["-o", str(whole)]) == 0
    t = LatencyTable.read(whole)
    assert set(t.rows.index) == {s.key for s in specs} and len(t.rows) == 5
    assert t.meta.device.name == "local-cpu" and len(t.meta.extra["merged_from"]) == 2


def test_merge_rejects_disagreeing_metadata(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    run(ort(), some_units(1), a)
    run(ort(), some_units(2)[1:], b)
    m = json.loads(meta_path(b).read_text())
    m["device"] = "pixel6"
    meta_path(b).write_text(json.dumps(m))
    with pytest.raises(TableError, match="different device"):
        merge_tables([a, b], tmp_path / "o.csv")
    assert merge_main([str(a), str(b), "-o", str(tmp_path / "o.csv")]) == 2
    assert "different device" in capsys.readouterr().err


def test_coverage_report(tmp_path, capsys):
    out = tmp_path / "t.csv"
    specs = some_units(3)
    run(ort(), specs, out)
    missing, total, _ = missing_keys(out)
    assert total == len(UNITS) and set(missing) == {u.key for u in UNITS} - {s.key for s in specs}
    text, miss = coverage_report(out)
    assert f"{len(UNITS) - len(missing)}/{len(UNITS)}" in text and "python -m profilers.onnxruntime" in text
    assert coverage_main(["--table", str(out)]) == 1
    assert coverage_main(["--table", str(out), "--space", "tiny", "--img-size", "64"]) == 1
    assert missing[0] in capsys.readouterr().out
    assert cli_main(get_profiler("onnxruntime"), ["--device", "local-cpu", "--space", "tiny", "--img-size", "64",
                                                  "--num-classes", "10", "--out", str(out), "--coverage"]) == 1


HEADER = ",".join(COLUMNS)


@pytest.mark.parametrize("content, problem", [
    ("", "is empty"),
    ("key,kind,cin\nffn_c16_h32_r16,ffn,16\n", "lacks column"),
    (HEADER + "\nffn_c16_h32_r16,ffn,16,16,16,1,32,0,0,fast,0.1,0.2,0.1,0.01,0.01,50,1,2026-01-01\n",
     "line 2: column 'p50_ms' holds 'fast'"),
    (HEADER + "\nffn_c16_h32_r16,ffn,16,16,16,1,32,0,0,,0.1,0.2,0.1,0.01,0.01,50,1,2026-01-01\n",
     "column 'p50_ms' is empty"),
    (HEADER + "\nffn_c16_h32_r16,ffn,16,16,16,1,32,0,0,0.1,0.1,0.2,0.1,0.01,0.01,50,1,2026-01-01,extra,x\n",
     "not a valid CSV"),
])
def test_malformed_csv_names_file_and_problem(tmp_path, content, problem):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(TableError) as e:
        read_table(p)
    assert str(p) in str(e.value) and problem in str(e.value)


def test_missing_table_names_the_command(tmp_path):
    with pytest.raises(TableError) as e:
        read_table(tmp_path / "pixel6.tflite.csv")
    assert "does not exist" in str(e.value) and "python -m profilers.tflite --device pixel6" in str(e.value)
    (tmp_path / "x.csv").write_text(HEADER + "\n")
    bad_meta = tmp_path / "x.meta.json"
    bad_meta.write_text("{not json")
    with pytest.raises(TableError, match=r"table metadata .*x.meta.json is not valid JSON"):
        read_table(tmp_path / "x.csv")
    assert issubclass(TableError, ValueError)


def test_metadata_joins_one_way():
    old = TableMeta.from_dict({"device": "local-cpu", "runtime": "onnxruntime", "created": "2025-01-01T00:00:00+00:00",
                               "img_size": 224, "space": "efficientformerv2", "runtime_version": "1.0",
                               "tool": "effv2-nas profilers", "tool_version": "0.1.0"})   # an older table's
    new = ort().table_meta("tiny", 64, 10)
    assert new.tool == TOOL and new.tool_version == __version__
    m = old.joined(new)
    assert m.created == old.created and (m.img_size, m.space) == (224, "efficientformerv2")
    assert m.img_sizes == (224, 64) and m.spaces == ("efficientformerv2", "tiny")
    assert m.runtime_version == new.runtime_version and m.tool == TOOL and m.updated
    first = new.joined(old, keep=())                              # how merge_tables combines tables
    assert first.runtime_version == "1.0" and first.img_sizes == (64, 224)


def test_metadata_round_trips_and_names_a_field_of_the_wrong_type(tmp_path):
    meta = ort().table_meta("tiny", 64, 10)
    again = TableMeta.from_dict(json.loads(meta.to_json()))
    assert again.to_dict() == meta.to_dict() and again.device == meta.device and again.protocol == meta.protocol
    t = tmp_path / "t.csv"
    meta.write(t)
    d = json.loads(meta_path(t).read_text())
    assert d["format"] == 2 and d["device"] == "local-cpu" and d["device_entry"]["name"] == "local-cpu"
    meta_path(t).write_text(json.dumps({**d, "threads": "one"}))
    with pytest.raises(TableError, match=r"t.meta.json: 'threads' must be a whole number, got 'one'"):
        TableMeta.read(t)
    meta_path(t).write_text(json.dumps({**d, "format": 9}))
    with pytest.raises(TableError, match="format 9, newer than this version reads"):
        TableMeta.read(t)


def test_no_plugin_imports_another():
    plugins = {"onnxruntime", "tflite", "coreml", "tensorrt", "torch"}
    for name in plugins:
        tree = ast.parse((ROOT / "profilers" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not imported & {f"profilers.{p}" for p in plugins - {name}}, name
