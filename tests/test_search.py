"""`python -m nas.search` end to end on a real (tiny) table and supernet, resume, torchrun, export."""
import importlib.util
import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nas.cli.search import build_parser, config_from_args, main
from nas.core.distributed import local_cores
from nas.export.subnet import export_subnet, load_exported
from nas.latency.predictor import LatencyPredictor
from nas.search import (SearchConfig, SearchError, SearchOutcome, SearchStrategy, base, comparison, inputs,
                        register_strategy, report, run_search, runner)
from nas.search.cache import EvaluationCache
from nas.search.distributed_accuracy import DistributedAccuracy
from nas.search.objective import Evaluation
from nas.search.running import SearchRun
from nas.space.arch import Arch
from nas.space.spaces import TINY_SPACE
from nas.core.files import file_digest
from nas.search.inputs import resolve_supernet
from nas.supernet import shipped
from nas.supernet.checkpoint import checkpoint_file, load_supernet
from nas.supernet.shipped import save_compact, shipped_card
from nas.supernet.evaluate import SubnetEvaluator
from nas.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def _args(table, supernet, out, *extra):
    return ["--target", str(table), "--supernet", str(supernet), "--out-dir", str(out), "--heldout", "96",
            "--calib-batches", "1", "--batch-size", "32", "--final-heldout", "300", "--no-progress", "--threads", "1", *map(str, extra)]


def _budget(table):
    pred = LatencyPredictor.from_table(table)
    return round(0.75 * pred.predict(TINY_SPACE.max_arch()), 4)


def test_evaluation_cache_round_trip(tmp_path):
    a, b = TINY_SPACE.sample(1), TINY_SPACE.sample(2)
    c = EvaluationCache(tmp_path, {"heldout": 10})
    c.add(a, 0.5)
    c.add(b, 0.25)
    again = EvaluationCache(tmp_path, {"heldout": 10})
    assert again.known == {a.to_json(): 0.5, b.to_json(): 0.25}
    assert EvaluationCache(tmp_path, {"heldout": 11}).known == {}          # other settings: another file


def test_distributed_accuracy_in_one_process_keeps_order():
    archs = [TINY_SPACE.sample(i) for i in range(5)]
    pool = DistributedAccuracy(lambda a: sum(a.widths), progress=False)
    assert pool(archs) == [sum(a.widths) for a in archs]


def test_distributed_accuracy_gathers_per_image_vectors():
    archs = [TINY_SPACE.sample(i) for i in range(3)]
    pool = DistributedAccuracy({"search": lambda a: 0.5, "final": lambda a: torch.tensor(a.widths) > 40},
                               progress=False)
    got = pool(archs, which="final")
    assert all(isinstance(v, np.ndarray) and v.dtype == bool for v in got)
    assert [v.tolist() for v in got] == [[w > 40 for w in a.widths] for a in archs]
    assert pool(archs) == [0.5] * 3


def _widths_vector(arch):                       # a per-image vector that says which process made it
    return np.array([w > 40 for w in arch.widths] + [torch.distributed.get_rank() == 1])


def _gather_vectors_in_two_processes(rank, init, out):
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        pool = DistributedAccuracy({"final": _widths_vector}, progress=False)
        if rank == 0:
            got = pool([TINY_SPACE.sample(i) for i in range(5)], which="final")
            pool.close()
            np.save(out, np.stack(got))
        else:
            pool.serve()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_distributed_accuracy_gathers_vectors_across_processes(tmp_path):
    out = tmp_path / "got.npy"
    torch.multiprocessing.spawn(_gather_vectors_in_two_processes, args=(f"file://{tmp_path / 'init'}", str(out)),
                                nprocs=2)
    got = np.load(out)
    archs = [TINY_SPACE.sample(i) for i in range(5)]
    assert got[:, :-1].tolist() == [[w > 40 for w in a.widths] for a in archs]
    assert got[:, -1].tolist() == [False, True, False, True, False]          # every other arch on rank 1


