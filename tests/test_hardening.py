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
    from profilers.transports.adb import AdbBenchmark
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
    from profilers.plugin.cli import main
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
    from profilers.transports.coreml_bundle import import_results
    from profilers.tables.table import TableError, read_table
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
    from profilers.transports.coreml_bundle import import_results
    from profilers.tables.table import read_table
    key = space_units(TINY_SPACE, 64, 10)[0].key
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"measured_at": "Nov 29, 2026", "results": {key: [1.0, 1.2, 1.1]}}))
    out = tmp_path / "iphone12.coreml.csv"
    import_results(res, "iphone12", out, space="tiny", img_size=64, num_classes=10, bundle=tmp_path)
    df, _ = read_table(out)
    assert df.loc[key, "measured_at"] == "Nov 29, 2026"


def test_a_table_with_an_infinite_latency_is_refused(tmp_path):
    from profilers.tables.table import COLUMNS, TableError, read_table
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
    from profilers.plugin.cli import main
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
    from profilers.tables.table import TableError
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
    from profilers.tables.table import TableError
    with pytest.raises(TableError):
        LatencyPredictor.from_table(tmp_path)


# -- the Guarantees, by mechanism ------------------------------------------------------------------------
def _one_line_error(main, argv, capsys) -> str:
    """Run a command's ``main(argv)``: it must exit 2 with exactly one ``error:`` line on stderr and no
    traceback; returns that line."""
    try:
        code = main(argv)
    except SystemExit as e:                       # a parser error
        code = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err, err
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and errors == [ln for ln in lines if "error" in ln.lower()], err
    return errors[0]


def _commands():
    from nas.cli import calibrate, describe, search, train, validate
    from profilers import get_profiler
    from profilers import coverage, merge
    from profilers.plugin.cli import main as profile
    from profilers.coreml import main as coreml
    return {"search": search.main, "train": train.main, "calibrate": calibrate.main, "validate": validate.main,
            "describe": describe.main, "onnxruntime": lambda a: profile(get_profiler("onnxruntime"), a),
            "coreml": coreml, "merge": merge.main, "coverage": coverage.main}


IMPOSSIBLE = [
    ("search", ["--batch-size", "0"], "--batch-size"), ("search", ["--heldout", "0"], "--heldout"),
    ("search", ["--calib-batches", "0"], "--calib-batches"), ("search", ["--threads", "0"], "--threads"),
    ("search", ["--evals", "0"], "--evals"), ("search", ["--evals", "-5"], "--evals"),
    ("search", ["--latency-budget", "-1"], "--latency-budget"), ("search", ["--latency-budget", "nan"], "--latency-budget"),
    ("search", ["--params-budget", "-1"], "--params-budget"), ("search", ["--max-steps", "-1"], "--max-steps"),
    ("search", ["--final-heldout", "-5"], "--final-heldout"), ("search", ["--actions", "XYZ"], "--actions"),
    ("search", ["--actions", "CC"], "--actions"), ("search", ["--measure-threads", "0"], "--measure-threads"),
    ("search", ["--formats", "onnx,xyz"], "formats"), ("search", ["--seed", "1.5"], "--seed"),
    ("search", ["--target", "pixel7"], "unknown device"), ("search", ["--runtime", "coreml"], "not 'coreml'"),
    ("search", ["--target", "pixel6"], "benchmark_model"), ("search", ["--reevaluate", "some"], "--reevaluate"),
    ("search", ["--option", "nsga2.population_size=1"], "nsga2.population_size"),
    ("search", ["--option", "random.max_drawz=3"], "unknown option 'max_drawz'"),
    ("search", ["--option", "nope.knob=3"], "unknown search strategy 'nope'"),
    ("train", ["--img-size", "33"], "--img-size"), ("train", ["--steps", "-1"], "--steps"),
    ("train", ["--lr", "nan"], "--lr"), ("train", ["--lr", "inf"], "--lr"), ("train", ["--batch-size", "0"], "--batch-size"),
    ("train", ["--threads", "0"], "--threads"), ("train", ["--warmup", "-1"], "--warmup"),
    ("train", ["--randaug", "11"], "--randaug"), ("train", ["--mixup", "-1"], "--mixup"),
    ("train", ["--label-smoothing", "2"], "--label-smoothing"), ("train", ["--min-lr", "-1"], "--min-lr"),
    ("train", ["--precision", "fp8"], "--precision"), ("train", ["--accum-steps", "0"], "--accum-steps"),
    ("onnxruntime", ["--device", "local-cpu", "--max-cv", "nan"], "--max-cv"),
    ("onnxruntime", ["--device", "local-cpu", "--rounds", "0"], "--rounds"),
    ("onnxruntime", ["--device", "local-cpu", "--threads", "0"], "--threads"),
    ("onnxruntime", ["--device", "local-cpu", "--warmup", "-1"], "--warmup"),
    ("onnxruntime", ["--device", "local-cpu", "--runs", "0"], "--runs"),
    ("onnxruntime", ["--device", "local-cpu", "--shard", "3/2"], "--shard"),
    ("onnxruntime", ["--device", "local-cpu", "--cpus", "999"], "--cpus"),
    ("onnxruntime", ["--device", "pixel7"], "unknown device"),
    ("onnxruntime", ["--device", "ref-epyc"], "reference device"),
    ("onnxruntime", ["--device", "local-cpu", "--out", "latency_tables/ref-epyc.onnxruntime.csv"], "shipped"),
    ("validate", ["--repeat", "-1"], "--repeat"), ("validate", ["--n", "0"], "--n"),
    ("validate", ["--tolerance", "0"], "--tolerance"), ("validate", ["--target", "ref-epyc"], "reference device"),
    ("validate", ["--quick", "--target", "ref-epyc"], "reference device"),
    ("calibrate", ["--n", "0"], "--n"), ("calibrate", ["--threads", "0"], "--threads"),
    ("calibrate", ["--target", "ref-epyc", "--n", "1"], "reference device"),
    ("describe", ["--img-size", "33"], "--img-size"), ("describe", ["--num-classes", "0"], "--num-classes"),
    ("describe", ["--latency-ms", "-1"], "--latency-ms"),
    ("coverage", ["--table", "nowhere.csv", "--img-size", "0"], "--img-size"),
    ("merge", ["nowhere.csv", "-o", "x.csv"], "nowhere.csv"),
    ("coreml", ["import", "--device", "iphone12", "nowhere.json"], "nowhere.json"),
]


