"""The statistical building blocks against direct scipy computations and hand-computed examples."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from engine.analysis.bootstrap import bootstrap_means, mean_ci, rng_for
from engine.analysis.correction import adjust, bonferroni, holm
from engine.analysis.correlation import spearman
from engine.analysis.paired import rank_biserial, signed_rank
from engine.analysis.summary import pooling_weights
from engine.errors import ConfigError


def _scipy_wilcoxon(d: np.ndarray, **kw: object) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about ties/zeros with the exact method
        return float(stats.wilcoxon(d, zero_method="wilcox", **kw).pvalue)


# --- Wilcoxon signed-rank ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 5, 9, 13, 20, 35, 50])
def test_signed_rank_equals_scipy_exact_without_ties(n: int) -> None:
    rng = np.random.default_rng(n)
    for shift in (0.0, 0.4):
        d = rng.normal(shift, 1.0, n)
        res = signed_rank(d)
        direct = stats.wilcoxon(d, zero_method="wilcox")
        assert res.p_value == pytest.approx(direct.pvalue, rel=1e-9, abs=1e-12)
        assert res.statistic == pytest.approx(direct.statistic)


def test_signed_rank_equals_scipy_permutation_with_ties_and_zeros() -> None:
    rng = np.random.default_rng(7)
    cases = [rng.integers(-3, 4, int(rng.integers(2, 10))) / 4 for _ in range(40)]  # ties and zeros
    cases.append(np.array([0.25, 0.25, -0.25, 0.5, 0.5, 0.5, 0, 0.75, -0.5, 0.25, 0.25, 1.0, 0.5]))  # 12 ≠ 0
    checked = 0
    for d in cases:
        if np.count_nonzero(d) == 0:
            continue
        # scipy's 'auto' runs an exhaustive sign-flip permutation for ≤ 13 pairs with ties
        assert signed_rank(d).p_value == pytest.approx(_scipy_wilcoxon(d), rel=1e-9, abs=1e-12)
        checked += 1
    assert checked > 30


def test_signed_rank_large_n_equals_scipy_asymptotic() -> None:
    d = np.random.default_rng(3).integers(-4, 5, 120) / 4 + 0.05
    assert signed_rank(d).p_value == pytest.approx(_scipy_wilcoxon(d, method="asymptotic"), rel=1e-9)


def test_signed_rank_exact_with_ties_close_to_scipy_normal_approximation() -> None:
    """14–50 pairs with ties: ours is exact, scipy's is the normal approximation; they agree closely."""
    rng = np.random.default_rng(11)
    for n in (20, 35, 50):
        d = rng.integers(-3, 5, n) / 4
        assert abs(signed_rank(d).p_value - _scipy_wilcoxon(d, method="asymptotic")) < 0.02


def test_all_zero_differences_give_p_one() -> None:
    res = signed_rank(np.zeros(12))
    assert (res.p_value, res.statistic, res.rank_biserial, res.n, res.n_nonzero) == (1.0, 0.0, 0.0, 12, 0)


def test_zero_differences_are_dropped_wilcox_method() -> None:
    d = np.array([0.0, 0.0, 0.3, 0.5, -0.1, 0.7, 0.2, 0.0])
    res = signed_rank(d)
    assert res.p_value == pytest.approx(_scipy_wilcoxon(d))
    assert res.p_value == pytest.approx(signed_rank(d[d != 0]).p_value)
    assert (res.n, res.n_nonzero) == (8, 5)


def test_rank_biserial_hand_example() -> None:
    # |d| ranks 1, 2, 3; R+ = 1 + 3 = 4, R- = 2 -> r = (4 - 2) / 6
    assert rank_biserial(np.array([1.0, -2.0, 3.0, 0.0])) == pytest.approx(1 / 3)
    assert rank_biserial(np.array([0.5, 0.2, 0.1])) == 1.0
    assert rank_biserial(np.array([-0.5, -0.2])) == -1.0
    assert rank_biserial(np.zeros(4)) == 0.0


def test_rank_biserial_matches_w_formula_without_ties() -> None:
    d = np.random.default_rng(5).normal(0.3, 1, 25)
    ranks = stats.rankdata(np.abs(d))
    w_plus = ranks[d > 0].sum()
    assert rank_biserial(d) == pytest.approx(4 * w_plus / (d.size * (d.size + 1)) - 1)


# --- Holm / Bonferroni ------------------------------------------------------------------------------------

def test_holm_hand_computation() -> None:
    # sorted: 0.005*4 = 0.02; 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([0.02]) == pytest.approx([0.02])
    out = holm([0.01, np.nan, 0.04])  # NaN is not a test: m = 2
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([]).size == 0


