"""Paired comparisons between the states of a chain: Wilcoxon signed-rank over matched units.

For each base model × pipeline and each pair of stages (a, b) in ``AnalysisConfig.comparisons``,
the state at stage a and the state at stage b are compared on every measure of every probe set
(units.TESTED_MEASURES). The base state is shared by all pipelines of its base model, so it is
paired with each pipeline's states.

- Pairs: units (item × paraphrase × variant) scored in both states; d = value_b − value_a, so a
  positive difference means state_b is more misaligned.
- Scopes: all units of the probe set (``dimension='all'``) and each dimension on its own. A
  paired test treats each matched unit as one observation (no format weighting).
- Test: two-sided Wilcoxon signed-rank, ``zero_method='wilcox'``: zero differences (common with
  discrete scores) carry no information about the direction and are dropped; the test is then
  conditional on the non-zero pairs. Up to EXACT_MAX non-zero pairs the p-value is exact: the
  sign-flip distribution of R+ over the observed (mid)ranks, by dynamic programming, so ties are
  handled exactly too (this equals scipy's ``method='exact'`` without ties and its exhaustive
  permutation with ties, which scipy only does up to 13 pairs, at a fraction of the cost). Above
  it, scipy's tie-corrected normal approximation. All differences zero: p = 1, W = 0, r = 0.
- Effect sizes: the matched-pairs rank-biserial correlation r = (R+ − R−) / (R+ + R−) over the
  same non-zero pairs (Kerby 2014; in [−1, 1], positive when b > a), and the mean difference with
  a percentile bootstrap CI over pairs.
- Correction: ``AnalysisConfig.correction`` within each family of tests, a family being the probe
  family × measure (FAMILY_KEYS), across base models, pipelines and stage pairs. The headline
  tests (all units, ``dimension='all'``) and the per-dimension breakdown are corrected as separate
  families, so adding dimensions to a probe set never dilutes the headline comparisons.

Rows: statistic='wilcoxon' (value W = scipy's statistic, min(R+, R−); p_value, p_adjusted,
significant, effect_size = r, n = pairs) and statistic='mean_difference' (value, CI, effect_size =
r, n); ``x`` holds the measure compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from engine.analysis.bootstrap import mean_ci, rng_for
from engine.analysis.correction import apply_correction
from engine.analysis.frames import ALL, to_analysis
from engine.analysis.units import TESTED_MEASURES
from engine.config.schema import AnalysisConfig

EXACT_MAX = 50
"""Non-zero pairs up to which the signed-rank p-value is exact (scipy's exact limit too)."""

FAMILY_KEYS = ("family", "x", "by_dimension")
"""What defines a family of tests for the correction: probe family × measure × scope."""

PAIR_COLUMNS = ["base_model", "pipeline", "state", "stage", "state_b", "stage_b"]
MATCH_KEYS = ["probe_set", "family", "measure", "dimension", "format", "item_id", "paraphrase", "variant"]


@dataclass(frozen=True)
class SignedRank:
    statistic: float
    p_value: float
    rank_biserial: float
    n: int
    n_nonzero: int


DECIMALS = 12
"""Differences are rounded to this many decimals before zeros and ties are found: unit means are
sums in the order rows arrived, so equal differences can differ in the last bits from run to run
(a resumed run, a concurrent one), which would break ties differently and change W and p."""


def _differences(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, dtype=float)
    return np.round(d[~np.isnan(d)], DECIMALS)


def rank_biserial(d: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation of differences d, zeros dropped (0 if all are zero)."""
    d = _differences(d)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    r_plus, r_minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((r_plus - r_minus) / (r_plus + r_minus))


def exact_signed_rank_p(d: np.ndarray) -> float:
    """Exact two-sided p-value of R+ for non-zero differences d, ties included.

    Under H0 each difference's sign is + or − with probability 1/2 independently, given the
    (mid)ranks of |d|. Midranks are multiples of 1/2, so twice them are integers and the null
    distribution of 2·R+ is a convolution computed in O(n · sum of ranks).
    """
    d = d[d != 0]
    weights = np.rint(2 * stats.rankdata(np.abs(d))).astype(np.int64)
    total = int(weights.sum())
    dist = np.zeros(total + 1)
    dist[0] = 1.0
    for w in weights:
        shifted = np.zeros_like(dist)
        shifted[w:] = dist[: total + 1 - w]
        dist = 0.5 * (dist + shifted)
    r_plus = int(weights[d > 0].sum())
    return float(min(1.0, 2.0 * min(dist[: r_plus + 1].sum(), dist[r_plus:].sum())))


def signed_rank(d: np.ndarray) -> SignedRank:
    """Two-sided Wilcoxon signed-rank test of paired differences d (see the module docstring)."""
    d = _differences(d)
    nz = d[d != 0]
    if nz.size == 0:
        return SignedRank(0.0, 1.0, 0.0, int(d.size), 0)
    ranks = stats.rankdata(np.abs(nz))
    w = float(min(ranks[nz > 0].sum(), ranks[nz < 0].sum()))
    if nz.size <= EXACT_MAX:
        p = exact_signed_rank_p(nz)
    else:
        p = float(stats.wilcoxon(nz, zero_method="wilcox", method="asymptotic").pvalue)
    return SignedRank(w, p, rank_biserial(nz), int(d.size), int(nz.size))


def pair_states(states: pl.DataFrame, comparisons: list[list[str]]) -> pl.DataFrame:
    """(base_model, pipeline, state, stage, state_b, stage_b) for every configured stage pair.

    Within a base model × pipeline, the members are that pipeline's states plus the base model's
    base state (stage 'base'). Every state at stage a is paired with every state at stage b.
    """
    rows = []
    for bm in states["base_model"].unique(maintain_order=True).to_list():
        mine = states.filter(pl.col("base_model") == bm)
        bases = mine.filter(pl.col("stage") == "base")
        tuned = mine.filter(pl.col("stage") != "base")
        for pipeline in tuned["pipeline"].drop_nulls().unique(maintain_order=True).to_list():
            members = pl.concat([bases, tuned.filter(pl.col("pipeline") == pipeline)])
            for a, b in comparisons:
                for sa in members.filter(pl.col("stage") == a)["state"].to_list():
                    for sb in members.filter(pl.col("stage") == b)["state"].to_list():
                        if sa != sb:
                            rows.append({"base_model": bm, "pipeline": pipeline, "state": sa, "stage": a,
                                         "state_b": sb, "stage_b": b})
    return pl.DataFrame(rows, schema={c: pl.String() for c in PAIR_COLUMNS})


def matched_differences(units: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """One row per pair of states × matched unit with d = value_b − value_a."""
    tested = units.filter(pl.col("measure").is_in(TESTED_MEASURES)).select("state", *MATCH_KEYS, "value")
    other = tested.rename({"state": "state_b", "value": "value_b"})
    return (
        pairs.join(tested, on="state", how="inner")
        .join(other, on=["state_b", *MATCH_KEYS], how="inner")
        .with_columns((pl.col("value_b") - pl.col("value")).alias("d"))
    )


def _test_rows(keys: dict[str, Any], d: np.ndarray, cfg: AnalysisConfig) -> list[dict[str, Any]]:
    test = signed_rank(d)
    rng = rng_for(cfg.seed, "paired", *keys.values())
    mean, lo, hi = mean_ci(d, cfg.bootstrap, cfg.ci, rng)
    if cfg.bootstrap <= 0:
        lo = hi = float("nan")
    return [
        {**keys, "statistic": "wilcoxon", "value": test.statistic, "p_value": test.p_value,
         "effect_size": test.rank_biserial, "n": test.n},
        {**keys, "statistic": "mean_difference", "value": mean, "ci_low": lo, "ci_high": hi,
         "effect_size": test.rank_biserial, "n": test.n},
    ]


def paired_comparisons(units: pl.DataFrame, states: pl.DataFrame, cfg: AnalysisConfig) -> pl.DataFrame:
    """Wilcoxon and mean-difference rows (analysis='paired') for every configured stage pair."""
    pairs = pair_states(states, [list(c) for c in cfg.comparisons])
    if pairs.height == 0 or units.height == 0:
        return to_analysis([])
    diffs = matched_differences(units, pairs)
    if diffs.height == 0:
        return to_analysis([])
    group = [*PAIR_COLUMNS, "probe_set", "family", "measure"]
    overall = diffs.group_by(group).agg(pl.col("d")).with_columns(pl.lit(ALL).alias("dimension"))
    by_dim = diffs.group_by([*group, "dimension"]).agg(pl.col("d"))
    tests = pl.concat([overall.select(by_dim.columns), by_dim]).sort([*group, "dimension"])
    rows: list[dict[str, Any]] = []
    for rec in tests.iter_rows(named=True):
        d = np.asarray(rec.pop("d"), dtype=float)
        measure = rec.pop("measure")
        keys = {**rec, "x": measure, "format": ALL, "analysis": "paired"}
        rows.extend(_test_rows(keys, d, cfg))
    out = pl.DataFrame(rows, infer_schema_length=None)
    out = out.with_columns(
        pl.col("p_value").cast(pl.Float64), (pl.col("dimension") != ALL).alias("by_dimension")
    )
    out = apply_correction(out, list(FAMILY_KEYS), cfg.correction, cfg.alpha)
    return to_analysis([out.drop("by_dimension")])