#: where each command's output goes in the table-driven test (nothing may be made there before a refusal)
OUTPUT = {"search": "--out-dir", "validate": "--out-dir", "calibrate": "--out-dir", "train": "--out",
          "onnxruntime": "--out"}


@pytest.mark.parametrize("command, argv, says", IMPOSSIBLE, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_command_refuses_impossible_values_in_one_line(command, argv, says, tmp_path, monkeypatch, capsys):
    from pathlib import Path
    monkeypatch.chdir(Path(__file__).resolve().parents[1])             # the shipped table paths resolve
    out = tmp_path / "out"
    if command in OUTPUT and "--out" not in argv:
        argv = [*argv, OUTPUT[command], str(out / "t.csv" if command == "onnxruntime" else out)]
    assert says in _one_line_error(_commands()[command], argv, capsys)
    assert not out.exists()                                                # nothing made before the refusal


def test_python_callers_get_the_command_lines_refusals():
    from nas.core.values import ConfigError
    from nas.latency.validation import validate
    from nas.search import SearchConfig, SearchError
    from nas.training import TrainConfig
    from profilers.timing.protocol import Protocol
    for kw in [dict(batch_size=0), dict(heldout=0), dict(evals=0), dict(latency_budget=float("nan")),
               dict(params_budget=-1.0), dict(measure_threads=0), dict(threads=0),
               dict(final_heldout=-5), dict(formats="onnx,xyz")]:
        with pytest.raises(SearchError, match=next(iter(kw))):
            SearchConfig(**kw)
    for options, says in [({"paper": {"actions": "XYZ"}}, "paper.actions"), ({"paper": {"max_steps": True}},
                          "paper.max_steps"), ({"nsga2": {"population_size": 0}}, "nsga2.population_size"),
                          ({"paper": {"seed": 1}}, "unknown option 'seed'"), ({"nope": {}}, "unknown search strategy")]:
        with pytest.raises(SearchError, match=says):                   # the strategies' options moved there
            SearchConfig(strategy_options=options)
    for kw in [dict(img_size=33), dict(lr=float("inf")), dict(steps=0), dict(batch_size=2.5)]:
        with pytest.raises(ConfigError, match=next(iter(kw))):
            TrainConfig(**kw)
    for kw in [dict(max_cv=float("nan")), dict(rounds=0), dict(warmup=-1)]:
        with pytest.raises(ConfigError, match=next(iter(kw))):
            Protocol(**kw)
    with pytest.raises(ConfigError, match="repeat"):
        validate("local-cpu", repeat=-1)
    assert SearchConfig(latency_budget=2).latency_budget == 2.0 and isinstance(SearchConfig(latency_budget=2).latency_budget, float)


def test_shipped_tables_and_calibrations_are_read_only_to_every_writer(tmp_path, capsys):
    from nas.core.files import ReadOnlyError, atomic_write_text, claim_output, exclusive, protect, shipping
    from nas.core.journal import Journal
    from nas.latency.calibration import calibration_path
    from nas.cli.calibrate import main as calibrate
    from profilers.tables.meta import TableMeta
    from profilers.tables.table import TABLES_DIR, TableWriter
    shipped = TABLES_DIR / "ref-epyc.onnxruntime.csv"
    before = {p: p.read_bytes() for p in (shipped, calibration_path(shipped))}
    assert "reference device" in _one_line_error(calibrate, ["--target", "ref-epyc", "--n", "1", "--out-dir",
                                                             str(tmp_path / "cal")], capsys)
    for write in (lambda: atomic_write_text(calibration_path(shipped), "{}"), lambda: TableMeta.read(shipped).write(shipped),
                  lambda: TableWriter(shipped), lambda: claim_output(shipped),
                  lambda: exclusive(shipped).__enter__(), lambda: Journal(TABLES_DIR / "x.csv", ["a"]).open()):
        with pytest.raises(ReadOnlyError, match="shipped with the package"):
            write()
    assert {p: p.read_bytes() for p in before} == before and not (TABLES_DIR / "x.csv").exists()
    root = tmp_path / "shipped"                          # the scripts that ship files write inside shipping()
    protect(root, "test files")
    with pytest.raises(ReadOnlyError):
        atomic_write_text(root / "a.json", "{}")
    with shipping():
        atomic_write_text(root / "a.json", "{}")
    assert (root / "a.json").read_text() == "{}"


def test_training_stops_on_a_non_finite_loss_without_saving_it(tmp_path):
    import torch
    from nas.training import TrainConfig, train
    from nas.training.trainer import TrainingDiverged
    out = tmp_path / "run"
    config = TrainConfig(space="tiny", img_size=32, batch_size=8, train_subset=64, eval_size=16, calib_batches=1,
                         progress=False, threads=1, steps=4, ckpt_every=1, eval_every=0, warmup=0, plot=False,
                         lr=1e30, out=str(out))                       # the first update sends the weights to 1e30
    with pytest.raises(TrainingDiverged, match=r"at step 2: the loss is not finite.*last good checkpoint .*last.pt "
                                               r"\(step 1\)"):
        train(config)
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["step"] == 1 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert len(pd_rows(out / "metrics.csv")) == 1                       # the diverged step is not recorded


def pd_rows(path):
    import pandas as pd
    return pd.read_csv(path)


def test_two_trainings_into_one_folder_and_resuming_with_other_settings_are_refused(tiny_supernet, tmp_path):
    import shutil
    from nas.core.errors import UserError
    from nas.core.files import Busy, exclusive
    from nas.training import TrainConfig, train
    run = tmp_path / "run"
    shutil.copytree(tiny_supernet, run)
    base = dict(space="tiny", img_size=64, batch_size=16, train_subset=800, eval_size=100, calib_batches=1,
                progress=False, threads=1, steps=30, eval_every=0, lr=3e-3, plot=False, out=str(run), resume=True)
    with exclusive(run, "training run", folder=True):               # another training is writing it
        with pytest.raises(Busy, match="another process is writing training run"):
            train(TrainConfig(**base))
    with pytest.raises(UserError, match=r"other settings \(lr 0.003 there, 0.5 now\)"):
        train(TrainConfig(**{**base, "lr": 0.5}))


def test_stale_temporary_files_are_removed_by_the_next_writer(tmp_path):
    from nas.core.files import exclusive
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".last.pt.abc123.tmp", run / ".metrics.csv.x1.tmp"]
    for p in stale:
        p.write_bytes(b"x" * 100)
    keep = run / "last.pt"
    keep.write_bytes(b"ck")
    table = tmp_path / "local-cpu.onnxruntime.csv"
    other = tmp_path / ".local-cpu.tflite.csv.zz.tmp"                   # another table's writer: not ours
    mine = tmp_path / ".local-cpu.onnxruntime.meta.json.q.tmp"
    other.write_text("x"), mine.write_text("x")
    with exclusive(run, folder=True), exclusive(table):
        pass
    assert not any(p.exists() for p in stale + [mine]) and keep.exists() and other.exists()