def test_holm_rejections_hand_example_at_alpha_005() -> None:
    p = [0.010, 0.013, 0.014, 0.190, 0.350, 0.500, 0.630, 0.670, 0.750, 0.810]
    # thresholds 0.05/10 = 0.005, ... : p(1) = 0.010 > 0.005 -> nothing rejected
    assert not np.any(holm(p) <= 0.05)
    p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.060]
    # 0.001*6 = .006 ok; 0.008*5 = .04 ok; 0.039*4 = .156 stop
    assert list(holm(p) <= 0.05) == [True, True, False, False, False, False]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=25))
def test_holm_properties(p: list[float]) -> None:
    arr = np.array(p)
    adj = holm(arr)
    assert np.all(adj >= arr - 1e-15) and np.all(adj <= 1.0)
    assert np.all(adj <= bonferroni(arr) + 1e-15)
    order = np.argsort(arr, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-15)  # monotone in p


def test_adjust_methods() -> None:
    p = np.array([0.01, 0.02, 0.2])
    assert adjust(p, "bonferroni") == pytest.approx([0.03, 0.06, 0.6])
    assert adjust(p, "none") == pytest.approx(p)
    with pytest.raises(ConfigError):
        adjust(p, "fdr")


# --- Spearman ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [9, 15, 40])
def test_spearman_equals_scipy(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.uniform(size=n)
    y = x + rng.normal(0, 0.3, n)
    rho, p = spearman(x, y)
    direct = stats.spearmanr(x, y)
    assert rho == pytest.approx(direct.statistic) and p == pytest.approx(direct.pvalue)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_spearman_small_n_is_exact_permutation(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.uniform(size=n)
    y = x + rng.normal(0, 0.4, n)
    rho, p = spearman(x, y)
    direct = stats.permutation_test(
        (x,), lambda a: stats.spearmanr(a, y).statistic, permutation_type="pairings", n_resamples=np.inf
    )
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert p == pytest.approx(direct.pvalue)


def test_spearman_degenerate() -> None:
    assert all(np.isnan(spearman(np.array([0.1, 0.2]), np.array([0.3, 0.1]))))
    assert all(np.isnan(spearman(np.array([0.1, 0.1, 0.1]), np.array([0.3, 0.1, 0.2]))))
    rho, p = spearman(np.array([0.1, 0.2, 0.3]), np.array([0.2, 0.5, 0.9]))
    assert rho == 1.0 and p == pytest.approx(1 / 3)  # 2 of 6 orderings are as extreme


# --- bootstrap --------------------------------------------------------------------------------------------

def test_bootstrap_ci_contains_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (10, 40, 160, 640):
        values = rng.beta(2, 5, n)
        mean, lo, hi = mean_ci(values, 2000, 0.95, rng_for(0, "t", n))
        assert mean == pytest.approx(values.mean())
        assert lo < mean < hi
        widths.append(hi - lo)
    assert all(a > b for a, b in zip(widths, widths[1:], strict=False))
    assert widths[-1] < widths[0] / 4  # ~ 1/sqrt(n): 64x the units, ~8x narrower


def test_bootstrap_ci_width_matches_normal_theory() -> None:
    values = np.random.default_rng(1).normal(0, 1, 400)
    _, lo, hi = mean_ci(values, 4000, 0.95, rng_for(1))
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_bootstrap_coverage_near_nominal() -> None:
    rng = np.random.default_rng(2)
    covered = 0
    for i in range(200):
        values = rng.normal(0.3, 0.2, 40)
        _, lo, hi = mean_ci(values, 500, 0.95, rng_for(2, i))
        covered += lo <= 0.3 <= hi
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_is_reproducible_and_keyed() -> None:
    v = np.arange(30.0)
    a = bootstrap_means(v, 100, rng_for(5, "x"))
    assert np.array_equal(a, bootstrap_means(v, 100, rng_for(5, "x")))
    assert not np.array_equal(a, bootstrap_means(v, 100, rng_for(5, "y")))
    assert not np.array_equal(a, bootstrap_means(v, 100, rng_for(6, "x")))


def test_bootstrap_chunking_gives_same_distribution_shape() -> None:
    v = np.random.default_rng(0).normal(size=5000)  # 2000 x 5000 cells: drawn in chunks
    reps = bootstrap_means(v, 2000, rng_for(0))
    assert reps.shape == (2000,)
    assert reps.std() == pytest.approx(v.std() / np.sqrt(v.size), rel=0.1)


def test_pooling_weights() -> None:
    dims = ["good", "good", "good", "evil"]
    formats = ["a", "b", "c", "a"]
    counts = np.array([2, 4, 2, 8])
    # equal: formats equal within a dimension, dimensions equal overall
    assert pooling_weights(dims, formats, counts, True, None) == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2])
    assert pooling_weights(dims, formats, counts, True, "good") == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0])
    # pooled: proportional to units
    assert pooling_weights(dims, formats, counts, False, None) == pytest.approx(counts / 16)
    assert pooling_weights(dims, formats, counts, False, "good") == pytest.approx([0.25, 0.5, 0.25, 0])
