"""Multiple-comparison corrections within a family of tests: Holm, Bonferroni, none.

Both control the family-wise error rate under any dependence between the tests (the paired tests
of one family share states and units, so they are dependent). NaN p-values (tests that could not
be computed) are not counted in the family and stay NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from engine.errors import ConfigError

METHODS = ("holm", "bonferroni", "none")


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values.

    With the m p-values sorted ascending, p_(1) ≤ … ≤ p_(m), the adjusted value of the i-th is
    max over j ≤ i of min(1, (m − j + 1) · p_(j)); reject H_(i) when it is ≤ α.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    q = p[ok]
    order = np.argsort(q, kind="stable")
    stepped = q[order] * (m - np.arange(m))
    adjusted = np.minimum(1.0, np.maximum.accumulate(stepped))
    result = np.empty(m)
    result[order] = adjusted
    out[ok] = result
    return out


def bonferroni(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(p_values, dtype=float)
    m = int((~np.isnan(p)).sum())
    return np.minimum(1.0, p * m)


def adjust(p_values: Sequence[float] | np.ndarray, method: str) -> np.ndarray:
    if method == "holm":
        return holm(p_values)
    if method == "bonferroni":
        return bonferroni(p_values)
    if method == "none":
        return np.asarray(p_values, dtype=float).copy()
    raise ConfigError(f"unknown correction '{method}'", key="analysis.correction",
                      hint=f"one of {', '.join(METHODS)}")


def apply_correction(rows: pl.DataFrame, by: Sequence[str], method: str, alpha: float) -> pl.DataFrame:
    """Fill p_adjusted and significant (p_adjusted ≤ alpha) of rows with a p_value, per family ``by``."""
    if rows.height == 0:
        return rows
    tested = rows.filter(pl.col("p_value").is_not_null())
    if tested.height == 0:
        return rows
    indexed = rows.with_row_index("_row")
    adjusted = []
    for part in indexed.filter(pl.col("p_value").is_not_null()).partition_by(list(by), maintain_order=True):
        p_adj = adjust(part["p_value"].to_numpy(), method)
        adjusted.append(pl.DataFrame({"_row": part["_row"], "_p_adj": p_adj}))
    adj = pl.concat(adjusted)
    return (
        indexed.join(adj, on="_row", how="left", maintain_order="left")
        .with_columns(
            pl.col("_p_adj").fill_nan(None).alias("p_adjusted"),
        )
        .with_columns(
            pl.when(pl.col("p_adjusted").is_not_null())
            .then(pl.col("p_adjusted") <= alpha)
            .otherwise(None)
            .alias("significant")
        )
        .drop("_row", "_p_adj")
    )
