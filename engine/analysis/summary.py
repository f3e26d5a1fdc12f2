"""Per-state descriptive statistics: mean of unit values with a bootstrap CI, at three levels.

For each state × probe set × measure (see units.py):

- ``dimension=d, format=f``: mean over the units of (d, f);
- ``dimension=d, format='all'``: pooled over the formats of d;
- ``dimension='all', format='all'``: pooled over everything.

Pooling. Self-assessment gives each format equal weight within a dimension and each dimension
equal weight overall (the reference study averages the formats into one score per dimension,
then the dimensions). Every other family pools its units with equal weight (the harmfulness
score is the mean over prompts of the worst of k; the intentions score is the rate over all
scenarios asked).

CIs are percentile bootstrap intervals over units, stratified by (dimension, format): each
stratum's units are resampled once per replicate, and the same replicates give all three levels,
so a pooled interval is consistent with its parts. ``n`` is the number of units behind the row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from engine.analysis.bootstrap import bootstrap_means, percentile_ci, rng_for
from engine.analysis.frames import ALL, to_analysis, with_state_keys
from engine.config.schema import AnalysisConfig

EQUAL_FORMAT_WEIGHTS = frozenset({"self_assessment"})
"""Families whose pooled scores weight formats, then dimensions, equally (not units)."""

GROUP = ["state", "probe_set", "family", "measure"]


def pooling_weights(
    dims: list[str], formats: list[str], counts: np.ndarray, equal: bool, dimension: str | None
) -> np.ndarray:
    """Weights over strata (dims[i], formats[i]) of the pooled estimate for ``dimension`` (None: all).

    ``equal``: each format equal within a dimension, each dimension equal overall; otherwise
    proportional to the stratum's unit count. Strata outside ``dimension`` get weight 0.
    """
    d = np.asarray(dims, dtype=object)
    inside = np.ones(d.size, bool) if dimension is None else d == dimension
    if not equal:
        w = np.where(inside, counts, 0).astype(float)
        return w / w.sum()
    formats_per_dim = {x: int(np.sum(d == x)) for x in set(d[inside])}
    w = np.array([1.0 / formats_per_dim[x] if ok else 0.0 for x, ok in zip(d, inside, strict=True)])
    return w / len(formats_per_dim)


def _group_rows(keys: tuple[Any, ...], strata: pl.DataFrame, cfg: AnalysisConfig) -> list[dict[str, Any]]:
    state, probe_set, family, measure = keys
    dims, formats = strata["dimension"].to_list(), strata["format"].to_list()
    values = [np.asarray(v, dtype=float) for v in strata["values"].to_list()]
    counts = np.array([v.size for v in values])
    means = np.array([v.mean() for v in values])
    rng = rng_for(cfg.seed, "summary", state, probe_set, measure)
    reps = np.stack([bootstrap_means(v, cfg.bootstrap, rng) for v in values])  # strata × B
    base = {"analysis": "summary", "statistic": measure, "state": state, "probe_set": probe_set,
            "family": family}

    def row(dimension: str, fmt: str, w: np.ndarray, n: int) -> dict[str, Any]:
        lo, hi = percentile_ci(w @ reps, cfg.ci) if cfg.bootstrap > 0 else (None, None)
        return {**base, "dimension": dimension, "format": fmt, "value": float(w @ means),
                "ci_low": lo, "ci_high": hi, "n": n}

    out = []
    for i, (d, f) in enumerate(zip(dims, formats, strict=True)):
        w = np.zeros(len(values))
        w[i] = 1.0
        out.append(row(d, f, w, int(counts[i])))
    equal = family in EQUAL_FORMAT_WEIGHTS
    for d in sorted(set(dims)):
        w = pooling_weights(dims, formats, counts, equal, d)
        out.append(row(d, ALL, w, int(counts[w > 0].sum())))
    w = pooling_weights(dims, formats, counts, equal, None)
    out.append(row(ALL, ALL, w, int(counts.sum())))
    return out


def summarise(units: pl.DataFrame, states: pl.DataFrame, cfg: AnalysisConfig) -> pl.DataFrame:
    """Descriptive rows (analysis='summary', statistic=measure) of every state × probe set × measure."""
    if units.height == 0:
        return to_analysis([])
    strata = (
        units.group_by([*GROUP, "dimension", "format"])
        .agg(pl.col("value").alias("values"))
        .sort([*GROUP, "dimension", "format"])
    )
    rows: list[dict[str, Any]] = []
    for keys, part in strata.partition_by(GROUP, as_dict=True, maintain_order=True).items():
        rows.extend(_group_rows(keys, part, cfg))
    return to_analysis([with_state_keys(pl.DataFrame(rows, infer_schema_length=None), states)])


def missing_rates(scores: pl.DataFrame, states: pl.DataFrame) -> pl.DataFrame:
    """Share of sample-level scores that are missing (status != ok), per state × probe set.

    Coherence rows are left out: they filter answers, they do not measure them.
    """
    rows = scores.filter(
        (pl.col("level") == "sample") & (pl.col("rubric").is_null() | (pl.col("rubric") != "coherence"))
    )
    if rows.height == 0:
        return to_analysis([])
    out = (
        rows.group_by(["state", "probe_set", "family"])
        .agg(
            (pl.col("score").is_null() | pl.col("score").is_nan()).mean().alias("value"),
            pl.len().alias("n"),
        )
        .with_columns(
            pl.lit("summary").alias("analysis"), pl.lit("missing_rate").alias("statistic"),
            pl.lit(ALL).alias("dimension"), pl.lit(ALL).alias("format"),
        )
        .sort(["state", "probe_set"])
    )
    return to_analysis([with_state_keys(out, states)])