def test_journals_drop_torn_rows_and_refuse_malformed_ones(tmp_path):
    from nas.core.journal import Journal, JournalError
    from nas.latency.networks import COLUMNS, _record
    j = Journal.keyed(tmp_path, "nets", COLUMNS, {"threads": 1}, what="measured networks", fix="delete it")
    arch = '{"widths": [16, 32, 64, 128], "blocks": [[{"ratio": 4}]]}'
    with j:
        j.append([arch, 2.388, 2.3, 2.5, 2.4, 0.1, 0.01, 30, "2026-12-06T00:00:00", 1.0])
        j.append([arch.replace("16", "24"), 3.1, 3.0, 3.2, 3.1, 0.1, 0.01, 30, "2026-12-06T00:00:00", 1.0])
    whole = j.path.read_text()
    j.path.write_text(whole[:whole.rindex("3.1") + 3])                   # cut after a digit: "3.1" of "3.1,..."
    assert [r[1] for r in j.rows()] == ["2.388"]                        # never read as a latency
    j.path.write_text(whole[:whole.rindex('"widths"') + 5])            # cut inside the quoted arch
    assert [r[1] for r in j.rows()] == ["2.388"]
    with j:                                                             # the next writer cuts it off, appends
        j.append([arch.replace("16", "32"), 4.0, 3.9, 4.1, 4.0, 0.1, 0.01, 30, "t", 1.0])
    assert [r[1] for r in j.rows()] == ["2.388", "4.0"] and j.path.read_text().endswith("\n")
    with open(j.path, "a") as f:
        f.write('"{}",-5,,,,,,,t,1\n')
    with pytest.raises(JournalError, match=r"line 4: not a measured network"):
        [_record(j, i, r) for i, r in enumerate(j.records(), start=2)]
    other = Journal.keyed(tmp_path, "nets", COLUMNS, {"threads": 2})
    assert other.path != j.path and other.rows() == []                   # other settings: another file


