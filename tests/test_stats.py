"""Standard errors and the paired bootstrap the search's final comparison reports."""
import math

import numpy as np
import pytest

from nas.core.stats import (A_BETTER, B_BETTER, TIE, binomial_stderr, paired_bootstrap, paired_stderr,
                            verdict)


def _pair(n, p=0.77, disagree=0.2, shift=0.0, seed=0):
    """Two correctness vectors over the same n images that agree except on a random ``disagree``
    fraction, where b is redrawn (at ``p - shift``)."""
    rng = np.random.default_rng(seed)
    a = rng.random(n) < p
    redraw = rng.random(n) < disagree
    b = np.where(redraw, rng.random(n) < p - shift, a)
    return a, b


def test_binomial_stderr():
    assert binomial_stderr(0.77, 5000) == pytest.approx(0.00595, abs=1e-5)       # 0.6 points, as in the README
    assert binomial_stderr(0.0, 10) == 0 and binomial_stderr(1.0, 10) == 0
    with pytest.raises(ValueError):
        binomial_stderr(0.5, 0)


def test_identical_vectors_tie_with_a_zero_interval():
    a, _ = _pair(1000)
    c = paired_bootstrap(a, a.copy())
    assert (c.diff, c.ci_low, c.ci_high, c.stderr) == (0, 0, 0, 0) and c.verdict == TIE
    assert c.to_dict()["verdict"] == "tie" and c.n == 1000


def test_a_clearly_better_vector_wins_either_way_round():
    a, b = _pair(2000, disagree=0.5, shift=0.3)
    ab, ba = paired_bootstrap(a, b), paired_bootstrap(b, a)
    assert ab.diff > 0.1 and ab.ci_low > 0 and ab.verdict == A_BETTER
    assert ba.diff == pytest.approx(-ab.diff) and ba.ci_high < 0 and ba.verdict == B_BETTER


def test_deterministic_given_the_seed():
    a, b = _pair(800, shift=0.05)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert paired_bootstrap(a, b, seed=3).stderr != paired_bootstrap(a, b, seed=4).stderr


def test_interval_width_shrinks_as_one_over_sqrt_n():
    def width(n):
        a, b = _pair(n, shift=0.05, seed=n)
        c = paired_bootstrap(a, b, n_boot=4000)
        return c.ci_high - c.ci_low

    ratio = width(400) / width(6400)                     # 16 times the images: a quarter of the width
    assert 3.0 < ratio < 5.3


def test_bootstrap_stderr_agrees_with_the_analytic_paired_one():
    for seed, n in [(0, 300), (1, 3000), (2, 20000)]:
        a, b = _pair(n, shift=0.1, seed=seed)
        c = paired_bootstrap(a, b, n_boot=5000, seed=seed)
        analytic = paired_stderr(a, b)
        assert 0.8 < c.stderr / analytic < 1.25
        # pairing matters: the unpaired error (as if the images differed) is far larger here
        unpaired = math.sqrt(binomial_stderr(a.mean(), n) ** 2 + binomial_stderr(b.mean(), n) ** 2)
        assert analytic < 0.7 * unpaired


def test_interval_is_the_percentile_interval_of_resampled_indices():
    """The multinomial shortcut draws the same distribution as resampling image indices."""
    a, b = _pair(500, shift=0.05, seed=7)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 500, size=(4000, 500))
    direct = a[idx].mean(1) - b[idx].mean(1)
    lo, hi = np.quantile(direct, [0.025, 0.975])
    c = paired_bootstrap(a, b, n_boot=4000)
    assert c.ci_low == pytest.approx(lo, abs=0.004) and c.ci_high == pytest.approx(hi, abs=0.004)
    assert c.stderr == pytest.approx(direct.std(), rel=0.1)


def test_verdict_and_bad_input():
    assert verdict(0.001, 0.02) == A_BETTER and verdict(-0.02, -0.001) == B_BETTER
    assert verdict(-0.01, 0.01) == TIE and verdict(0.0, 0.01) == TIE
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap([1, 0], [0, 1], level=1.5)