def test_final_comparison_pairs_every_pick_with_s0_and_each_other(tmp_path):
    """Picks and S0 on the same final images: S0 comparisons first, then every pair; a shared pick is
    evaluated once and ties with itself."""
    archs = [TINY_SPACE.sample(i) for i in range(3)]
    rng = np.random.default_rng(0)
    base_ = rng.random(2000) < 0.6
    vectors = {archs[0].to_json(): base_ | (rng.random(2000) < 0.5),                 # clearly better than S0
               archs[1].to_json(): base_.copy()}                                     # S0's twin
    vectors[archs[2].to_json()] = base_                                              # S0
    calls = []

    def final_fn(arch):
        calls.append(arch.to_json())
        return vectors[arch.to_json()]

    class Final:
        num_heldout = 2000

        def standard_error(self, p):
            return math.sqrt(p * (1 - p) / 2000)

    ev = lambda a: Evaluation(a, 0.5, 1.0, 1000, 1.0)
    pool = DistributedAccuracy({"final": final_fn}, progress=False)
    outcomes = {n: SearchOutcome(n, [], ev(archs[i]), 1) for n, i in [("paper", 0), ("nsga2", 1), ("random", 1)]}
    search = comparison.compare_finally(Final(), pool, comparison.picks(outcomes, ev(archs[2])))
    assert sorted(calls) == sorted(vectors)                                          # each distinct arch once
    got = {(c["a"], c["b"]): c for c in search.comparisons}
    assert list(got) == [("paper", "reference_s0"), ("nsga2", "reference_s0"), ("random", "reference_s0"),
                         ("paper", "nsga2"), ("paper", "random"), ("nsga2", "random")]
    assert got["paper", "reference_s0"]["better"] == "paper" and got["paper", "nsga2"]["verdict"] == "a better"
    assert got["nsga2", "reference_s0"]["verdict"] == "tie" and got["nsga2", "reference_s0"]["ci_high"] == 0
    assert got["nsga2", "random"]["diff"] == 0 and got["nsga2", "random"]["better"] is None
    assert search.scores["reference_s0"]["final_accuracy"] == pytest.approx(base_.mean())
    text = report.conclusion(search.comparisons)
    assert text.startswith("paper's pick is more accurate than every other strategy's beyond the noise.")
    assert "Against S0, beyond the noise: better: paper; the others tie." in text
    line = report.describe_comparison(got["nsga2", "reference_s0"])
    assert line == "nsga2 vs S0: +0.00 points [+0.00, +0.00] -> tie"
    assert report.conclusion(search.comparisons[1:3] + search.comparisons[5:]) == (
        "No strategy's pick is more accurate than another's beyond the noise: a tie. No pick differs from S0 "
        "beyond the noise.")


def test_evaluator_per_image_correctness_is_accuracy_image_by_image(tiny_supernet):
    net, meta = load_supernet(tiny_supernet)
    ev = SubnetEvaluator.from_dataset(net, meta["dataset"], heldout=96, calib_batches=1, batch_size=32)
    a, b = TINY_SPACE.max_arch(), TINY_SPACE.min_arch()
    va = ev.correct(a)
    assert va.dtype == bool and va.shape == (ev.num_heldout,) == (96,)
    assert va.mean() == ev.accuracy(a)
    vb = ev.correct(b)
    assert vb.mean() == ev.accuracy(b)
    assert np.array_equal(ev.correct(a), va)                       # same images, same order, every call
    p = float(va.mean())
    assert ev.standard_error(p) == pytest.approx(math.sqrt(p * (1 - p) / 96))