def test_measured_networks_are_keyed_by_what_measured_them(tmp_path):
    from nas.latency.networks import measure_archs
    from nas.space.spaces import TINY_SPACE
    from profilers import get_profiler
    from profilers.timing.protocol import Protocol
    FAST = dict(warmup=1, warmup_s=0.0, rounds=3, round_s=0.002, min_runs=3, max_runs=5, retries=0)
    archs = [TINY_SPACE.min_arch()]

    def measure(threads, table):
        prof = get_profiler("onnxruntime")("local-cpu", threads=threads, protocol=Protocol(**FAST))
        return measure_archs(archs, prof, tmp_path, "nets", 32, 10, table=table, progress=False)

    a = measure(1, {"path": "t1"})
    assert len(list(tmp_path.glob("nets-*.csv"))) == 1
    assert measure(1, {"path": "t1"})["measured_at"].tolist() == a["measured_at"].tolist()   # resumed: replayed
    measure(2, {"path": "t1"})                                          # other threads: measured again
    measure(1, {"path": "t2"})                                          # another table: measured again
    files = sorted(tmp_path.glob("nets-*.csv"))
    assert len(files) == 3 and all(len(f.read_text().splitlines()) == 2 for f in files)


def test_a_search_folder_holds_one_search(tiny_table, tiny_supernet, tmp_path, caplog):
    import logging
    from nas.search import SearchConfig, SearchError, run_search
    caplog.set_level(logging.INFO, logger="nas")
    c = SearchConfig(target=str(tiny_table), supernet=str(tiny_supernet), out_dir=str(tmp_path), strategy="random",
                     evals=2, params_budget=100.0, heldout=64, calib_batches=1, batch_size=32, final_heldout=0,
                     export=False, measure=False, plot=False, progress=False, threads=1)
    run_search(c)
    record = (tmp_path / "run.json").read_text()
    run_search(c)                                                       # the same search again: resumed
    assert "Resuming" in caplog.text and (tmp_path / "run.json").read_text() == record
    import dataclasses
    other = dataclasses.replace(c, seed=1)
    with pytest.raises(SearchError, match=r"holds the results of another search \(seed: 0 there, 1 now\).*--overwrite"):
        run_search(other)
    assert (tmp_path / "run.json").read_text() == record
    (tmp_path / "random" / "stale.txt").write_text("old")
    run_search(dataclasses.replace(other, overwrite=True))
    assert '"seed": 1' in (tmp_path / "run.json").read_text() and not (tmp_path / "random" / "stale.txt").exists()


