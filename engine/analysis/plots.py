"""The report's figures, drawn headless on matplotlib's Agg canvas.

Each ``*_figure`` function is pure: analysis frame in, matplotlib Figure out (None when the run
has no data for it). Figures are built on ``matplotlib.figure.Figure`` directly, never pyplot,
so drawing needs no display and leaves no global state behind.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from engine.analysis.frames import ALL
from engine.analysis.tables import atomic_write
from engine.analysis.views import (
    FAMILY_TITLES,
    SCORE_AXIS,
    correlation_row,
    headlines,
    ordered_states,
    panels,
    self_assessment_by_dimension,
    short_label,
    stage_color,
    state_sort_key,
)

MARKERS = ["o", "s", "^", "D", "v", "P", "X"]


def _yerr(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Asymmetric error-bar lengths; rows without a CI get none."""
    below = np.where(np.isnan(lo), 0.0, values - lo)
    above = np.where(np.isnan(hi), 0.0, hi - values)
    return np.clip(np.vstack([below, above]), 0.0, None)


def _get(row: dict | None, key: str) -> float:
    """row[key] as a float, NaN when the row or its value is missing."""
    value = None if row is None else row.get(key)
    return float("nan") if value is None else float(value)


def _col(rows: pl.DataFrame, name: str) -> np.ndarray:
    return rows[name].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def self_assessment_figure(analysis: pl.DataFrame, ci: float = 0.95) -> Figure | None:
    """(a) Grouped bars: self-assessment per dimension (and overall) for each state of a chain."""
    rows = self_assessment_by_dimension(analysis)
    if rows.height == 0:
        return None
    dims = sorted(d for d in rows["dimension"].unique().to_list() if d != ALL) + [ALL]
    groups = panels(ordered_states(rows))
    ncols = min(2, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = Figure(figsize=(max(7.0, 1.1 * len(dims) + 2) * ncols, 3.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    extra_colors: dict[str, str] = {}
    legend: dict[str, Artist] = {}
    for ax, (bm, pipeline, states) in zip(axes, groups, strict=False):
        width = 0.8 / max(1, len(states))
        x = np.arange(len(dims))
        for i, state in enumerate(states):
            part = rows.filter(pl.col("state") == state)
            by_dim = {r["dimension"]: r for r in part.iter_rows(named=True)}
            vals = np.array([_get(by_dim.get(d), "value") for d in dims])
            lo = np.array([_get(by_dim.get(d), "ci_low") for d in dims])
            hi = np.array([_get(by_dim.get(d), "ci_high") for d in dims])
            stage = part["stage"][0] if part.height else "base"
            ax.bar(x + (i - (len(states) - 1) / 2) * width, np.nan_to_num(vals), width,
                   yerr=_yerr(vals, lo, hi), capsize=2, color=stage_color(stage, extra_colors),
                   edgecolor="black", linewidth=0.4, label=short_label(state))
        ax.set_xticks(x, [d if d != ALL else "overall" for d in dims])
        ax.axvline(len(dims) - 1.5, color="black", linewidth=0.5, linestyle=":")
        ax.set_ylim(0, 1)
        ax.set_ylabel(SCORE_AXIS)
        ax.set_xlabel("dimension (mean over formats)")
        ax.set_title(f"{bm}" + (f" · {pipeline}" if pipeline else ""))
        for handle, lab in zip(*ax.get_legend_handles_labels(), strict=False):
            legend.setdefault(lab, handle)
    fig.legend(list(legend.values()), list(legend.keys()), title="state (chain from the base)",
               loc="outside lower center", ncols=min(len(legend), 6))
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    fig.suptitle(f"Self-assessment by dimension and state\n(bars: mean over formats; error bars: {ci:.0%} "
                 "bootstrap CI)")
    return fig


def _positions(states: list[str]) -> np.ndarray:
    """Bar positions with a gap between base models, so each model's states read as a group."""
    x, pos, prev = 0.0, [], None
    for s in states:
        model = s.split("/")[0]
        if prev is not None and model != prev:
            x += 0.6
        pos.append(x)
        x += 1.0
        prev = model
    return np.array(pos)


BEHAVIOUR_MEASURES = {
    "harmfulness": "mean over prompts of the worst of k judged answers",
    "intentions": "rate of misaligned choices",
    "open": "mean misalignment of coherent answers",
}


def behaviour_figure(analysis: pl.DataFrame, ci: float = 0.95) -> Figure | None:
    """(b) Harmfulness, intentions (and open questions if asked) per state, with CIs; one row each."""
    scores = headlines(analysis).filter(pl.col("family") != "self_assessment")
    if scores.height == 0:
        return None
    order = {"harmfulness": 0, "intentions": 1, "open": 2}
    labels = sorted(set(scores["label"].to_list()), key=lambda lab: (order.get(lab.split(":")[0], 9), lab))
    states = ordered_states(scores)
    x_of = dict(zip(states, _positions(states), strict=False))
    fig = Figure(figsize=(max(8.0, 0.5 * len(states) + 2.5), 3.4 * len(labels) + 1.0), layout="constrained")
    axes = fig.subplots(len(labels), 1, squeeze=False).ravel()
    extra_colors: dict[str, str] = {}
    seen_stages: dict[str, str] = {}
    for ax, label in zip(axes, labels, strict=False):
        part = scores.filter(pl.col("label") == label)
        part = part.with_columns(
            pl.col("state").replace_strict(x_of, return_dtype=pl.Float64).alias("_x")
        ).sort("_x")
        vals, lo, hi = _col(part, "value"), _col(part, "ci_low"), _col(part, "ci_high")
        colors = [stage_color(s, extra_colors) for s in part["stage"].to_list()]
        for st in part["stage"].to_list():
            seen_stages.setdefault(st, stage_color(st, extra_colors))
        x = part["_x"].to_numpy()
        ax.bar(x, vals, 0.75, yerr=_yerr(vals, lo, hi), capsize=3, color=colors, edgecolor="black",
               linewidth=0.4)
        ax.set_xticks(x, part["state"].to_list(), rotation=30, ha="right", fontsize="small")
        ax.set_ylim(0, 1)
        ax.set_ylabel(SCORE_AXIS)
        family = label.split(":")[0]
        title = FAMILY_TITLES.get(family, family) + (f" ({label})" if ":" in label else "")
        ax.set_title(f"{title}: {BEHAVIOUR_MEASURES.get(family, 'mean score')}")
    axes[-1].set_xlabel("model state")
    handles = [Patch(facecolor=c, edgecolor="black", label=st) for st, c in seen_stages.items()]
    fig.legend(handles=handles, title="stage", loc="outside lower center", ncols=min(len(handles), 6))
    fig.suptitle(f"Behaviour by model state\n(bars: score; error bars: {ci:.0%} bootstrap CI over prompts)")
    return fig


def scatter_figure(analysis: pl.DataFrame, ci: float = 0.95) -> Figure | None:
    """(c) Self-assessment vs harmfulness (and vs intentions) across states, Spearman ρ in titles."""
    scores = headlines(analysis)
    labels = scores["label"].unique().sort().to_list()
    sa_labels = [lab for lab in labels if lab.startswith("self_assessment")]
    others = [lab for lab in labels if lab.split(":")[0] in ("harmfulness", "intentions")]
    others.sort(key=lambda lab: (0 if lab.startswith("harmfulness") else 1, lab))
    if not sa_labels or not others:
        return None
    sa = sa_labels[0]
    fig = Figure(figsize=(6.2 * len(others), 5.6), layout="constrained")
    axes = fig.subplots(1, len(others), squeeze=False).ravel()
    wide_x = scores.filter(pl.col("label") == sa).select(
        "state", "stage", x="value", x_lo="ci_low", x_hi="ci_high"
    )
    models = sorted({s.split("/")[0] for s in wide_x["state"].to_list()})
    extra_colors: dict[str, str] = {}
    for ax, other in zip(axes, others, strict=False):
        wide_y = scores.filter(pl.col("label") == other).select(
            "state", y="value", y_lo="ci_low", y_hi="ci_high"
        )
        both = wide_x.join(wide_y, on="state").drop_nulls(["x", "y"])
        order = {s: i for i, s in enumerate(sorted(both["state"].to_list(), key=state_sort_key))}
        both = both.sort(pl.col("state").replace_strict(order, return_dtype=pl.Int64))
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--", label="y = x")
        for rec in both.iter_rows(named=True):
            x, y = rec["x"], rec["y"]
            xerr = _yerr(np.array([x]), np.array([_get(rec, "x_lo")]), np.array([_get(rec, "x_hi")]))
            yerr = _yerr(np.array([y]), np.array([_get(rec, "y_lo")]), np.array([_get(rec, "y_hi")]))
            marker = MARKERS[models.index(rec["state"].split("/")[0]) % len(MARKERS)]
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker, color=stage_color(rec["stage"], extra_colors),
                        markeredgecolor="black", markersize=8, elinewidth=0.8, capsize=2)
            ax.annotate(short_label(rec["state"]) if len(models) == 1 else rec["state"], (x, y),
                        textcoords="offset points", xytext=(5, 4), fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        family = other.split(":")[0]
        ax.set_xlabel(f"self-assessment, overall — {SCORE_AXIS}")
        ax.set_ylabel(f"{family} — {SCORE_AXIS}")
        row = correlation_row(analysis, sa, other)
        if row is not None and row["value"] is not None:
            p = row["p_value"]
            p_text = "n/a" if p is None else ("< 0.001" if p < 0.001 else f"= {p:.3f}")
            stat = f"Spearman ρ = {row['value']:.2f} (p {p_text}, N = {row['n']})"
        else:
            stat = f"Spearman ρ undefined (N = {row['n'] if row else both.height})"
        ax.set_title(f"Self-assessment vs {FAMILY_TITLES.get(family, family).lower()}\n{stat}")
        stages = dict.fromkeys(both["stage"].to_list())
        handles = [Line2D([], [], color="grey", linestyle="--", label="y = x")]
        handles += [Line2D([], [], marker="o", linestyle="", color=stage_color(s, extra_colors),
                           markeredgecolor="black", label=f"stage: {s}") for s in stages]
        if len(models) > 1:
            handles += [Line2D([], [], marker=MARKERS[i % len(MARKERS)], linestyle="", color="white",
                               markeredgecolor="black", label=f"model: {m}") for i, m in enumerate(models)]
        ax.legend(handles=handles, fontsize="small", loc="upper left")
    fig.suptitle(f"Self-report vs behaviour across model states (error bars: {ci:.0%} bootstrap CIs)")
    return fig


FIGURES = {
    "self_assessment": self_assessment_figure,
    "behaviour": behaviour_figure,
    "self_vs_behaviour": scatter_figure,
}
"""File stem → figure function."""

def save_png(fig: Figure, path: Path) -> Path:
    """Render on the Agg canvas and write the PNG atomically."""
    FigureCanvasAgg(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path


def draw_plots(analysis: pl.DataFrame, out_dir: Path, ci: float = 0.95) -> dict[str, Path]:
    """Draw every figure the run has data for into ``out_dir``; stem → path.

    A figure without data is not drawn, and an old PNG of it is removed so the directory never
    shows a plot of a previous analysis.
    """
    out: dict[str, Path] = {}
    for stem, make in FIGURES.items():
        fig = make(analysis, ci)
        path = out_dir / f"{stem}.png"
        if fig is not None:
            out[stem] = save_png(fig, path)
        else:
            path.unlink(missing_ok=True)
    return out