def test_search_all_strategies_then_resume(tiny_table, tiny_supernet, tmp_path, capsys):
    budget = _budget(tiny_table)
    args = _args(tiny_table, tiny_supernet, tmp_path, "--strategy", "all", "--latency-budget", budget,
                 "--formats", "pytorch,onnx")
    assert main(args) == 0
    first = capsys.readouterr().out
    traj = pd.read_csv(tmp_path / "paper" / "trajectory.csv")
    assert traj["step"].tolist() == list(range(len(traj))) and len(traj) >= 2
    assert traj["latency_ms"].iloc[-1] <= budget < traj["latency_ms"].iloc[-2]
    assert (traj["mes"].diff().dropna() > 0).all()                        # every applied action raised MES
    assert traj["action"].iloc[1].startswith("A_")
    steps = json.loads((tmp_path / "paper" / "trajectory.json").read_text())["steps"]
    assert Arch.from_dict(steps[0]["arch"]) == TINY_SPACE.max_arch()
    assert (tmp_path / "paper" / "trajectory.png").stat().st_size > 1000
    comp = pd.read_csv(tmp_path / "comparison.csv").set_index("strategy")
    assert list(comp.index) == ["paper", "nsga2", "random"]
    n = comp.loc["paper", "evaluations"]
    assert comp.loc["nsga2", "evaluations"] == n and comp.loc["random", "evaluations"] == n   # equal budgets
    assert (comp["latency_ms"].dropna() <= budget).all()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final_heldout"] == 300 and summary["heldout"] == 96          # disjoint images
    assert comp["final_accuracy"].between(0, 1).all() and summary["reference_s0"] is None   # no S0 in tiny
    sig = summary["signal"]                        # random subnets within the budget, against the noise
    if n >= 10:
        assert sig["n"] == n and sig["min"] <= sig["p5"] <= sig["median"] <= sig["p95"] <= sig["max"]
        assert sig["spread_in_stderr"] == pytest.approx((sig["p95"] - sig["p5"]) / sig["stderr"])
    else:
        assert sig is None
    measured = pd.read_csv(next(tmp_path.glob("measured-*.csv")))     # picks timed on ONNX Runtime here
    assert set(summary["measured_ms"]) == {"paper", "nsga2", "random"} and (measured["p50_ms"] > 0).all()
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    best = Arch.from_json(tmp_path / "best_arch.json")
    assert best.to_dict() == steps[-1]["arch"]
    rep = json.loads((tmp_path / "export" / "export.json").read_text())["formats"]
    assert rep["pytorch"]["ok"] and rep["onnx"]["ok"] and rep["onnx"]["max_abs_diff"] < 1e-3
    model = load_exported(tmp_path / "export" / "model.pt")
    assert model.num_classes == 10 and model.img_size == 64
    cache = next(tmp_path.glob("evaluations-*.csv"))
    rows = len(pd.read_csv(cache))
    assert rows >= n

    # a rerun with the same flags replays every step from the accuracy cache
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "Resuming" in second and len(pd.read_csv(cache)) == rows
    assert pd.read_csv(tmp_path / "paper" / "trajectory.csv")["action"].tolist() == traj["action"].tolist()
    assert "paper:" in first and "nsga2:" in first

    # the picks compared on the same final images: accuracy ± standard error, paired intervals, verdicts
    assert (comp["final_accuracy_stderr"] - np.sqrt(comp["final_accuracy"] * (1 - comp["final_accuracy"]) / 300)
            ).abs().max() < 1e-9
    assert comp["accuracy_stderr"].notna().all()
    comps = summary["comparisons"]
    assert [(c["a"], c["b"]) for c in comps] == [("paper", "nsga2"), ("paper", "random"), ("nsga2", "random")]
    for c in comps:
        assert c["diff"] == pytest.approx(comp.loc[c["a"], "final_accuracy"] - comp.loc[c["b"], "final_accuracy"])
        assert c["ci_low"] <= c["diff"] <= c["ci_high"] and c["n"] == 300 and c["level"] == 0.95
        tie = c["ci_low"] <= 0 <= c["ci_high"]
        assert c["verdict"] == ("tie" if tie else "a better" if c["ci_low"] > 0 else "b better")
        assert c["better"] == {"tie": None, "a better": c["a"], "b better": c["b"]}[c["verdict"]]
    assert summary["conclusion"] and "standard error" in first
    assert re.search(r"paper vs nsga2: [+-]\d+\.\d\d points \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\] -> ", first)

    # the benchmark's report reads this summary
    spec = importlib.util.spec_from_file_location("search_benchmark", REPO / "benchmarks" / "search.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.report(summary)
    printed = capsys.readouterr().out
    assert "paper vs nsga2:" in printed and summary["conclusion"] in printed


def test_missing_table_and_mismatched_space_fail_clearly(tiny_supernet, tmp_path, capsys):
    def fails(args, pattern):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert re.search(pattern, err) and "Traceback" not in err, err

    fails(["--target", "pixel6", "--supernet", str(tiny_supernet), "--out-dir", str(tmp_path)], "python -m profilers")
    fails(["--target", "ref-epyc", "--runtime", "onnxruntime", "--supernet", str(tiny_supernet),
           "--out-dir", str(tmp_path)], "space 'tiny'")                 # shipped table is for the default space
    fails(["--target", "pixel6", "--supernet", str(tmp_path / "nowhere.pt"), "--out-dir", str(tmp_path)],
          "python -m profilers.tflite --device pixel6")                  # before training
    fails(["--target", "pixel7", "--supernet", str(tiny_supernet), "--out-dir", str(tmp_path)],
          "unknown device 'pixel7'; known devices: .*pixel6")
    fails(["--supernet", str(tmp_path / "nowhere.pt"), "--out-dir", str(tmp_path)], "nas.train_supernet")


@pytest.mark.slow
def test_torchrun_two_processes_take_the_same_steps(tiny_table, tiny_supernet, tmp_path):
    budget = _budget(tiny_table)
    main(_args(tiny_table, tiny_supernet, tmp_path / "one", "--latency-budget", budget, "--no-export",
               "--no-measure", "--reevaluate", "all"))
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun) if torchrun.exists() else "torchrun", "--standalone", "--nproc_per_node", "2",
           "-m", "nas.search", *_args(tiny_table, tiny_supernet, tmp_path / "two", "--latency-budget", budget,
                                      "--no-export", "--no-measure", "--reevaluate", "all")]
    r = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in r.stdout
    one = pd.read_csv(tmp_path / "one" / "paper" / "trajectory.csv")
    two = pd.read_csv(tmp_path / "two" / "paper" / "trajectory.csv")
    assert two["action"].tolist() == one["action"].tolist()
    pd.testing.assert_series_equal(two["accuracy"], one["accuracy"])
    one, two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    final = [d["strategies"]["paper"]["chosen"]["final_accuracy"] for d in (one, two)]
    assert final[0] == final[1] is not None