def test_a_local_table_given_by_path_or_folder_is_probed_too(tiny_table, tiny_supernet, tmp_path, monkeypatch,
                                                            capsys):
    import shutil
    from nas.cli.search import main
    from conftest import meta_json as read_meta, write_meta_json as write_meta
    from profilers.tables.table import meta_path
    monkeypatch.delenv("EFFV2_ALLOW_FOREIGN_TABLE", raising=False)
    t = tmp_path / "tables" / tiny_table.name
    t.parent.mkdir()
    shutil.copy(tiny_table, t)
    shutil.copy(meta_path(tiny_table), meta_path(t))
    meta = read_meta(t)
    meta["probe"]["p50_ms"] = {k: v / 30 for k, v in meta["probe"]["p50_ms"].items()}     # another machine
    write_meta(t, meta)
    args = ["--supernet", str(tiny_supernet), "--out-dir", str(tmp_path / "s"), "--no-progress"]
    assert "does not describe this host" in _one_line_error(main, ["--target", str(t), *args], capsys)
    monkeypatch.setenv("EFFV2_TABLES", str(t.parent))
    assert "probe" in _one_line_error(main, ["--target", "local-cpu", *args], capsys)


def test_outputs_that_cannot_be_written_are_said_before_any_work(tmp_path, capsys):
    from nas.cli.search import main as search
    from nas.cli.train import main as train
    from profilers import get_profiler
    from profilers.plugin.cli import main as profile
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = _one_line_error(search, ["--target", "ref-epyc", "--out-dir", str(blocker / "out")], capsys)
    assert line.startswith(f"error: cannot write {blocker / 'out'}: a file is in the way")
    assert "cannot write /proc/run" in _one_line_error(train, ["--out", "/proc/run"], capsys)
    line = _one_line_error(lambda a: profile(get_profiler("onnxruntime"), a),
                           ["--device", "local-cpu", "--out", "/proc/t.csv"], capsys)
    assert "cannot write /proc/t.csv" in line and "another process" not in line
    assert "it is a folder" in _one_line_error(lambda a: profile(get_profiler("onnxruntime"), a),
                                               ["--device", "local-cpu", "--out", str(tmp_path)], capsys)


@pytest.mark.parametrize("kind", ["folder", "binary", "wrong types"])
def test_every_reader_names_the_file_it_cannot_read(tmp_path, kind):
    from nas.core.errors import UserError
    from nas.latency.calibration import load_calibration
    from nas.search.cache import EvaluationCache
    from nas.space.spaces import get_space
    from nas.training.trainer import _read_csv
    from profilers.transports.coreml_bundle import import_results
    from profilers.tables.meta import TableMeta
    from profilers.tables.table import read_table
    wrong = {"x.calibration.json": '{"format": 2, "model": "scale", "coef": "x", "band": [1]}',
             "t.meta.json": '{"device": 5, "probe": "fast"}', "t.csv": '{"units": 5}\n',
             "metrics.csv": "step,loss_max\nx,1\n", "space.json": '{"name": "s", "widths": "x", "max_depths": [1]}',
             "manifest.json": '{"units": 5}'}

    def make(name):
        p = tmp_path / kind.replace(" ", "_") / name
        p.parent.mkdir(exist_ok=True)
        if kind == "folder":
            p.mkdir()
        else:
            p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00" if kind == "binary" else wrong[name].encode())
        return p

    readers = {
        "x.calibration.json": load_calibration,
        "t.meta.json": lambda p: TableMeta.read(p.with_name("t.csv")),
        "t.csv": read_table,
        "metrics.csv": _read_csv,
        "space.json": get_space,
        "manifest.json": lambda p: import_results(tmp_path / "r.json", "iphone12", tmp_path / "o.csv", bundle=p.parent),
    }
    (tmp_path / "r.json").write_text('{"results": {}}')
    for name, read in readers.items():
        p = make(name)
        with pytest.raises(UserError) as e:
            read(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
    cache_dir = tmp_path / "cache"
    cache = EvaluationCache(cache_dir, {"x": 1})
    cache.close()
    cache.path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00" if kind == "binary" else b"arch,accuracy\n{},2\n")
    with pytest.raises(UserError, match=str(cache.path)):
        EvaluationCache(cache_dir, {"x": 1})


def test_one_networks_weights_given_as_a_supernet_say_to_use_init_from(tmp_path, capsys):
    import torch
    from models import create_model
    from nas.cli.search import main
    from nas.supernet.checkpoint import CheckpointError, load_supernet
    w = tmp_path / "eformer_s0.pt"
    torch.save(create_model("s0", img_size=64, num_classes=10).state_dict(), w)
    with pytest.raises(CheckpointError, match="one network's weights.*--init-from"):
        load_supernet(w)
    line = _one_line_error(main, ["--target", "ref-epyc", "--supernet", str(w), "--out-dir", str(tmp_path / "o")],
                           capsys)
    assert "--init-from" in line


def test_a_symlink_loop_lists_each_image_once(tmp_path):
    import numpy as np
    from PIL import Image
    from nas.data.datasets import image_files
    from nas.data.folder import scan_folder
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / c / "0.png")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")               # a folder that contains itself
    (tmp_path / "a" / "again").symlink_to(tmp_path / "b")              # and another class's folder
    assert image_files(tmp_path / "a") == ["0.png", "again/0.png"]
    assert len(scan_folder(str(tmp_path), "train")) + len(scan_folder(str(tmp_path), "test")) == 3


