"""Files a user hands in never run code; bad input fails with one clear line."""
import os
import pickle

import pytest
import torch

from nas.supernet.checkpoint import CheckpointError, load_checkpoint, load_supernet, safe_load
from nas.export.subnet import load_exported


class _RunsCode:
    """A pickle payload that calls os.system when unpickled (what a hostile checkpoint looks like)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("loader", [load_checkpoint, load_exported, safe_load])
def test_a_checkpoint_that_would_run_code_is_refused_before_it_runs(tmp_path, loader):
    marker = tmp_path / "PWNED"
    bad = tmp_path / "last.pt"
    torch.save({"model": {}, "meta": _RunsCode(marker)}, bad)
    with pytest.raises(CheckpointError, match="never executed") as e:
        loader(bad)
    assert str(bad) in str(e.value)
    assert not marker.exists()                     # nothing ran
    with open(bad, "wb") as f:                     # a plain pickle, not a torch file at all
        pickle.dump(_RunsCode(marker), f)
    with pytest.raises(CheckpointError):
        loader(bad)
    assert not marker.exists()


def test_real_checkpoints_still_load(tiny_supernet):
    ck = load_checkpoint(tiny_supernet)            # optimizer, scheduler, numpy/python/torch RNG states
    assert {"model", "optimizer", "rng", "meta"} <= set(ck)
    net, meta = load_supernet(tiny_supernet)
    assert meta["space_name"] == "tiny" and net.num_classes == 10


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    p = tmp_path / "x.pt"
    p.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable"):
        safe_load(p)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        safe_load(tmp_path / "missing.pt", "checkpoint")


def test_phone_shell_arguments_are_quoted(tmp_path):
    from profilers.adb import AdbBenchmark
    phone = tmp_path / "phone"
    phone.mkdir()
    (phone / "benchmark_model").write_text("#!/bin/sh\necho 'count=50 first=1 curr=1 min=1 max=2 avg=1500 std=10'\n")
    (phone / "benchmark_model").chmod(0o755)
    adb = tmp_path / "adb"                         # an adb stand-in: "adb shell CMD" runs CMD in the phone's sh
    adb.write_text("#!/bin/sh\n"
                   f'cd "{phone}"\n'
                   'if [ "$1" = devices ]; then printf "List of devices attached\\nR5CT1\\tdevice\\n"; exit 0; fi\n'
                   'if [ "$1" = push ]; then cp "$2" "$3"; exit 0; fi\n'
                   'if [ "$1" = shell ]; then shift; sh -c "$*"; exit $?; fi\n')
    adb.chmod(0o755)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    bench = AdbBenchmark(adb=str(adb), benchmark_model=str(phone / "benchmark_model"), workdir="w x;touch PWNED")
    bench.check()
    st, _ = bench.benchmark(model, 1, 1, 5, 1, [])
    assert st.p50_ms == pytest.approx(1.5)
    assert (phone / "w x;touch PWNED").is_dir() and not (phone / "PWNED").exists()


def _s0():
    from nas.space.spaces import DEFAULT_SPACE
    return DEFAULT_SPACE.canonical("s0").to_dict()


@pytest.mark.parametrize("edit, problem", [
    (lambda d: d["blocks"][0][0].update(keep="false"), "'keep' must be true or false"),
    (lambda d: d["blocks"][0][0].update(kepe=True), "unknown key"),
    (lambda d: d.update(width=[1]), "unknown architecture key"),
    (lambda d: d["blocks"][0][0].update(ratio=True), '"ratio" must be a number'),
    (lambda d: d.update(widths=[32.5, 48, 96, 176]), '"widths" must be a list of integers'),
    (lambda d: d["blocks"][0][0].pop("ratio"), '"ratio" is missing'),
])
def test_architecture_parsing_is_strict(edit, problem):
    from nas.space.arch import Arch, ArchError
    d = _s0()
    edit(d)
    with pytest.raises(ArchError, match=problem):
        Arch.from_dict(d)


def test_architectures_outside_the_space_get_no_latency():
    import numpy as np
    from nas.latency.predictor import LatencyPredictor
    from nas.space.arch import Arch, ArchError
    from nas.space.spaces import DEFAULT_SPACE
    pred = LatencyPredictor.from_table("ref-epyc")
    d = _s0()
    for b in d["blocks"][0]:
        b["keep"] = False                                  # a stage with no block kept
    with pytest.raises(ArchError, match="blocks kept"):
        pred.predict(d)
    d = _s0()
    d["blocks"][1].append({"keep": True, "ratio": 4, "attn": False})      # one slot too many
    with pytest.raises(ArchError, match="block slots"):
        pred.predict(d)
    codes = DEFAULT_SPACE.encode([Arch.from_dict(_s0())] * 3)
    ok = pred.predict_many(codes)
    assert (ok > 0).all()
    for col, value in [(0, 7), (0, -1), (DEFAULT_SPACE.encoding_width - 1 - DEFAULT_SPACE.num_slots, 5),
                       (DEFAULT_SPACE.encoding_width - 1, 2), (4 + DEFAULT_SPACE.num_slots, 9)]:
        bad = codes.copy()
        bad[1, col] = value
        with pytest.raises(ArchError, match="encoded row 1"):
            pred.predict_many(bad)
    bad = codes.copy()
    bad[2, 4:4 + DEFAULT_SPACE.max_depths[0]] = 0                         # stage 1 empty
    with pytest.raises(ArchError, match="encoded row 2"):
        pred.predict_many(bad)
    attn_col = 4 + 2 * DEFAULT_SPACE.num_slots                            # attention in stage 1
    bad = codes.copy()
    bad[0, attn_col] = 1
    with pytest.raises(ArchError, match="encoded row 0"):
        pred.predict_many(bad)
    assert np.array_equal(pred.predict_many(codes), ok)


def test_search_cache_survives_a_torn_last_line(tmp_path):
    import pandas as pd
    from nas.search.cache import EvaluationCache
    from nas.space.spaces import TINY_SPACE
    a, b, c = (TINY_SPACE.sample(i) for i in range(3))
    cache = EvaluationCache(tmp_path, {"x": 1})
    cache.add(a, 0.5)
    cache.add(b, 0.25)
    with open(cache.path, "a") as f:                # killed while writing the third row
        f.write('"{""widths"": [16')
    again = EvaluationCache(tmp_path, {"x": 1})
    assert again.known == {a.to_json(): 0.5, b.to_json(): 0.25}
    again.add(c, 0.75)                              # appends on a line of its own
    rows = pd.read_csv(cache.path)
    assert len(rows) == 3 and rows["accuracy"].tolist() == [0.5, 0.25, 0.75]


def test_search_cache_is_keyed_by_the_supernets_content(tmp_path):
    from nas.core.files import file_digest
    p = tmp_path / "last.pt"
    p.write_bytes(b"a" * 1000)
    d1 = file_digest(p)
    p.write_bytes(b"b" * 1000)                      # retrained: same path, same size
    assert file_digest(p) != d1


def test_forgetting_resume_does_not_destroy_a_finished_run(tiny_supernet, capsys):
    from nas.cli.train import main
    ck, metrics = tiny_supernet / "last.pt", tiny_supernet / "metrics.csv"
    before = (ck.read_bytes(), metrics.read_text())
    assert main(["--space", "tiny", "--out", str(tiny_supernet), "--steps", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (ck.read_bytes(), metrics.read_text()) == before


@pytest.mark.parametrize("flag, value", [("--steps", "-1"), ("--batch-size", "0"), ("--ckpt-every", "0"),
                                         ("--lr", "nan"), ("--threads", "0")])
def test_impossible_training_arguments_are_refused_with_a_message(tmp_path, capsys, flag, value):
    from nas.cli.train import main
    with pytest.raises(SystemExit) as e:
        main(["--space", "tiny", "--out", str(tmp_path / "run"), flag, value])
    assert e.value.code == 2 and flag in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_profiler_threads_zero_is_refused(capsys):
    from profilers import get_profiler
    from profilers.cli import main
    with pytest.raises(SystemExit) as e:
        main(get_profiler("onnxruntime"), ["--device", "local-cpu", "--threads", "0"])
    assert e.value.code == 2 and "--threads" in capsys.readouterr().err


@pytest.mark.parametrize("value, problem", [
    ({"p50_ms": -0.4}, "p50_ms"), ({"p50_ms": float("nan")}, "p50_ms"), ({"p50_ms": float("inf")}, "p50_ms"),
    ([float("inf"), 1.0], "finite positive"), ([True, True], "finite positive"),
    ({"p50_ms": 1.0, "p90_ms": -2}, "p90_ms"),
])
def test_core_ml_import_validates_before_it_writes(tmp_path, value, problem):
    import json
    from nas.space.units import space_units
    from nas.space.spaces import TINY_SPACE
    from profilers.coreml_bundle import import_results
    from profilers.table import TableError, read_table
    keys = [u.key for u in space_units(TINY_SPACE, 64, 10)][:2]
    out = tmp_path / "iphone12.coreml.csv"
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"results": {keys[0]: [1.0, 1.1, 1.2]}}))
    import_results(good, "iphone12", out, space="tiny", img_size=64, num_classes=10, bundle=tmp_path)
    before = out.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": {keys[0]: [1.0], keys[1]: value}}, allow_nan=True))
    with pytest.raises(TableError, match=problem):
        import_results(bad, "iphone12", out, space="tiny", img_size=64, num_classes=10, bundle=tmp_path)
    assert out.read_text() == before                 # nothing appended
    read_table(out)                                  # and the table still reads


def test_a_comma_in_a_timestamp_is_quoted_not_a_torn_table(tmp_path):
    import json
    from nas.space.units import space_units
    from nas.space.spaces import TINY_SPACE
    from profilers.coreml_bundle import import_results
    from profilers.table import read_table
    key = space_units(TINY_SPACE, 64, 10)[0].key
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"measured_at": "Nov 29, 2026", "results": {key: [1.0, 1.2, 1.1]}}))
    out = tmp_path / "iphone12.coreml.csv"
    import_results(res, "iphone12", out, space="tiny", img_size=64, num_classes=10, bundle=tmp_path)
    df, _ = read_table(out)
    assert df.loc[key, "measured_at"] == "Nov 29, 2026"


def test_a_table_with_an_infinite_latency_is_refused(tmp_path):
    from profilers.table import COLUMNS, TableError, read_table
    t = tmp_path / "t.csv"
    t.write_text(",".join(COLUMNS) + "\nffn_c16_h32_r16,ffn,16,16,16,1,32,0,0,inf,,,,,,5,1,x\n")
    with pytest.raises(TableError, match="line 2.*finite positive"):
        read_table(t)


def test_two_writers_of_one_table_or_folder_are_refused(tmp_path):
    from nas.core.files import Busy, atomic_write_text, exclusive
    t = tmp_path / "local-cpu.onnxruntime.csv"
    with exclusive(t, "latency table"):
        with pytest.raises(Busy, match="another process is writing latency table"):
            with exclusive(t, "latency table"):
                pass
    with exclusive(t):                                # released: free again
        pass
    d = tmp_path / "search"
    d.mkdir()
    with exclusive(d), pytest.raises(Busy):
        with exclusive(d):
            pass
    atomic_write_text(tmp_path / "a.json", "{}")
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_a_second_profiler_on_the_same_table_exits_with_a_message(tmp_path, capsys):
    from profilers import get_profiler
    from profilers.cli import main
    from nas.core.files import exclusive
    out = tmp_path / "local-cpu.onnxruntime.csv"
    with exclusive(out, "latency table"):             # the first profiler, still running
        code = main(get_profiler("onnxruntime"), ["--device", "local-cpu", "--space", "tiny", "--img-size", "64",
                                                  "--num-classes", "10", "--out", str(out), "--no-progress"])
    assert code == 2 and "another process is writing" in capsys.readouterr().err
    assert not out.exists()


def test_a_truncated_image_is_skipped_with_its_name(tmp_path):
    import numpy as np
    from PIL import Image
    from nas.data.datasets import load_dataset
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for k in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)).save(tmp_path / c / f"{k}.jpg")
    broken = tmp_path / "a" / "broken.jpg"
    broken.write_bytes((tmp_path / "a" / "0.jpg").read_bytes()[:40])      # truncated
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image.*broken\.jpg"):
        ds = load_dataset(str(tmp_path), "train", img_size=32)
    assert len(ds) >= 1


def test_a_table_without_its_metadata_is_refused(tiny_table, tmp_path):
    import shutil
    from nas.latency.predictor import LatencyPredictor
    from profilers.table import TableError
    t = tmp_path / "local-cpu.onnxruntime.csv"
    shutil.copy(tiny_table, t)
    with pytest.raises(TableError, match="no metadata file local-cpu.onnxruntime.meta.json"):
        LatencyPredictor.from_table(t)


@pytest.mark.parametrize("module, args", [
    ("nas.calibrate", ["--target", "nowhere.csv"]),
    ("nas.validate", ["--target", "pixel7"]),
    ("nas.search", ["--target", "pixel7"]),
    ("profilers.onnxruntime", ["--device", "pixel7"]),
])
def test_commands_exit_2_with_one_line_and_debug_shows_the_traceback(module, args):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", module, *args], cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warn" not in ln]
    assert lines and lines[-1].startswith("error: ")
    r = subprocess.run([sys.executable, "-m", module, *args, "--debug"], cwd=root, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_a_fitted_calibration_never_reverses_a_ranking():
    import numpy as np
    from nas.latency.calibration import Calibration
    rng = np.random.default_rng(3)
    for n in (4, 6, 12):                             # few, noisy networks: the case that used to flip the order
        g = rng.uniform(0.5, 20, (n, 3))
        y = g.sum(1) * rng.uniform(0.5, 1.5, n)
        cal = Calibration.fit(g, y)
        assert all(c >= 0 for c in cal.coef)
        a = rng.uniform(0.5, 20, (2000, 3))
        b = a + rng.uniform(0, 5, (2000, 3))          # b has more of every kind of work than a
        assert (cal.apply(b) >= cal.apply(a) - 1e-12).all()


def test_a_folder_is_not_a_table(tmp_path):
    from nas.latency.predictor import LatencyPredictor
    from profilers.table import TableError
    with pytest.raises(TableError):
        LatencyPredictor.from_table(tmp_path)
