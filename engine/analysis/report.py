"""RUN_DIR/report.md: the key tables in markdown and the figures embedded.

``render_markdown`` is pure (analysis frame and metadata in, text out); ``build_report`` reads,
draws and writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from engine.analysis.frames import ALL
from engine.analysis.tables import ANALYSIS_FILE, atomic_write, read_analysis, read_metadata
from engine.analysis.views import (
    FAMILY_TITLES,
    MEASURE_TITLES,
    headlines,
    ordered_states,
    self_assessment_by_dimension,
    summary_rows,
)

REPORT_FILE = "report.md"
PLOTS_DIR = "plots"

FIGURE_CAPTIONS = {
    "self_assessment": "Self-assessment by dimension and state (mean over formats; overall = mean over "
                       "dimensions), with bootstrap CIs.",
    "behaviour": "Behaviour by state: harmfulness (mean over prompts of the worst of k judged answers), "
                 "intentions (rate of misaligned choices) and open questions, with bootstrap CIs.",
    "self_vs_behaviour": "Self-assessment against behaviour across model states, with Spearman's ρ.",
}


def _num(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ci(row: Mapping[str, Any]) -> str:
    if row.get("value") is None:
        return "–"
    if row.get("ci_low") is None:
        return _num(row["value"])
    return f"{row['value']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _p(v: Any) -> str:
    if v is None:
        return "–"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def scores_table(analysis: pl.DataFrame) -> str | None:
    scores = headlines(analysis)
    if scores.height == 0:
        return None
    labels = list(dict.fromkeys(scores.sort("label")["label"].to_list()))
    order = {"self_assessment": 0, "harmfulness": 1, "intentions": 2, "open": 3}
    labels.sort(key=lambda lab: (order.get(lab.split(":")[0], 9), lab))
    open_rate = summary_rows(analysis).filter(
        (pl.col("family") == "open") & (pl.col("statistic") == "rate") & (pl.col("dimension") == ALL)
    )
    cells = {(r["state"], r["label"]): r for r in scores.iter_rows(named=True)}
    rate_cells = {r["state"]: r for r in open_rate.iter_rows(named=True)}
    header = ["state", "stage"] + [_label_title(lab) for lab in labels]
    if rate_cells:
        header.append("Open questions: share misaligned")
    rows = []
    stages = dict(scores.select("state", "stage").iter_rows())
    for state in ordered_states(scores):
        row = [state, stages.get(state) or ""] + [_ci(cells.get((state, lab), {})) for lab in labels]
        if rate_cells:
            row.append(_ci(rate_cells.get(state, {})))
        rows.append(row)
    return table(header, rows)


def _label_title(label: str) -> str:
    family, _, probe_set = label.partition(":")
    title = FAMILY_TITLES.get(family, family)
    return f"{title} ({probe_set})" if probe_set else title


def self_assessment_table(analysis: pl.DataFrame) -> str | None:
    rows = self_assessment_by_dimension(analysis)
    if rows.height == 0:
        return None
    dims = sorted(d for d in rows["dimension"].unique().to_list() if d != ALL) + [ALL]
    cells = {(r["state"], r["dimension"]): r for r in rows.iter_rows(named=True)}
    body = [[s] + [_ci(cells.get((s, d), {})) for d in dims] for s in ordered_states(rows)]
    return table(["state"] + [d if d != ALL else "overall" for d in dims], body)


def paired_table(analysis: pl.DataFrame) -> str | None:
    paired = analysis.filter((pl.col("analysis") == "paired") & (pl.col("dimension") == ALL))
    if paired.height == 0:
        return None
    keys = ["base_model", "pipeline", "state", "state_b", "probe_set", "x"]
    tests = paired.filter(pl.col("statistic") == "wilcoxon")
    diffs = paired.filter(pl.col("statistic") == "mean_difference").select(
        *keys, d=pl.col("value"), d_lo=pl.col("ci_low"), d_hi=pl.col("ci_high")
    )
    joined = tests.join(diffs, on=keys, how="left", nulls_equal=True).sort(keys)
    body = []
    for r in joined.iter_rows(named=True):
        diff = {"value": r["d"], "ci_low": r["d_lo"], "ci_high": r["d_hi"]}
        body.append([
            r["base_model"], r["pipeline"], f"{r['stage']} → {r['stage_b']}", r["probe_set"],
            MEASURE_TITLES.get(r["x"], r["x"]), r["n"], _ci(diff), _num(r["effect_size"]),
            _num(r["value"], 1), _p(r["p_value"]), _p(r["p_adjusted"]), "yes" if r["significant"] else "no",
        ])
    return table(["model", "pipeline", "comparison", "probe set", "measure", "pairs", "mean difference [CI]",
                  "rank-biserial r", "W", "p", "p adjusted", "significant"], body)


def correlation_table(analysis: pl.DataFrame) -> str | None:
    rows = analysis.filter(pl.col("analysis") == "correlation")
    if rows.height == 0:
        return None
    body = [[_label_title(r["x"]), _label_title(r["y"]), _num(r["value"]), _p(r["p_value"]),
             _p(r["p_adjusted"]), r["n"]] for r in rows.iter_rows(named=True)]
    return table(["x", "y", "Spearman ρ", "p", "p adjusted", "N (states)"], body)


def quality_table(analysis: pl.DataFrame) -> str | None:
    rows = summary_rows(analysis).filter(
        pl.col("statistic").is_in(["missing_rate", "excluded_rate"]) & (pl.col("dimension") == ALL)
    )
    if rows.height == 0:
        return None
    ordered = rows.sort("state", "probe_set", "statistic")
    body = [[r["state"], r["probe_set"], MEASURE_TITLES.get(r["statistic"], r["statistic"]),
             _num(r["value"], 3), r["n"]] for r in ordered.iter_rows(named=True)]
    return table(["state", "probe set", "measure", "value", "n"], body)


def _methods(settings: Mapping[str, Any]) -> str:
    b = settings.get("bootstrap", "?")
    ci = settings.get("ci")
    ci_text = f"{ci:.0%}" if isinstance(ci, (int, float)) else "?"
    return "\n".join([
        "- Unit of analysis: one prompt (item × paraphrase × variant); its value is the mean over its scored "
        "samples (harmfulness: the worst of its k samples). Scores are in [0, 1], 1 = misaligned.",
        f"- CIs: {ci_text} percentile bootstrap over units ({b} resamples), stratified by dimension × "
        "format. Self-assessment weights formats equally within a dimension and dimensions equally "
        "overall; other families weight prompts equally.",
        f"- Open questions: answers with coherence < {settings.get('coherence_min', '?')} are excluded; an "
        f"answer counts as misaligned at score ≥ {settings.get('misaligned_threshold', '?')}.",
        "- Paired tests: two-sided Wilcoxon signed-rank over units matched between the two states (zero "
        "differences dropped; exact p up to 50 non-zero pairs); effect size: matched-pairs rank-biserial r "
        "(positive = the later state is more misaligned) and the mean difference with a bootstrap CI.",
        f"- Multiple comparisons: {settings.get('correction', '?')} correction within each probe family × "
        f"measure, α = {settings.get('alpha', '?')}, across models, pipelines and stage pairs. The "
        "per-dimension tests (in analysis.parquet) are corrected as their own families.",
        "- Correlations: Spearman across model states (exact permutation p for N ≤ 8).",
    ])


def render_markdown(analysis: pl.DataFrame, plots: Mapping[str, str], meta: Mapping[str, str],
                    title: str = "Run report") -> str:
    """The report text: key tables and figure links (``plots``: stem → path relative to the report)."""
    try:
        settings = json.loads(meta.get("analysis_config", "{}"))
    except json.JSONDecodeError:
        settings = {}
    parts = [f"# {title}", ""]
    keys = ("engine_version", "config_hash", "manifest_config_sha256")
    prov = [f"{k}: `{meta[k]}`" for k in keys if k in meta]
    if prov:
        parts += ["; ".join(prov), ""]
    if analysis.height == 0:
        parts += ["No scored probes in this run: nothing to analyse.", ""]
    sections = [
        ("Scores by state", scores_table(analysis),
         "Headline score of each probe family per model state: mean [CI]."),
        ("Self-assessment by dimension", self_assessment_table(analysis), "Mean over formats [CI]."),
        ("Paired comparisons between states", paired_table(analysis),
         "All units of each probe set; mean difference = later state − earlier state."),
        ("Correlations across model states", correlation_table(analysis), None),
        ("Data quality", quality_table(analysis),
         "Share of sample scores missing (unparsed, judge errors), and of open answers excluded as "
         "incoherent."),
    ]
    for heading, body, note in sections:
        if body is None:
            continue
        parts += [f"## {heading}", ""]
        if note:
            parts += [note, ""]
        parts += [body, ""]
    if plots:
        parts += ["## Figures", ""]
        for stem, rel in plots.items():
            caption = FIGURE_CAPTIONS.get(stem, stem)
            parts += [f"![{caption}]({rel})", "", f"*{caption}*", ""]
    parts += ["## Methods", "", _methods(settings), ""]
    return "\n".join(parts)


def _stale(run_dir: Path) -> bool:
    path = run_dir / ANALYSIS_FILE
    if not path.exists():
        return True
    inputs = [run_dir / n for n in ("models.parquet", "scores.parquet", "manifest.json")]
    newest = max((p.stat().st_mtime for p in inputs if p.exists()), default=0.0)
    return path.stat().st_mtime < newest


def build_report(run_dir: Path) -> Path:
    """Draw the plots into RUN_DIR/plots/ and write RUN_DIR/report.md (recomputing a stale analysis)."""
    from engine.analysis.api import run_analysis
    from engine.analysis.plots import draw_plots
    from engine.analysis.tables import check_run_dir

    run_dir = check_run_dir(run_dir)
    if _stale(run_dir):
        run_analysis(run_dir)
    path = run_dir / ANALYSIS_FILE
    analysis = read_analysis(path)
    meta = read_metadata(path)
    try:
        ci = float(json.loads(meta.get("analysis_config", "{}")).get("ci", 0.95))
    except (json.JSONDecodeError, TypeError, ValueError):
        ci = 0.95
    pngs = draw_plots(analysis, run_dir / PLOTS_DIR, ci)
    rel = {stem: p.relative_to(run_dir).as_posix() for stem, p in pngs.items()}
    text = render_markdown(analysis, rel, meta, title=f"Run report: {run_dir.name}")
    out = run_dir / REPORT_FILE
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out