def test_core_ml_import_checks_every_result_and_holds_the_tables_lock(tmp_path):
    import json
    from nas.core.files import Busy, exclusive
    from nas.space.spaces import TINY_SPACE
    from nas.space.units import space_units
    from profilers.transports.coreml_bundle import import_results
    from profilers.tables.table import TableError
    key = space_units(TINY_SPACE, 64, 10)[0].key
    out = tmp_path / "iphone12.coreml.csv"
    kw = dict(space="tiny", img_size=64, num_classes=10, bundle=tmp_path)
    csv_runs = tmp_path / "runs.csv"
    csv_runs.write_text(f"key,ms\n{key},1.0\n{key},-5\n{key},1.1\n")
    for res, problem in [(csv_runs, "finite positive per-run"),
                         ({key: {"p50_ms": 1.0, "p10_ms": 1.2, "p90_ms": 0.9, "n": 10}}, "out of order"),
                         ({key: {"p50_ms": 1.0, "n": 2.5}}, "whole number")]:
        if isinstance(res, dict):
            p = tmp_path / "r.json"
            p.write_text(json.dumps({"results": res}))
            res = p
        with pytest.raises(TableError, match=problem):
            import_results(res, "iphone12", out, **kw)
        assert not out.exists()
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"results": {key: [1.0, 1.1, 1.2]}}))
    with exclusive(out, "latency table"), pytest.raises(Busy):
        import_results(good, "iphone12", out, **kw)
    assert import_results(good, "iphone12", out, **kw)["added"] == 1


def test_merge_refuses_tables_of_two_machines(tiny_table, tmp_path):
    import shutil
    from conftest import meta_json as read_meta, write_meta_json as write_meta
    from profilers.tables.table import TableError, meta_path, merge_tables
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for t in (a, b):
        shutil.copy(tiny_table, t)
        shutil.copy(meta_path(tiny_table), meta_path(t))
    merge_tables([a, b], tmp_path / "ab.csv")                           # one machine: fine
    meta = read_meta(b)
    meta["host"] = {**meta["host"], "model": 12345}
    write_meta(b, meta)
    with pytest.raises(TableError, match="measured on different machines"):
        merge_tables([a, b], tmp_path / "ab2.csv")
    assert not (tmp_path / "ab2.csv").exists()


def test_warnings_under_a_command_are_one_line_each_said_once(capsys):
    import warnings
    from nas.core.logs import console
    with console():
        for _ in range(3):
            warnings.warn("USING ANOTHER MACHINE'S TABLE ON PURPOSE: x", UserWarning)
    err = capsys.readouterr().err
    assert err.splitlines() == ["warning: USING ANOTHER MACHINE'S TABLE ON PURPOSE: x"]


def test_a_device_without_a_table_says_what_it_needs_and_how_to_search_without_it():
    from profilers.tables.table import TableError, locate as resolve_table
    for device, needs in [("pixel6", "benchmark_model"), ("iphone12", "profilers.coreml import")]:
        with pytest.raises(TableError) as e:
            resolve_table(device)
        assert needs in str(e.value) and "--target local-cpu" in str(e.value) and "--target ref-epyc" in str(e.value)
