"""Fine-grained joint search over a trained slimmable supernet (EfficientFormerV2 §4), with baselines.

    python -m nas.search                                   # paper's loop on local-cpu, S0-latency budget
    python -m nas.search --target pixel6 --params-budget 3.5 --latency-budget 1.0
    python -m nas.search --strategy all                    # paper, NSGA-II and random at equal budget
    torchrun --nproc_per_node 4 -m nas.search ...          # actions evaluated on 4 processes

From the largest subnet, each step enumerates the action pool (A_C shrink a stage width, A_N drop a
block with its attention, A_E lower one FFN expansion ratio), scores each action by its accuracy drop
on held-out data (the trained supernet, BatchNorms recalibrated per subnet) over its MES gain (analytic
params and the target's latency predictor), applies the best and repeats until the budgets hold.

Accuracy comes from the supernet at its training resolution and classes (a proxy task); params, latency
and MES are those of the deployed network: the latency table's resolution and classes (224 px, 1000
classes for the shipped tables). Everything a run computes is kept in ``--out-dir``: every accuracy
evaluation is appended to a cache as it is made, so a killed search, rerun with the same flags, replays
its finished steps from the cache and goes on where it stopped.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.distributed as dist

from nas.supernet.checkpoint import checkpoint_file, checkpoint_space, load_checkpoint, load_supernet
from nas.core.distributed import init_distributed
from nas.core.cli import command
from nas.core.errors import UserError
from nas.space.spaces import Arch
from nas.search.strategies import (PAPER_ACTIONS, Evaluation, Objective, Step, best_under, nsga2_search,
                         paper_search, random_search, within_budget)

__all__ = ["main", "run_search", "DistributedAccuracy", "EvaluationCache"]

log = logging.getLogger(__name__)


class SearchError(UserError):
    """A search that cannot start: no supernet, a table for another space, no budget, a busy folder."""


DEFAULT_SUPERNET = "runs/supernet"
STRATEGIES = ("paper", "nsga2", "random")


# -- spreading accuracy evaluations over processes -----------------------------------------------------
class DistributedAccuracy:
    """``accuracy_many(archs)`` whose work is shared by every process of a torch.distributed group.

    Rank 0 runs the search and calls the object; every other rank calls :meth:`serve`, which waits for
    lists of architectures (broadcast by rank 0), evaluates its share (every ``world``-th one) and
    gathers the results back, until rank 0 calls :meth:`close`. With one process it simply loops.
    ``fns`` maps a name to an accuracy function (e.g. the search's held-out split and a final one);
    ``__call__(archs, which=...)`` picks one.
    """

    def __init__(self, fns: dict[str, Callable[[Arch], float]] | Callable[[Arch], float], progress: bool = True):
        self.fns = fns if isinstance(fns, dict) else {"search": fns}
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.progress = progress

    def _share(self, archs: Sequence[Arch], which: str) -> list[float]:
        fn = self.fns[which]
        mine = range(self.rank, len(archs), self.world)
        it = mine
        if self.progress and self.rank == 0 and len(archs) >= 2 * self.world + 1:
            from tqdm import tqdm
            here = f" ({len(mine)} on this process)" if self.world > 1 else ""
            it = tqdm(mine, desc=f"evaluating {len(archs)} subnets{here}", unit="net", leave=False,
                      file=sys.stderr, dynamic_ncols=True)
        local = {i: float(fn(archs[i])) for i in it}
        if self.world == 1:
            return [local[i] for i in range(len(archs))]
        parts: list = [None] * self.world
        dist.all_gather_object(parts, local)
        merged = {k: v for p in parts for k, v in p.items()}
        return [merged[i] for i in range(len(archs))]

    def __call__(self, archs: Sequence[Arch], which: str = "search") -> list[float]:
        if self.world > 1:
            dist.broadcast_object_list([(which, [a.to_dict() for a in archs])], src=0)
        return self._share(archs, which)

    def serve(self) -> None:
        while True:
            payload = [None]
            dist.broadcast_object_list(payload, src=0)
            if payload[0] is None:
                return
            which, archs = payload[0]
            self._share([Arch.from_dict(d) for d in archs], which)

    def close(self) -> None:
        if self.world > 1 and self.rank == 0:
            dist.broadcast_object_list([None], src=0)


# -- the accuracy cache that makes a search resumable -------------------------------------------------
def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content: a retrained supernet at the same path, even of the same size, is
    another supernet, and its accuracies are not the old ones."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EvaluationCache:
    """Append-only CSV (``arch``, ``accuracy``) of accuracy evaluations made under one set of evaluation
    settings; the file name carries a hash of those settings, so changing any of them starts a new cache."""

    def __init__(self, folder: str | Path, settings: dict):
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        self.path = Path(folder) / f"evaluations-{digest}.csv"
        self.settings = settings
        self.known: dict[str, float] = {}
        if self.path.exists():
            self.known = self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.with_suffix(".json").write_text(json.dumps(settings, indent=1))

    def _read(self) -> dict[str, float]:
        """The cached evaluations; an incomplete last line (a run killed while writing it) is cut off the
        file, so the next append starts on a line of its own."""
        text = self.path.read_text()
        if text and not text.endswith("\n"):
            text = text[:text.rfind("\n") + 1]
            log.warning("%s: dropping an incomplete last line (a run killed while writing it)", self.path)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, self.path)
        known = {}
        for i, row in enumerate(csv.reader(io.StringIO(text))):
            if i == 0 or not row:
                continue
            try:
                acc = float(row[1])
                if len(row) != 2 or not 0.0 <= acc <= 1.0:
                    raise ValueError
                known[Arch.from_json(row[0]).to_json()] = acc
            except (ValueError, IndexError):
                raise SearchError(f"{self.path}, line {i + 1}: not an (arch, accuracy) row; delete the file "
                                 f"to evaluate again") from None
        return known

    def add(self, arch: Arch, accuracy: float) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["arch", "accuracy"])
            w.writerow([arch.to_json(), repr(float(accuracy))])
        self.known[arch.to_json()] = accuracy


# -- outputs --------------------------------------------------------------------------------------------
def _rows(items) -> pd.DataFrame:
    return pd.DataFrame([it.row() for it in items])


def write_trajectory(traj: list[Step], folder: Path, budgets: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    df = _rows(traj)
    df.insert(df.columns.get_loc("params") + 1, "params_m", df["params"] / 1e6)
    df.to_csv(folder / "trajectory.csv", index=False)
    (folder / "trajectory.json").write_text(json.dumps(
        {"budgets": budgets, "steps": [{**s.row(), "arch": s.evaluation.arch.to_dict()} for s in traj]},
        indent=1))


def plot_trajectory(traj: list[Step], path: Path, budgets: dict, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    df = _rows(traj)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    a1.plot(df["latency_ms"], df["accuracy"] * 100, "-o", ms=3, color="tab:blue")
    for i in (0, len(df) - 1):
        a1.annotate("start" if i == 0 else f"step {i}", (df["latency_ms"][i], df["accuracy"][i] * 100),
                    fontsize=8, xytext=(4, 4), textcoords="offset points")
    if budgets.get("latency_ms"):
        a1.axvline(budgets["latency_ms"], color="tab:red", ls="--", lw=0.8, label="latency budget")
        a1.legend(fontsize=8)
    a1.set_xlabel("predicted latency (ms)")
    a1.set_ylabel("held-out accuracy (%)")
    a1.set_title("accuracy vs latency along the search", fontsize=9)
    a2.plot(df["step"], df["mes"], "-o", ms=3, color="tab:green", label="MES")
    a2.set_xlabel("step")
    a2.set_ylabel("MES (log scale)", color="tab:green")
    a2.set_yscale("log")
    a3 = a2.twinx()
    a3.plot(df["step"], df["params"] / 1e6, "-", color="tab:purple", label="params (M)")
    a3.set_ylabel("params (M)", color="tab:purple")
    a2.set_title("MES and params per step", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_comparison(results: dict, path: Path, budgets: dict, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    colors = {"paper": "tab:blue", "nsga2": "tab:orange", "random": "tab:gray"}
    for name, r in results.items():
        evs = r["evaluations"]
        if name == "paper":
            ax.plot([e.latency_ms for e in evs], [e.accuracy * 100 for e in evs], "-o", ms=3,
                    color=colors[name], label="paper (trajectory)")
        else:
            ax.scatter([e.latency_ms for e in evs], [e.accuracy * 100 for e in evs], s=10, alpha=0.6,
                       color=colors[name], label=f"{name} (all evaluated)")
        if r["chosen"] is not None:
            ax.scatter([r["chosen"].latency_ms], [r["chosen"].accuracy * 100], s=90, marker="*",
                       color=colors[name], edgecolor="k", zorder=5)
    if budgets.get("latency_ms"):
        ax.axvline(budgets["latency_ms"], color="tab:red", ls="--", lw=0.8, label="latency budget")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(title + "\n(stars: each strategy's pick within the budgets)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _fmt(ev: Evaluation | None) -> str:
    if ev is None:
        return "nothing within the budgets"
    return (f"acc {ev.accuracy * 100:6.2f}%  latency {ev.latency_ms:7.3f} ms  params {ev.params / 1e6:6.3f} M  "
            f"MES {ev.mes:7.2f}")


# -- the command ------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m nas.search", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--target", default="local-cpu", help="device name (its table in latency_tables/) or a table CSV")
    ap.add_argument("--runtime", help="runtime of the table when the device has several")
    ap.add_argument("--supernet", default=DEFAULT_SUPERNET,
                    help="trained supernet checkpoint (file or run folder); the default one is trained if absent")
    ap.add_argument("--strategy", default="paper", choices=STRATEGIES + ("all",))
    ap.add_argument("--params-budget", type=float, help="millions of parameters (deployed network)")
    ap.add_argument("--latency-budget", type=float,
                    help="ms on the target (default, when no budget is given: S0's predicted latency)")
    ap.add_argument("--actions", default=PAPER_ACTIONS, help="action kinds: C width, N depth, E ratio, A attention")
    ap.add_argument("--reevaluate", default="lazy", choices=("lazy", "all"),
                    help="paper loop: re-evaluate every action each step (all), or lazily in order of the "
                         "last measured score until the best is fresh (lazy)")
    ap.add_argument("--evals", type=int,
                    help="accuracy evaluations for nsga2/random (default: as many as the paper loop used, or 200)")
    ap.add_argument("--storage", help="Optuna storage URL for NSGA-II (share one study between workers)")
    ap.add_argument("--study-name", help="Optuna study name (default derived from target and budgets)")
    ap.add_argument("--heldout", type=int, default=500, help="held-out test images per accuracy evaluation")
    ap.add_argument("--final-heldout", type=int, default=5000,
                    help="other test images on which the picks are finally compared (0: skip)")
    ap.add_argument("--calib-batches", type=int, default=2, help="training batches for BN recalibration")
    ap.add_argument("--batch-size", type=int, default=64, help="calibration batch size")
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--out-dir", help="default runs/search/{device}.{runtime}")
    ap.add_argument("--export", dest="export", action="store_true", default=True,
                    help="export the chosen arch (PyTorch, ONNX, TFLite, Core ML)")
    ap.add_argument("--no-export", dest="export", action="store_false")
    ap.add_argument("--formats", default="pytorch,onnx,tflite,coreml")
    ap.add_argument("--measure", dest="measure", action="store_true", default=True,
                    help="measure the picks end to end on the target's runtime when it can run here")
    ap.add_argument("--no-measure", dest="measure", action="store_false")
    ap.add_argument("--measure-threads", type=int, help="override the device's thread count when measuring")
    ap.add_argument("--allow-foreign-table", action="store_true",
                    help="use a local device's table measured on another host anyway (loud warning); by default "
                         "such a table is an error, and this host's table is measured on first use")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch threads per process (default: cores / processes)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-plot", action="store_true")
    return ap.parse_args(argv)


def _ensure_supernet(path: str) -> None:
    """Train the default supernet when it is asked for and absent (one process only)."""
    if checkpoint_file(path).exists():
        return
    if Path(path) != Path(DEFAULT_SUPERNET):
        raise SearchError(f"no supernet checkpoint at {path}. Train one with: "
                         f"python -m nas.train_supernet --out {path}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SearchError(f"no supernet at {path}. Train it first, e.g. torchrun --nproc_per_node N "
                         f"-m nas.train_supernet --out {path}, then rerun the search")
    print(f"No trained supernet at {path}: training the default one first (python -m nas.train_supernet; "
          f"about half an hour on one CPU core). Interrupt and rerun at any time: it resumes.", flush=True)
    from nas import train_supernet
    if train_supernet.main(["--out", path, "--resume"]) not in (0, None):
        raise SearchError(f"training the default supernet into {path} failed (see above)")


def _supernet_space(path: str):
    """The search space of the supernet at ``path``, or the default space when it is still to be trained."""
    from nas.space.spaces import DEFAULT_SPACE
    ck = checkpoint_file(path)
    if not ck.exists():
        if Path(path) != Path(DEFAULT_SUPERNET):
            raise SearchError(f"no supernet checkpoint at {path}. Train one with: "
                             f"python -m nas.train_supernet --out {path}")
        return DEFAULT_SPACE
    return checkpoint_space(load_checkpoint(path)["meta"])        # the space only: no model is built


def _prepare_table(args: argparse.Namespace, say) -> Path:
    """The target's table path. A ``local`` device's table is this host's: made (profiled and calibrated)
    on first use, and its probe checked against this host otherwise."""
    from profilers.devices import DeviceError, get_device
    from profilers.table import TableError
    from nas.latency.local_tables import ensure_local_table
    from nas.latency.predictor import resolve_table
    allow = args.allow_foreign_table or None
    if Path(args.target).suffix == ".csv" or os.environ.get("EFFV2_TABLES"):
        return resolve_table(args.target, args.runtime)
    try:
        dev = get_device(args.target)
    except DeviceError as e:
        raise TableError(str(e)) from None
    if dev.connection_type != "local":
        return resolve_table(args.target, args.runtime)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:               # N processes do not profile: it must exist
        return resolve_table(args.target, args.runtime)
    return ensure_local_table(dev.name, args.runtime, _supernet_space(args.supernet), progress=not args.no_progress,
                              allow_foreign=allow, say=say)


def run_search(args: argparse.Namespace) -> dict | None:
    from nas.supernet.evaluate import SubnetEvaluator
    from nas.latency.predictor import LatencyPredictor

    say0 = (lambda *a: print(*a, flush=True)) if int(os.environ.get("RANK", "0")) == 0 else (lambda *a: None)
    try:                                    # before any training: a missing table is the first thing to say
        table = _prepare_table(args, say0)
        pred = LatencyPredictor.from_table(table, allow_foreign=args.allow_foreign_table or None)
    except FileNotFoundError as e:
        raise SearchError(str(e)) from None
    _ensure_supernet(args.supernet)
    rank, world, device = init_distributed()
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world))
    say = (lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None)
    net, meta = load_supernet(args.supernet)
    space = net.space
    if space.to_dict() != pred.space.to_dict():
        raise SearchError(f"the supernet searches space {space.name!r} but the table {table} was measured "
                         f"for {pred.space.name!r}; profile the supernet's space with "
                         f"python -m profilers.{pred.meta.get('runtime', '<runtime>')} --device "
                         f"{pred.meta.get('device', args.target)} --space {space.name}")
    missing = pred.missing_keys()
    if missing:
        raise SearchError(f"the table {table} lacks {len(missing)} units of space {space.name!r} "
                         f"(e.g. {missing[0]}); fill them with: {pred._hint()}")
    net.to(device)
    evaluator = SubnetEvaluator.from_dataset(net, meta.get("dataset", "fashion-mnist"), heldout=args.heldout,
                                             calib_batches=args.calib_batches, batch_size=args.batch_size,
                                             seed=args.seed)
    fns = {"search": evaluator.accuracy}
    final = None
    if args.final_heldout:                 # test images disjoint from the search's, to compare the picks on
        try:
            final = SubnetEvaluator.from_dataset(net, meta.get("dataset", "fashion-mnist"),
                                                 heldout=args.final_heldout, heldout_start=evaluator.num_heldout,
                                                 calib_batches=args.calib_batches, batch_size=args.batch_size,
                                                 seed=args.seed)
            fns["final"] = final.accuracy
        except ValueError as e:
            say(f"No final evaluation of the picks: {e}")
    pool = DistributedAccuracy(fns, progress=not args.no_progress)
    if rank != 0:
        pool.serve()
        return None
    try:
        return _search_rank0(args, pred, table, net, meta, evaluator, final, pool, world, say)
    finally:
        pool.close()


def _search_rank0(args, pred, table, net, meta, evaluator, final, pool, world, say) -> dict:
    from nas.core.files import Busy, exclusive
    dev, rt = pred.meta.get("device", args.target), pred.meta.get("runtime", args.runtime)
    out = Path(args.out_dir or f"runs/search/{dev}.{rt}")
    out.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive(out, "search results in"):         # one search per output folder
            return _search_in(args, pred, table, net, meta, evaluator, final, pool, world, say, out, dev, rt)
    except Busy as e:
        raise SearchError(f"{e} (--out-dir)") from None


def _search_in(args, pred, table, net, meta, evaluator, final, pool, world, say, out, dev, rt) -> dict:
    space = net.space
    s0 = space.canonical("s0") if space.fits("s0") else None
    budgets = {"params_m": args.params_budget, "latency_ms": args.latency_budget}
    if budgets["params_m"] is None and budgets["latency_ms"] is None:
        if s0 is None:
            raise SearchError("give --params-budget or --latency-budget (S0 is not in this space)")
        budgets["latency_ms"] = round(float(pred.predict(s0)), 4)
    pb = budgets["params_m"] * 1e6 if budgets["params_m"] else None
    lb = budgets["latency_ms"]
    ck_file = checkpoint_file(args.supernet)
    settings = {"supernet_sha256": file_digest(ck_file), "supernet_step": meta.get("step"), "dataset": meta.get("dataset"),
                "heldout": evaluator.num_heldout, "calib_batches": args.calib_batches,
                "batch_size": args.batch_size, "seed": args.seed}
    cache = EvaluationCache(out, settings)
    if cache.known:
        say(f"Resuming: {len(cache.known)} accuracy evaluations cached in {cache.path}")

    def objective() -> Objective:
        return Objective(None, pred.predict, num_classes=pred.num_classes, img_size=pred.img_size,
                         mes=pred.mes_fn, accuracy_many=pool, known=cache.known, on_evaluated=cache.add)

    say(f"Search on {dev} ({rt}, table {table}); supernet {args.supernet} (space {space.name}, "
        f"{meta.get('dataset')} at {net.img_size} px, step {meta.get('step')}); accuracy on "
        f"{evaluator.num_heldout} held-out images; {world} process(es)")
    say("Budgets: " + ", ".join(f"{k} <= {v}" for k, v in budgets.items() if v is not None)
        + (f"   (S0: {pred.predict(s0):.3f} ms, {pred.params(s0) / 1e6:.3f} M params)" if s0 else ""))

    strategies = STRATEGIES if args.strategy == "all" else (args.strategy,)
    results: dict = {}
    reference = None
    if s0 is not None:                     # the hand-designed network at the same budget, for comparison
        reference = objective().evaluate(s0)
        say(f"reference S0: {_fmt(reference)}")
    if "paper" in strategies:
        obj = objective()
        t0 = time.perf_counter()

        def on_step(st: Step):
            ev = st.evaluation
            prev = results.get("_prev")
            d = f" ({(ev.accuracy - prev) * 100:+.2f})" if prev is not None else ""
            say(f"step {st.step:3d}  {st.action:24s} acc {ev.accuracy * 100:6.2f}%{d:9s} "
                f"lat {ev.latency_ms:7.3f} ms  params {ev.params / 1e6:6.3f} M  MES {ev.mes:7.2f}  "
                f"evals {st.evaluations_so_far} (+{st.evaluated} of {st.candidates})  "
                f"[{time.perf_counter() - t0:5.0f} s]")
            results["_prev"] = ev.accuracy
            traj.append(st)
            write_trajectory(traj, out / "paper", budgets)

        traj: list[Step] = []
        paper_search(obj, space, params_budget=pb, latency_budget=lb, kinds=args.actions,
                     max_steps=args.max_steps, lazy=args.reevaluate == "lazy", batch=world, on_step=on_step)
        results.pop("_prev", None)
        last = traj[-1].evaluation
        ok = within_budget(last, pb, lb)
        if not ok:
            say("warning: no action could raise MES further before the budgets held")
        results["paper"] = {"evaluations": [s.evaluation for s in traj], "chosen": last if ok else None,
                            "n_evals": obj.evaluations, "seconds": time.perf_counter() - t0, "steps": len(traj) - 1}
        if not args.no_plot:
            plot_trajectory(traj, out / "paper" / "trajectory.png", budgets,
                            f"{dev} ({rt}): paper search, {len(traj) - 1} steps")
        say(f"paper:  {_fmt(last)}  after {len(traj) - 1} steps, {obj.evaluations} evaluations, "
            f"{results['paper']['seconds']:.0f} s")
    n_evals = args.evals or (results["paper"]["n_evals"] if "paper" in results else 200)
    for name in ("nsga2", "random"):
        if name not in strategies:
            continue
        obj = objective()
        t0 = time.perf_counter()
        say(f"{name}: {n_evals} accuracy evaluations ...")
        if name == "nsga2":
            evs = nsga2_search(obj, space, n_evals, seed=args.seed, params_budget=pb, latency_budget=lb,
                               storage=args.storage, batch=max(world, 1),
                               study_name=args.study_name or f"search-{dev}-{rt}-{budgets['params_m']}-{lb}")
        else:
            evs = random_search(obj, space, n_evals, seed=args.seed, params_budget=pb, latency_budget=lb)
        chosen = best_under(evs, lb if lb is not None else float("inf"), pb)
        results[name] = {"evaluations": evs, "chosen": chosen, "n_evals": obj.evaluations,
                         "seconds": time.perf_counter() - t0}
        (out / name).mkdir(exist_ok=True)
        _rows(evs).to_csv(out / name / "evaluations.csv", index=False)
        say(f"{name}: {_fmt(chosen)}  ({obj.evaluations} evaluations, {results[name]['seconds']:.0f} s)")

    reference_final = None
    if final is not None:                  # unbiased comparison of the picks on images none was chosen on
        picks = {n: r["chosen"] for n, r in results.items() if r["chosen"] is not None}
        if reference is not None:
            picks["reference_s0"] = reference
        say(f"Final accuracy of the picks on {final.num_heldout} other test images ...")
        accs = pool([e.arch for e in picks.values()], which="final")
        for (n, _), acc in zip(picks.items(), accs):
            say(f"  {'S0 (reference)' if n == 'reference_s0' else n:16s} {acc * 100:6.2f}%")
            if n == "reference_s0":
                reference_final = acc
            else:
                results[n]["final_accuracy"] = acc
    summary = {"target": dev, "runtime": rt, "table": str(table), "budgets": budgets,
               "final_heldout": final.num_heldout if final is not None else 0,
               "reference_s0": ({**reference.row(), "final_accuracy": reference_final}
                                if reference else None),
               "supernet": args.supernet, "heldout": evaluator.num_heldout, "processes": world,
               "strategies": {n: {"n_evals": r["n_evals"], "seconds": round(r["seconds"], 1),
                                  **({"steps": r["steps"]} if "steps" in r else {}),
                                  "chosen": ({**r["chosen"].row(), "final_accuracy": r.get("final_accuracy")}
                                             if r["chosen"] else None)}
                              for n, r in results.items()}}
    if len(results) > 1:
        rows = [{"strategy": n, "evaluations": r["n_evals"], "seconds": round(r["seconds"], 1),
                 **({k: v for k, v in r["chosen"].row().items() if k != "arch"} if r["chosen"] else {}),
                 "final_accuracy": r.get("final_accuracy")}
                for n, r in results.items()]
        pd.DataFrame(rows).to_csv(out / "comparison.csv", index=False)
        if not args.no_plot:
            plot_comparison(results, out / "comparison.png", budgets, f"{dev} ({rt})")
        say("\nstrategy  evaluations  time   pick within the budgets" + ("   (final accuracy)" if final else ""))
        for n, r in results.items():
            fa = f"   ({r['final_accuracy'] * 100:.2f}%)" if r.get("final_accuracy") is not None else ""
            say(f"{n:8s}  {r['n_evals']:11d}  {r['seconds']:4.0f} s  {_fmt(r['chosen'])}{fa}")
    if args.measure:
        _measure_picks(args, pred, dev, rt, out, results, reference, summary, say)
    main_pick = next((results[n]["chosen"] for n in strategies if results[n]["chosen"] is not None), None)
    if main_pick is not None:
        (out / "best_arch.json").write_text(main_pick.arch.to_json(indent=1))
        summary["best_arch"] = str(out / "best_arch.json")
        if args.export:
            from nas.export.subnet import export_subnet
            say(f"Exporting the chosen arch to {out / 'export'} ({args.formats}) ...")
            rep = export_subnet(net, main_pick.arch, out / "export", calib_batches=evaluator.calib,
                                formats=[f.strip() for f in args.formats.split(",") if f.strip()])
            for fmt, e in rep["formats"].items():
                check = (f"max |Δlogit| {e['max_abs_diff']:.2e}" if "max_abs_diff" in e
                         else e.get("note") or e.get("error", ""))
                say(f"  {fmt:8s} {e.get('file', '')}  {check}")
            summary["export"] = rep["formats"]
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    say(f"Results in {out}/")
    return summary


def _measure_picks(args, pred, dev, rt, out, results, reference, summary, say) -> None:
    """Measure the picks (and S0) end to end on the target's runtime, as deployed (the table's resolution
    and classes, random weights: latency does not depend on them), where that runtime can run here."""
    from profilers.base import ProfilerUnavailable
    from nas.latency.measure import make_profiler, measure_archs
    picks = {n: r["chosen"] for n, r in results.items() if r["chosen"] is not None}
    if reference is not None:
        picks["reference_s0"] = reference
    if not picks:
        return
    from nas.latency.tables import is_local
    if not is_local(pred.meta):
        say(f"Picks not measured end to end: {dev} is not this machine, and its latencies are measured there")
        return
    try:
        profiler = make_profiler(dev, rt, args.measure_threads)
        profiler.check_ready()
    except (ProfilerUnavailable, KeyError, ValueError) as e:
        say(f"Picks not measured end to end on {dev} ({rt}): {e}")
        return
    say(f"Measuring the picks end to end on {dev} ({rt}, {pred.img_size} px) ...")
    try:
        rows = measure_archs([e.arch for e in picks.values()], profiler, out / "measured.csv", pred.img_size,
                             pred.num_classes, desc="measuring picks", progress=not args.no_progress,
                             probe_reference=(pred.meta.get("probe") or {}).get("p50_ms"))
    except ProfilerUnavailable as e:
        say(f"Picks not measured end to end on {dev} ({rt}): {e}")
        return
    summary["measured_ms"] = {}
    for (n, ev), ms in zip(picks.items(), rows["p50_ms"]):
        summary["measured_ms"][n] = float(ms)
        say(f"  {'S0 (reference)' if n == 'reference_s0' else n:16s} measured {ms:8.3f} ms   predicted "
            f"{ev.latency_ms:8.3f} ms   ({(ev.latency_ms - ms) / ms * 100:+.1f} %)")


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run_search(args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