@pytest.mark.slow
def test_export_all_formats_load_and_match(tiny_supernet, tmp_path):
    net, meta = load_supernet(tiny_supernet)
    arch = TINY_SPACE.sample(3)
    rep = export_subnet(net, arch, tmp_path, calib_batches=[torch.randn(8, 3, 64, 64)])["formats"]
    assert set(rep) == {"pytorch", "onnx", "tflite", "coreml"}
    for fmt in ("pytorch", "onnx", "tflite"):
        assert rep[fmt]["ok"], rep[fmt]
    assert rep["coreml"]["inputs"] == {"input": [1, 3, 64, 64]} and rep["coreml"]["outputs"] == ["output"]
    assert (tmp_path / "model.mlpackage").is_dir() and (tmp_path / "model.tflite").stat().st_size > 10_000


def test_run_search_runs_any_registered_strategy_and_logs_instead_of_printing(tiny_table, tiny_supernet, tmp_path,
                                                                              monkeypatch, caplog, capsys):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    @register_strategy
    class Corners(SearchStrategy):
        name = "corners"

        def run(self, objective, space, budget, evals=None, *, batch=1, on_step=None):
            evs = objective.evaluate_many([space.max_arch(), space.min_arch()][:evals])
            return SearchOutcome(self.name, evs, budget.best(evs), objective.evaluations)

    caplog.set_level(logging.INFO, logger="nas")
    config = SearchConfig(target=str(tiny_table), supernet=str(tiny_supernet), out_dir=str(tmp_path),
                          strategy="corners", evals=2, latency_budget=_budget(tiny_table), heldout=96,
                          calib_batches=1, batch_size=32, final_heldout=0, export=False, measure=False,
                          plot=False, progress=False, threads=1)
    summary = run_search(config)
    assert summary["strategies"]["corners"]["n_evals"] == 2
    assert Arch.from_json(tmp_path / "best_arch.json") == TINY_SPACE.min_arch()
    assert len(pd.read_csv(tmp_path / "corners" / "evaluations.csv")) == 2
    assert "corners: 2 accuracy evaluations ..." in caplog.text and f"Results in {tmp_path}/" in caplog.text
    assert capsys.readouterr().out == ""                            # the library logs; the command shows it


