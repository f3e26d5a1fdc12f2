"""Shared shapes: the tidy ANALYSIS frame, the state table, and the unit keys.

Every analysis returns rows in the declared ANALYSIS schema (engine/schemas.py); this module
turns a frame holding any subset of its columns into that schema, so each analysis only sets the
columns it means.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import polars as pl

from engine.schemas import ANALYSIS

ALL = "all"
"""Value of ``dimension`` / ``format`` in rows that pool over dimensions / formats."""

UNIT_KEYS = ["state", "probe_set", "family", "dimension", "format", "item_id", "paraphrase", "variant"]
"""One *unit* is one distinct prompt of a state: item × paraphrase × variant.

The unit is what analyses resample and pair: samples of one unit are repeated draws from the same
prompt and are not independent, so they are averaged into the unit's value first.
"""

STATE_COLUMNS = ["state", "base_model", "pipeline", "stage", "depth"]

_PL_TYPES: dict[str, pl.DataType] = {}


def _polars_schema() -> dict[str, Any]:
    if not _PL_TYPES:
        empty = pl.from_arrow(ANALYSIS.empty_table())
        assert isinstance(empty, pl.DataFrame)
        _PL_TYPES.update(empty.schema)
    return dict(_PL_TYPES)


ANALYSIS_COLUMNS = [f.name for f in ANALYSIS]


def empty_analysis() -> pl.DataFrame:
    return pl.DataFrame(schema=_polars_schema())


def to_analysis(frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """Stack frames holding subsets of the ANALYSIS columns into one frame of exactly that schema."""
    schema = _polars_schema()
    parts = []
    for df in frames:
        if df.height == 0:
            continue
        unknown = set(df.columns) - set(schema)
        if unknown:
            raise ValueError(f"not ANALYSIS columns: {sorted(unknown)}")
        cols = []
        for name, dtype in schema.items():
            if name in df.columns:
                col = pl.col(name).cast(dtype)
                if dtype == pl.Float64:
                    col = col.fill_nan(None)  # NaN means "not computable": store it as null
                cols.append(col.alias(name))
            else:
                cols.append(pl.lit(None, dtype=dtype).alias(name))
        parts.append(df.select(cols))
    if not parts:
        return empty_analysis()
    return pl.concat(parts, how="vertical")


def parse_state(label: str) -> dict[str, Any]:
    """Keys of a state from its label ``<base>[/<pipeline>/<chain>]`` (used when models lacks it)."""
    parts = label.split("/", 2)
    chain = parts[2] if len(parts) == 3 else ""
    stages = chain.split(">") if chain else []
    return {
        "state": label,
        "base_model": parts[0],
        "pipeline": parts[1] if len(parts) == 3 else None,
        "stage": stages[-1] if stages else "base",
        "depth": len(stages),
    }


def state_table(models: pl.DataFrame, states: Iterable[str] = ()) -> pl.DataFrame:
    """One row per state: base_model, pipeline, stage, depth.

    From models.parquet where the state is listed there; states that only occur in the scores
    (``states``) are described from their label.
    """
    known = models.select(STATE_COLUMNS).unique(subset="state", keep="first", maintain_order=True)
    extra = sorted(set(states) - set(known["state"].to_list()))
    parsed = pl.DataFrame([parse_state(s) for s in extra], schema=known.schema) if extra else known.clear()
    table = pl.concat([known, parsed], how="vertical")
    return table.sort(["base_model", pl.col("pipeline").fill_null(""), "depth", "state"])


def with_state_keys(rows: pl.DataFrame, states: pl.DataFrame, *, suffix: str = "") -> pl.DataFrame:
    """Add stage, base_model, pipeline of ``state{suffix}`` to analysis rows."""
    cols = ["stage", "base_model", "pipeline"] if not suffix else ["stage"]
    info = states.select(
        pl.col("state").alias(f"state{suffix}"), *[pl.col(c).alias(f"{c}{suffix}") for c in cols]
    )
    return rows.join(info, on=f"state{suffix}", how="left")
