"""Fine-grained joint search over a trained slimmable supernet (EfficientFormerV2 §4), with baselines.

    from nas.search import SearchConfig, run_search
    summary = run_search(SearchConfig(target="pixel6", params_budget=3.5, latency_budget=1.0))

:func:`run_search` runs one search (:class:`~nas.search.config.SearchConfig`) and returns its summary. Under
``torchrun`` every process calls it: rank 0 searches, and the accuracy evaluations are shared by all
processes. It puts the rooms of a search in order: its inputs resolved and its outputs claimed
(:mod:`~nas.search.inputs`), the folder's record (:mod:`~nas.search.folder`), the strategies run
(:mod:`~nas.search.running`), the picks compared (:mod:`~nas.search.comparison`), the report
(:mod:`~nas.search.report`), the picks measured end to end (:mod:`~nas.search.measure_picks`) and the pick
exported (:mod:`~nas.search.export_pick`).

Accuracy comes from the supernet at its training resolution and classes (a proxy task); params, latency
and MES are those of the deployed network: the latency table's resolution and classes (224 px, 1000
classes for the shipped tables). Everything a run computes is kept in its output folder: every accuracy
evaluation is appended to a cache as it is made, so a killed search, rerun with the same settings,
replays its finished steps from the cache and goes on where it stopped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path

from nas.core.files import Busy, exclusive
from nas.core.stats import binomial_stderr
from nas.search.base import SearchError
from nas.search.comparison import compare_finally, picks, signal
from nas.search.config import SearchConfig
from nas.search.export_pick import export_pick, save_pick
from nas.search.folder import claim_folder
from nas.search.inputs import (Setup, build_setup, claim_outputs, resolve_supernet, supernet_digest,
                               table_identity, target_names)
from nas.search.measure_picks import measure_picks
from nas.search.report import describe, log_comparisons, log_signal, summary, write_comparison, write_json
from nas.search.running import SearchRun, open_cache, run_strategies, search_budgets

__all__ = ["run_search"]

log = logging.getLogger(__name__)


def run_search(config: SearchConfig) -> dict | None:
    """Run the search ``config`` describes; its summary (also written as ``summary.json``) on rank 0,
    None on the other ranks of a ``torchrun`` group (they evaluate accuracies for rank 0).

    Before any long work (profiling this host's table, training the supernet, searching), rank 0 claims
    its outputs: the results folder (created, probe-written and locked for the whole run), the folder a
    supernet to train goes to and this host's table folder."""
    config = dataclasses.replace(config, supernet=resolve_supernet(config.supernet))
    device, runtime = target_names(config)
    out = Path(config.out_dir or f"runs/search/{device}.{runtime}")
    with contextlib.ExitStack() as held:
        if int(os.environ.get("RANK", "0")) == 0:
            claim_outputs(config, out)
            try:
                held.enter_context(exclusive(out, "search results in", folder=True))
            except Busy as e:
                raise SearchError(f"{e} (--out-dir)") from None
        setup = build_setup(config)
        if setup.rank != 0:
            setup.pool.serve()
            return None
        try:
            return _search(config, setup, out, device, runtime)
        finally:
            setup.pool.close()


def _search(config: SearchConfig, setup: Setup, out: Path, device: str, runtime: str) -> dict:
    """The search on rank 0, in its claimed and locked folder ``out``."""
    space = setup.space
    s0 = space.canonical("s0") if space.fits("s0") else None
    digest = supernet_digest(config.supernet)
    claim_folder(out, {**config.identity(), "supernet_sha256": digest, **table_identity(setup.table)},
                 config.overwrite)
    budgets = search_budgets(config, setup, s0)
    cache = open_cache(config, setup, out, digest)
    try:
        run = SearchRun(config, setup, out, device, runtime, budgets, cache)
        return _run(run, s0)
    finally:
        cache.close()


def _run(run: SearchRun, s0) -> dict:
    config, setup, out = run.config, run.setup, run.out
    pred, cache = setup.pred, run.cache
    if cache.known:
        log.info(f"Resuming: {len(cache.known)} accuracy evaluations cached in {cache.path}")
    log.info(f"Search on {run.device} ({run.runtime}, table {setup.table.path}); supernet {config.supernet} (space "
             f"{setup.space.name}, {setup.meta.get('dataset')} at {setup.net.img_size} px, step "
             f"{setup.meta.get('step')}); accuracy on {setup.evaluator.num_heldout} held-out images; "
             f"{setup.world} process(es)")
    if pred.host_factor is not None:
        log.info(f"Host speed: {pred.host_factor.describe()}")
    log.info("Budgets: " + ", ".join(f"{k} <= {v}" for k, v in run.budgets.items() if v is not None)
             + (f"   (S0: {pred.predict(s0):.3f} ms, {pred.params(s0) / 1e6:.3f} M params)" if s0 else ""))
    reference = None
    if s0 is not None:                     # the hand-designed network at the same budget, for comparison
        reference = run.objective().evaluate(s0)
        log.info(f"reference S0: {describe(reference)}")
    n, stderr = setup.evaluator.num_heldout, setup.evaluator.standard_error
    log.info(f"Each search accuracy is on {n} images: standard error "
             + (f"about {stderr(reference.accuracy) * 100:.2f} points (at S0's accuracy)"
                if reference else f"at most {binomial_stderr(0.5, n) * 100:.2f} points (at 50 %)"))

    outcomes = run_strategies(run)
    chosen = picks(outcomes, reference)
    final = compare_finally(setup.final, setup.pool, chosen, config.seed)
    result = summary(target=run.device, runtime=run.runtime, table=setup.table.path, budgets=run.budgets,
                     supernet=config.supernet, heldout=n,
                     final_heldout=setup.final.num_heldout if setup.final is not None else 0,
                     processes=setup.world, outcomes=outcomes, reference=reference, stderr=stderr, final=final,
                     signal=signal(outcomes, stderr))
    if pred.host_factor is not None:
        result["host_factor"] = pred.host_factor.to_dict()
    log_signal(result["signal"], n)
    if len(outcomes) > 1:
        write_comparison(outcomes, out, run.budgets, run.title, stderr=stderr, final=final,
                         finally_compared=setup.final is not None, plot=config.plot)
    log_comparisons(final.comparisons)
    if config.measure:
        measured = measure_picks(chosen, pred, setup.table, out, run.device, run.runtime, config.measure_threads,
                                 config.progress)
        if measured is not None:
            result["measured_ms"] = measured
    main_pick = next((o.chosen for o in outcomes.values() if o.chosen is not None), None)
    if main_pick is not None:
        result["best_arch"] = str(save_pick(main_pick, out))
        if config.export:
            result["export"] = export_pick(setup.net, main_pick, out / "export", setup.evaluator.calib,
                                           config.formats)
    write_json(result, out / "summary.json", default=str)
    log.info(f"Results in {out}/")
    return result
