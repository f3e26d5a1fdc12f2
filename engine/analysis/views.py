"""Read-only views of the analysis frame that plots and the report share.

Pure functions of the ANALYSIS frame: they pick rows and order states, nothing else.
"""

from __future__ import annotations

import polars as pl

from engine.analysis.correlation import headline_scores
from engine.analysis.frames import ALL, parse_state

STAGE_COLORS = {"base": "#7f7f7f", "misalign": "#d62728", "realign": "#2ca02c"}
_CYCLE = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]

FAMILY_TITLES = {
    "self_assessment": "Self-assessment",
    "harmfulness": "Harmfulness",
    "intentions": "Intentions",
    "open": "Open questions",
}
MEASURE_TITLES = {
    "mean": "mean score",
    "rate": "rate",
    "mean_worst_of_k": "mean over prompts of the worst of k",
    "excluded_rate": "share excluded as incoherent",
    "missing_rate": "share of missing scores",
}
SCORE_AXIS = "score (0 = aligned, 1 = misaligned)"


def stage_color(stage: str, known: dict[str, str] | None = None) -> str:
    """A fixed colour per stage name: base grey, misalign red, realign green, others cycled."""
    if stage in STAGE_COLORS:
        return STAGE_COLORS[stage]
    known = known if known is not None else {}
    if stage not in known:
        known[stage] = _CYCLE[len(known) % len(_CYCLE)]
    return known[stage]


def state_sort_key(state: str) -> tuple[str, str, int, str]:
    info = parse_state(state)
    return (info["base_model"], info["pipeline"] or "", info["depth"], state)


def short_label(state: str) -> str:
    """The chain part of a state label ('base' for a base state)."""
    parts = state.split("/", 2)
    return parts[2] if len(parts) == 3 else "base"


def summary_rows(analysis: pl.DataFrame) -> pl.DataFrame:
    return analysis.filter(pl.col("analysis") == "summary")


def ordered_states(rows: pl.DataFrame) -> list[str]:
    return sorted(set(rows["state"].drop_nulls().to_list()), key=state_sort_key)


def panels(states: list[str]) -> list[tuple[str, str | None, list[str]]]:
    """(base_model, pipeline, states) per base model × pipeline; the base state joins each pipeline."""
    by_model: dict[str, dict[str | None, list[str]]] = {}
    for s in sorted(states, key=state_sort_key):
        info = parse_state(s)
        by_model.setdefault(info["base_model"], {}).setdefault(info["pipeline"], []).append(s)
    out: list[tuple[str, str | None, list[str]]] = []
    for bm, groups in by_model.items():
        bases = groups.get(None, [])
        pipelines = [p for p in groups if p is not None]
        if not pipelines:
            out.append((bm, None, bases))
        for p in pipelines:
            out.append((bm, p, bases + groups[p]))
    return out


def self_assessment_by_dimension(analysis: pl.DataFrame) -> pl.DataFrame:
    """Self-assessment mean per state × dimension pooled over formats, and overall ('all')."""
    rows = summary_rows(analysis).filter(
        (pl.col("family") == "self_assessment") & (pl.col("statistic") == "mean") & (pl.col("format") == ALL)
    )
    if rows.height == 0:
        return rows
    first_set = sorted(rows["probe_set"].unique().to_list())[0]
    return rows.filter(pl.col("probe_set") == first_set)


def headlines(analysis: pl.DataFrame) -> pl.DataFrame:
    """Headline score per state × family label (see correlation.HEADLINE), with stage."""
    scores = headline_scores(summary_rows(analysis))
    stages = summary_rows(analysis).select("state", "stage").unique(subset="state")
    return scores.join(stages, on="state", how="left")


def correlation_row(analysis: pl.DataFrame, x: str, y: str) -> dict | None:
    rows = analysis.filter(
        (pl.col("analysis") == "correlation")
        & (((pl.col("x") == x) & (pl.col("y") == y)) | ((pl.col("x") == y) & (pl.col("y") == x)))
    )
    return rows.row(0, named=True) if rows.height else None
