"""Results diff: per state × probe set × dimension, the mean score in A and in B and B − A.

Observations (scores.parquet, score not null):

- harmfulness: the worst-of-k 'harm' judge rows (level 'worst_of_k'); a probe set without
  worst-of-k rows uses its sample-level 'harm' rows;
- every other family: level 'sample' rows, coherence-rubric rows excluded.

A *unit* is one prompt, item × paraphrase × variant; its value is the mean of its observations
(samples of one prompt are repeated draws, not independent ones; see engine/analysis/frames.py).
States are matched by label. For each cell (state, probe set, dimension; plus dimension 'all'
when the probe set has several):

- value_a, value_b: the mean over the cell's units; difference = value_b − value_a (positive:
  B is more misaligned);
- when both sides hold exactly the same units: the paired two-sided Wilcoxon signed-rank test of
  the per-unit differences (engine.analysis.signed_rank) and a percentile bootstrap CI of their
  mean; otherwise the two-sided Mann-Whitney U test of the two sides' unit values and a CI from
  independent bootstrap resamples of each side;
- Holm's correction over every tested row of the diff; significant = p_adjusted ≤ alpha.

Cells with observations on one side only are reported separately (one-sided rows), as are samples
whose sample_key only one run holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from engine.analysis import holm, signed_rank
from engine.analysis.bootstrap import bootstrap_means, mean_ci, percentile_ci, rng_for

ALL = "all"
UNIT = ["item_id", "format", "paraphrase", "variant"]
CELL = ["state", "probe_set", "family", "dimension"]
WILCOXON, MANN_WHITNEY = "wilcoxon", "mann_whitney"


@dataclass(frozen=True)
class Settings:
    bootstrap: int = 2000
    ci: float = 0.95
    alpha: float = 0.05
    seed: int = 0


RESULT_SCHEMA: dict[str, Any] = {
    "state": pl.String(), "probe_set": pl.String(), "family": pl.String(), "dimension": pl.String(),
    "value_a": pl.Float64(), "value_b": pl.Float64(), "difference": pl.Float64(),
    "ci_low": pl.Float64(), "ci_high": pl.Float64(), "test": pl.String(), "statistic": pl.Float64(),
    "p_value": pl.Float64(), "p_adjusted": pl.Float64(), "effect_size": pl.Float64(),
    "n_a": pl.Int64(), "n_b": pl.Int64(), "n_pairs": pl.Int64(), "significant": pl.Boolean(),
}
ONE_SIDED_SCHEMA: dict[str, Any] = {
    "kind": pl.String(), "side": pl.String(), "state": pl.String(), "probe_set": pl.String(),
    "dimension": pl.String(), "value": pl.Float64(), "count": pl.Int64(),
}


def observations(scores: pl.DataFrame) -> pl.DataFrame:
    """The scores a diff compares (see the module docstring), with score not null or NaN."""
    scored = scores.filter(pl.col("score").is_not_null() & pl.col("score").is_not_nan())
    harm = scored.filter((pl.col("family") == "harmfulness")
                         & (pl.col("rubric").is_null() | (pl.col("rubric") == "harm")))
    worst = harm.filter(pl.col("level") == "worst_of_k")
    fallback = harm.filter((pl.col("level") == "sample")
                           & ~pl.col("probe_set").is_in(worst["probe_set"].unique().to_list()))
    other = scored.filter((pl.col("family") != "harmfulness") & (pl.col("level") == "sample")
                          & (pl.col("rubric").is_null() | (pl.col("rubric") != "coherence")))
    return pl.concat([worst, fallback, other], how="vertical").select(*CELL, *UNIT, "score")


def units(scores: pl.DataFrame) -> pl.DataFrame:
    """One row per cell × unit: the unit's mean score, plus the same units under dimension 'all'
    for probe sets with more than one dimension in that state."""
    per_dim = observations(scores).group_by(*CELL, *UNIT).agg(pl.col("score").mean().alias("value"))
    multi = (per_dim.group_by("state", "probe_set").agg(pl.col("dimension").n_unique().alias("k"))
             .filter(pl.col("k") > 1).drop("k"))
    pooled = (per_dim.join(multi, on=["state", "probe_set"], how="semi")
              .with_columns(pl.col("dimension").alias("unit_dimension"), pl.lit(ALL).alias("dimension")))
    per_dim = per_dim.with_columns(pl.col("dimension").alias("unit_dimension"))
    return pl.concat([per_dim, pooled.select(per_dim.columns)], how="vertical")


def _cell_values(u: pl.DataFrame) -> dict[tuple[Any, ...], dict[tuple[Any, ...], float]]:
    out: dict[tuple[Any, ...], dict[tuple[Any, ...], float]] = {}
    keys = ["unit_dimension", *UNIT]
    for rec in u.select(*CELL, *keys, "value").iter_rows():
        out.setdefault(tuple(rec[:4]), {})[tuple(rec[4:-1])] = float(rec[-1])
    return out


def compare_cell(cell: tuple[Any, ...], a: dict[tuple[Any, ...], float], b: dict[tuple[Any, ...], float],
                 s: Settings) -> dict[str, Any]:
    """The result row of one cell present on both sides (p_adjusted and significant left unset)."""
    va, vb = np.array(list(a.values())), np.array(list(b.values()))
    row: dict[str, Any] = dict(zip(CELL, cell, strict=True))
    row.update(value_a=float(va.mean()), value_b=float(vb.mean()), n_a=va.size, n_b=vb.size)
    if a.keys() == b.keys():
        d = np.array([b[k] - a[k] for k in a])
        test = signed_rank(d)
        mean, lo, hi = mean_ci(d, s.bootstrap, s.ci, rng_for(s.seed, "diff", *cell))
        row.update(difference=mean, ci_low=lo, ci_high=hi, test=WILCOXON, statistic=test.statistic,
                   p_value=test.p_value, effect_size=test.rank_biserial, n_pairs=int(d.size))
        return row
    reps_a = bootstrap_means(va, s.bootstrap, rng_for(s.seed, "diff-a", *cell))
    reps_b = bootstrap_means(vb, s.bootstrap, rng_for(s.seed, "diff-b", *cell))
    lo, hi = percentile_ci(reps_b - reps_a, s.ci)
    if np.ptp(np.concatenate([va, vb])) == 0:  # all values equal: no evidence of a difference
        u_stat, p = va.size * vb.size / 2.0, 1.0
    else:
        res = stats.mannwhitneyu(vb, va, alternative="two-sided")
        u_stat, p = float(res.statistic), float(res.pvalue)
    row.update(difference=float(vb.mean() - va.mean()), ci_low=lo, ci_high=hi, test=MANN_WHITNEY,
               statistic=u_stat, p_value=p, effect_size=2.0 * u_stat / (va.size * vb.size) - 1.0, n_pairs=0)
    return row


def diff_results(scores_a: pl.DataFrame, scores_b: pl.DataFrame, s: Settings,
                 state_order: list[str] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(result rows, one-sided cell rows) of two runs' scores."""
    ca, cb = _cell_values(units(scores_a)), _cell_values(units(scores_b))
    rows = [compare_cell(c, ca[c], cb[c], s) for c in ca if c in cb]
    results = pl.DataFrame(rows, schema={k: v for k, v in RESULT_SCHEMA.items()
                                         if k not in ("p_adjusted", "significant")}) if rows else None
    if results is None:
        results = pl.DataFrame(schema=RESULT_SCHEMA)
    else:
        p_adj = holm(results["p_value"].to_numpy())
        results = results.with_columns(pl.Series("p_adjusted", p_adj).fill_nan(None)).with_columns(
            (pl.col("p_adjusted") <= s.alpha).alias("significant")).select(list(RESULT_SCHEMA))
    one_sided = [
        {"kind": "cell", "side": side, "state": c[0], "probe_set": c[1], "dimension": c[3],
         "value": float(np.mean(list(vals.values()))), "count": len(vals)}
        for side, mine, other in (("only_a", ca, cb), ("only_b", cb, ca))
        for c, vals in mine.items() if c not in other
    ]
    cells = pl.DataFrame(one_sided, schema=ONE_SIDED_SCHEMA)
    return sort_cells(results, state_order), sort_cells(cells, state_order)


