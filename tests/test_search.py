"""`python -m nas.search` end to end on a real (tiny) table and supernet, resume, torchrun, export."""
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from nas.cli.search import main
from nas.export.subnet import export_subnet, load_exported
from nas.latency.predictor import LatencyPredictor
from nas.search import (SearchConfig, SearchError, SearchOutcome, SearchStrategy, base, register_strategy,
                        run_search, runner)
from nas.search.cache import EvaluationCache
from nas.search.evaluator import DistributedAccuracy
from nas.space.arch import Arch
from nas.space.spaces import TINY_SPACE
from nas.supernet.checkpoint import load_supernet
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
    measured = pd.read_csv(tmp_path / "measured.csv")                 # picks timed on ONNX Runtime here
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

    def train(config):
        seen.append(config)
        raise SearchError("trained")

    monkeypatch.setattr(runner, "train", train)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SearchError, match="trained"):
        run_search(SearchConfig(target=str(tiny_table), progress=False))
    assert seen == [TrainConfig(out="runs/supernet", resume=True, progress=False)]