def test_the_default_supernet_is_trained_through_the_library(tiny_table, tmp_path, monkeypatch):
    seen = []

    def launch(fn, config, nproc):
        seen.append((fn, config, nproc))
        raise SearchError("trained")

    monkeypatch.setattr(inputs, "launch", launch)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SearchError, match="trained"):
        run_search(SearchConfig(target=str(tiny_table), supernet="runs/supernet", progress=False))
    assert seen == [(inputs.train, TrainConfig(out="runs/supernet", resume=True, progress=False),
                     min(2, local_cores()))]


def test_a_compact_copy_holds_the_runs_weights_in_half_precision(tiny_supernet, tmp_path):
    out = save_compact(tiny_supernet, tmp_path / "tiny.pt", card={"command": "python -m nas.train_supernet"})
    ck = torch.load(out, weights_only=True)
    assert {v.dtype for v in ck["model"].values() if v.is_floating_point()} == {torch.float16}
    assert "optimizer" not in ck and out.stat().st_size < 0.6 * checkpoint_file(tiny_supernet).stat().st_size
    card = shipped_card(out)
    assert card["command"] == "python -m nas.train_supernet" and card["sha256"] == file_digest(out)
    net, meta = load_supernet(out)
    ref, ref_meta = load_supernet(tiny_supernet)
    assert meta["space"] == ref_meta["space"] and meta["img_size"] == ref_meta["img_size"]
    for (k, a), b in zip(net.state_dict().items(), ref.state_dict().values()):
        assert a.dtype == b.dtype, k                                 # loaded back as float32
        torch.testing.assert_close(a, b.half().to(b.dtype) if b.is_floating_point() else b, rtol=0, atol=0)


def test_the_search_takes_the_users_run_then_the_shipped_supernet(tiny_supernet, tmp_path, monkeypatch):
    import shutil
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(shipped, "SHIPPED_DIR", weights)
    monkeypatch.setattr(inputs, "default_space", lambda: "tiny")
    assert resolve_supernet(None) == "runs/supernet"                  # nothing shipped: it is trained first
    save_compact(tiny_supernet, weights / "tiny.pt", card={"summary": "tiny", "train_minutes": 1})
    assert resolve_supernet(None) == str(weights / "tiny.pt")
    assert resolve_supernet("other/run") == "other/run"               # a named supernet is that one
    shutil.copytree(tiny_supernet, tmp_path / "runs" / "supernet")
    assert resolve_supernet(None) == "runs/supernet"                  # the user's own run comes first



MYSTRATEGY = """
from dataclasses import dataclass

from nas.core.values import POSITIVE_INT
from nas.search.base import SearchOutcome, SearchStrategy, StrategyOptions, option, register_strategy

SEEN = []


@dataclass(frozen=True)
class MyOptions(StrategyOptions):
    knob: int = option(1, POSITIVE_INT, help="how far to turn it", flag="--knob")


@register_strategy
class MyStrategy(SearchStrategy):
    name = "mystrategy"
    Options = MyOptions
    takes = ("seed",)

    def run(self, objective, space, budget, evals=None, *, batch=1, on_step=None):
        SEEN.append((self.options.knob, self.seed))
        evs = objective.evaluate_many([space.min_arch()])
        return SearchOutcome(self.name, evs, budget.best(evs), objective.evaluations)
"""