def sort_cells(df: pl.DataFrame, state_order: list[str] | None) -> pl.DataFrame:
    """Rows by state (in the given order, others after by label), probe set, 'all' first, dimension."""
    order = {s: i for i, s in enumerate(state_order or [])}
    rank = pl.col("state").replace_strict(order, default=len(order), return_dtype=pl.Int64)
    return df.sort([rank, "state", "probe_set", pl.col("dimension") != ALL, "dimension"])


def sample_sides(samples_a: pl.DataFrame, samples_b: pl.DataFrame) -> pl.DataFrame:
    """Counts of samples by sample_key found only in A / only in B, per state × probe set."""
    keys_a = samples_a.select("sample_key", "state", "probe_set")
    keys_b = samples_b.select("sample_key", "state", "probe_set")
    parts = []
    for side, mine, other in (("only_a", keys_a, keys_b), ("only_b", keys_b, keys_a)):
        alone = mine.join(other.select("sample_key"), on="sample_key", how="anti")
        parts.append(alone.group_by("state", "probe_set").agg(pl.len().cast(pl.Int64).alias("count"))
                     .with_columns(pl.lit("samples").alias("kind"), pl.lit(side).alias("side"),
                                   pl.lit(None, pl.String()).alias("dimension"),
                                   pl.lit(None, pl.Float64()).alias("value")))
    out = pl.concat([p.select(list(ONE_SIDED_SCHEMA)) for p in parts], how="vertical")
    return out.sort("state", "probe_set", "side")


def shared_samples(samples_a: pl.DataFrame, samples_b: pl.DataFrame) -> int:
    return samples_a.join(samples_b.select("sample_key"), on="sample_key", how="semi").height
