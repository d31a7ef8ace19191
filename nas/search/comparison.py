"""The picks compared without the bias of their choice: their accuracy on test images none was chosen on,
each with its standard error, and paired bootstrap intervals of their differences; and the signal a
search acts on (how far apart random subnets within the budget are, against the noise of one evaluation).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from nas.core.stats import A_BETTER, B_BETTER, paired_bootstrap
from nas.search.base import SearchOutcome, strategy_class
from nas.search.distributed_accuracy import DistributedAccuracy
from nas.search.objective import Evaluation
from nas.supernet.evaluate import SubnetEvaluator

__all__ = ["REFERENCE", "BOOTSTRAP_RESAMPLES", "CONFIDENCE", "FinalComparison", "picks", "compare_finally",
           "signal"]

log = logging.getLogger(__name__)

#: how the hand-designed S0, evaluated beside the strategies' picks, is named among them
REFERENCE = "reference_s0"
BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass
class FinalComparison:
    """``scores``: each pick's final accuracy and its standard error, by name; ``comparisons``: the paired
    bootstrap comparisons (``a``, ``b``, the difference and its interval, the verdict, ``better``)."""
    scores: dict[str, dict] = field(default_factory=dict)
    comparisons: list[dict] = field(default_factory=list)

    def fields(self, name: str) -> dict:
        """The final accuracy and standard error of pick ``name`` (None for both when it has none)."""
        return self.scores.get(name, {"final_accuracy": None, "final_accuracy_stderr": None})


def picks(outcomes: Mapping[str, SearchOutcome], reference: Evaluation | None) -> dict[str, Evaluation]:
    """Every strategy's pick by name, then S0's (:data:`REFERENCE`) when it was evaluated."""
    out = {n: o.chosen for n, o in outcomes.items() if o.chosen is not None}
    if reference is not None:
        out[REFERENCE] = reference
    return out


def compare_finally(final: SubnetEvaluator | None, pool: DistributedAccuracy, chosen: Mapping[str, Evaluation],
                    seed: int = 0) -> FinalComparison:
    """The picks' (and S0's) accuracy on the ``final`` test images (an unbiased comparison: none was chosen
    on them), computed by ``pool`` (its ``"final"`` function: which images each gets right), each with its
    standard error, and paired bootstrap intervals of their differences over those same images: every
    strategy's pick against S0's, then every pair of strategies. Empty without final images or picks."""
    result = FinalComparison()
    if final is None or not chosen:
        return result
    n = final.num_heldout
    log.info(f"Final accuracy of the picks on {n} other test images (± one standard error) ...")
    distinct = {e.arch.to_json(): e.arch for e in chosen.values()}         # a shared pick is evaluated once
    vectors = dict(zip(distinct, pool(list(distinct.values()), which="final")))
    correct = {name: vectors[e.arch.to_json()] for name, e in chosen.items()}
    for name, v in correct.items():
        acc = float(np.mean(v))
        se = final.standard_error(acc)
        result.scores[name] = {"final_accuracy": acc, "final_accuracy_stderr": se}
        shown = "S0 (reference)" if name == REFERENCE else name
        log.info(f"  {shown:16s} {acc * 100:6.2f}% ± {se * 100:.2f}")
    names = [m for m in chosen if m != REFERENCE]
    pairs = [(m, REFERENCE) for m in names if REFERENCE in chosen]
    pairs += [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    for a, b in pairs:
        c = paired_bootstrap(correct[a], correct[b], n_boot=BOOTSTRAP_RESAMPLES, seed=seed, level=CONFIDENCE)
        better = {A_BETTER: a, B_BETTER: b}.get(c.verdict)
        result.comparisons.append({"a": a, "b": b, **c.to_dict(), "better": better})
    return result


def signal(outcomes: Mapping[str, SearchOutcome], stderr: Callable[[float], float]) -> dict | None:
    """How far apart the subnets within the budget are against the noise of one evaluation: the 5th to 95th
    percentile range of the accuracies measured by the first strategy that samples random subnets within
    the budget (``samples_within_budget``), in points and in standard errors (``stderr``) at their median.
    None without such a strategy or at least 10 of its evaluations."""
    o = next((o for n, o in outcomes.items() if strategy_class(n).samples_within_budget), None)
    if o is None or len(o.evaluations) < 10:
        return None
    acc = np.array([e.accuracy for e in o.evaluations])
    p5, p50, p95 = (float(v) for v in np.percentile(acc, [5, 50, 95]))
    se = stderr(p50)
    return {"n": len(acc), "min": float(acc.min()), "p5": p5, "median": p50, "p95": p95, "max": float(acc.max()),
            "spread": p95 - p5, "stderr": se, "spread_in_stderr": (p95 - p5) / se if se else None}
