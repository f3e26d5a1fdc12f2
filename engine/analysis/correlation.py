"""Spearman correlations across model states between the families' headline scores.

Each state's headline score of a family is its overall summary row (dimension='all',
format='all'): self-assessment ``mean``, harmfulness ``mean_worst_of_k`` (else ``mean``),
intentions ``rate``, open ``mean``. Every pair of available measures is correlated over the
states that have both (N = n); fewer than 3 such states, or a constant measure, give a row with a
null value and p-value. p-values are two-sided: exact (all pairings) for N ≤ EXACT_MAX, scipy's
t approximation above (the reference study has N = 15); they are corrected across the
correlation family.

Rows: analysis='correlation', statistic='spearman', x/y the two measure labels (the family name;
``family:probe_set`` when a run has several probe sets of one family).
"""

from __future__ import annotations

from itertools import combinations, permutations

import numpy as np
import polars as pl
from scipy import stats

from engine.analysis.correction import apply_correction
from engine.analysis.frames import ALL, to_analysis
from engine.config.schema import AnalysisConfig

HEADLINE: dict[str, tuple[str, ...]] = {
    "self_assessment": ("mean",),
    "harmfulness": ("mean_worst_of_k", "mean"),
    "intentions": ("rate",),
    "open": ("mean",),
}
"""Family → its headline measure, in order of preference."""

EXACT_MAX = 8
"""Up to this many states the Spearman p-value is an exact permutation p-value (8! pairings)."""


def headline_scores(summary: pl.DataFrame) -> pl.DataFrame:
    """One row per state × measure label: (state, label, family, probe_set, value, ci_low, ci_high)."""
    overall = summary.filter(
        (pl.col("analysis") == "summary") & (pl.col("dimension") == ALL) & (pl.col("format") == ALL)
        & pl.col("family").is_in(list(HEADLINE))
    )
    picked = []
    for (family, _probe_set), part in overall.partition_by(["family", "probe_set"], as_dict=True,
                                                          maintain_order=True).items():
        for measure in HEADLINE[str(family)]:
            rows = part.filter(pl.col("statistic") == measure)
            if rows.height:
                picked.append(rows)
                break
    if not picked:
        return pl.DataFrame(schema={"state": pl.String(), "label": pl.String(), "family": pl.String(),
                                    "probe_set": pl.String(), "value": pl.Float64(),
                                    "ci_low": pl.Float64(), "ci_high": pl.Float64()})
    out = pl.concat(picked)
    sets = out.group_by("family").agg(pl.col("probe_set").n_unique().alias("_sets"))
    return (
        out.join(sets, on="family")
        .with_columns(
            pl.when(pl.col("_sets") > 1)
            .then(pl.format("{}:{}", "family", "probe_set"))
            .otherwise(pl.col("family"))
            .alias("label")
        )
        .select("state", "label", "family", "probe_set", "value", "ci_low", "ci_high")
    )


def exact_spearman_p(x: np.ndarray, y: np.ndarray, rho: float) -> float:
    """Two-sided permutation p-value of Spearman's rho over all N! pairings (small N only).

    Two-sided as scipy's permutation_test: twice the smaller one-sided tail, at most 1.
    """
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx = (rx - rx.mean()) / rx.std()
    ry = (ry - ry.mean()) / ry.std()
    perms = np.array(list(permutations(range(x.size))), dtype=np.int8)
    null = ry[perms] @ rx / x.size
    tol = 1e-12
    return float(min(1.0, 2.0 * min(np.mean(null >= rho - tol), np.mean(null <= rho + tol))))


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(rho, two-sided p); (NaN, NaN) when N < 3 or either side is constant.

    N ≤ EXACT_MAX: exact permutation p-value (the t approximation scipy uses says p = 0 for a
    perfect rank agreement of 3 states, where the exact p is 1/3). Larger N: scipy's spearmanr.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    rho = float(stats.spearmanr(x, y).statistic)
    if x.size <= EXACT_MAX:
        return rho, exact_spearman_p(x, y, rho)
    return rho, float(stats.spearmanr(x, y).pvalue)


def spearman_correlations(summary: pl.DataFrame, cfg: AnalysisConfig) -> pl.DataFrame:
    """Spearman rows for every pair of headline measures present in the run."""
    scores = headline_scores(summary)
    order = {f: i for i, f in enumerate(HEADLINE)}
    labels = (
        scores.select("label", "family").unique()
        .sort(pl.col("family").replace_strict(order, return_dtype=pl.Int64), "label")["label"].to_list()
    )
    wide = scores.pivot(on="label", index="state", values="value")
    rows = []
    for x, y in combinations(labels, 2):
        both = wide.select(x, y).drop_nulls()
        rho, p = spearman(both[x].to_numpy(), both[y].to_numpy())
        rows.append({"analysis": "correlation", "statistic": "spearman", "x": x, "y": y, "dimension": ALL,
                     "format": ALL, "value": rho, "p_value": p, "n": both.height})
    if not rows:
        return to_analysis([])
    out = pl.DataFrame(rows).with_columns(pl.col("p_value").fill_nan(None))
    return to_analysis([apply_correction(out, ["analysis"], cfg.correction, cfg.alpha)])