@pytest.fixture
def mystrategy(tmp_path, monkeypatch):
    """A strategy with an option of its own, registered from a module outside the package."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "my_strategy_plugin.py").write_text(MYSTRATEGY)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "my_strategy_plugin", raising=False)
    module = importlib.import_module("my_strategy_plugin")
    yield module
    sys.modules.pop("my_strategy_plugin", None)


def test_a_new_strategys_option_is_set_from_the_command_line(mystrategy, tiny_table, tiny_supernet, tmp_path,
                                                             capsys):
    out = tmp_path / "out"
    args = _args(tiny_table, tiny_supernet, out, "--strategy", "mystrategy", "--latency-budget", _budget(tiny_table),
                 "--final-heldout", "0", "--no-export", "--no-measure", "--no-plot", "--seed", "5")
    assert main([*args, "--option", "mystrategy.knob=3"]) == 0
    assert mystrategy.SEEN == [(3, 5)]                                  # the option and the search-wide seed
    record = json.loads((out / "run.json").read_text())
    assert record["strategy_options"] == {"mystrategy": {"knob": 3}}   # part of what the folder holds
    assert main([*args, "--knob", "4", "--overwrite"]) == 0             # its shorthand flag, added generically
    assert mystrategy.SEEN[-1] == (4, 5)
    assert main([*args, "--knob", "4", "--option", "mystrategy.knob=6", "--overwrite"]) == 0
    assert mystrategy.SEEN[-1] == (6, 5)                                # the last value given wins
    capsys.readouterr()
    for bad, says in [("mystrategy.knob=0", "argument --option: mystrategy.knob must be at least 1, got 0"),
                      ("mystrategy.knob=x", "argument --option: mystrategy.knob expected a whole number, got 'x'"),
                      ("mystrategy.nob=3", "unknown option 'nob' of search strategy 'mystrategy'; its options: knob"),
                      ("other.knob=3", "unknown search strategy 'other'; known strategies: paper, mystrategy, "
                                       "nsga2, random")]:
        with pytest.raises(SystemExit) as e:
            main([*args, "--option", bad])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and says in err, err
    assert len(mystrategy.SEEN) == 3
    text = build_parser().format_help()
    assert "mystrategy.knob=1" in text and "how far to turn it" in text and "--knob KNOB" in text
    with pytest.raises(SearchError, match="mystrategy.knob must be at least 1, got 0"):
        SearchConfig(strategy="mystrategy", strategy_options={"mystrategy": {"knob": 0}})


def test_every_strategy_option_is_in_the_help_with_its_default():
    text = " ".join(build_parser().format_help().split())
    for shown in ["paper.actions=CNE", "paper.lazy=true", "paper.max_steps=1000", "nsga2.population_size=20",
                  "nsga2.storage", "nsga2.study_name", "random.max_draws=100000", "[--reevaluate lazy|all]",
                  "[--actions]", "[--max-steps]", "[--storage]", "[--study-name]", "--option STRATEGY.OPTION=VALUE"]:
        assert shown in text, shown


def test_population_size_and_draws_are_set_from_the_config_and_the_command_line():
    parse = lambda *a: config_from_args(build_parser().parse_args(list(a)))
    config = parse("--option", "nsga2.population_size=64", "--option", "random.max_draws=500", "--seed", "3",
                   "--reevaluate", "all", "--actions", "CNEA", "--max-steps", "9", "--storage", "sqlite:///s.db")
    assert config.strategy_options == {"nsga2": {"population_size": 64, "storage": "sqlite:///s.db"},
                                       "random": {"max_draws": 500},
                                       "paper": {"lazy": False, "actions": "CNEA", "max_steps": 9}}
    assert config == SearchConfig(seed=3, strategy_options=config.strategy_options)
    run = SearchRun(config, None, Path("out"), "cpu", "onnxruntime", {"params_m": None, "latency_ms": 1.5}, None)
    nsga2, rand, paper = run.strategy("nsga2"), run.strategy("random"), run.strategy("paper")
    assert (nsga2.options.population_size, nsga2.options.storage, nsga2.seed) == (64, "sqlite:///s.db", 3)
    assert nsga2.options.study_name is None and nsga2.search_name == "search-cpu-onnxruntime-None-1.5"
    assert (rand.options.max_draws, rand.seed) == (500, 3)
    assert (paper.options.lazy, paper.options.actions, paper.options.max_steps) == (False, "CNEA", 9)
    defaults = parse()
    assert defaults.strategy_options == {} and defaults.options_of("paper").lazy is True      # lazy by default
    identity = SearchConfig(strategy="all", strategy_options={"nsga2": {"population_size": 64}}).identity()
    assert identity["strategy_options"]["nsga2"] == {"population_size": 64, "storage": None, "study_name": None}
    assert set(identity["strategy_options"]) == {"paper", "nsga2", "random"}
    assert SearchConfig(strategy="paper", strategy_options={"nsga2": {"population_size": 64}}).identity()[
        "strategy_options"] == {"paper": {"actions": "CNE", "lazy": True, "max_steps": 1000}}


def test_the_former_runner_module_still_resolves_its_names():
    with pytest.warns(DeprecationWarning, match="nas.search.runner.run_search is deprecated"):
        assert runner.run_search is run_search
    with pytest.warns(DeprecationWarning):
        assert runner.SearchConfig is SearchConfig and runner.resolve_supernet is resolve_supernet
