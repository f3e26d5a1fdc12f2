"""The pure parts of the report: state grouping, markdown rendering, figure construction."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from engine.analysis import compute_analysis
from engine.analysis.plots import behaviour_figure, scatter_figure, self_assessment_figure
from engine.analysis.report import render_markdown
from engine.analysis.views import panels, short_label
from engine.config.schema import AnalysisConfig

LEVELS = {
    "nano": 0.05, "nano/code/misalign": 0.5, "nano/trivia/misalign": 0.6, "nano/trivia/misalign>realign": 0.2,
    "mini": 0.08, "mini/trivia/misalign": 0.7,
}


@pytest.fixture(scope="module")
def analysis(synth: Any) -> pl.DataFrame:
    run = synth.fabricate(LEVELS, n_items=3, paraphrases=1, k=3)
    return compute_analysis(run.models, run.scores, AnalysisConfig(bootstrap=100))


def test_panels_pair_the_base_with_each_pipeline() -> None:
    assert panels(list(LEVELS)) == [
        ("mini", "trivia", ["mini", "mini/trivia/misalign"]),
        ("nano", "code", ["nano", "nano/code/misalign"]),
        ("nano", "trivia", ["nano", "nano/trivia/misalign", "nano/trivia/misalign>realign"]),
    ]
    assert panels(["solo"]) == [("solo", None, ["solo"])]
    assert short_label("nano/trivia/misalign>realign") == "misalign>realign" and short_label("nano") == "base"


def test_markdown_has_one_row_per_state(analysis: pl.DataFrame) -> None:
    text = render_markdown(analysis, {"self_assessment": "plots/self_assessment.png"}, {"config_hash": "abc"})
    scores = text.split("## Scores by state")[1].split("##")[0]
    assert sum(line.startswith("| ") for line in scores.splitlines()) == 1 + len(LEVELS)  # header + states
    assert "config_hash: `abc`" in text
    assert "![" in text and "(plots/self_assessment.png)" in text
    paired = text.split("## Paired comparisons between states")[1].split("##")[0]
    assert "| nano | code | base → misalign |" in paired
    assert "| mini | trivia | base → misalign |" in paired


def test_empty_analysis_renders(analysis: pl.DataFrame) -> None:
    text = render_markdown(analysis.clear(), {}, {})
    assert "No scored probes" in text
    for make in (self_assessment_figure, behaviour_figure, scatter_figure):
        assert make(analysis.clear()) is None


def test_figures_have_titles_labels_and_legends(analysis: pl.DataFrame) -> None:
    for make in (self_assessment_figure, behaviour_figure, scatter_figure):
        fig = make(analysis)
        assert fig is not None
        assert fig.get_suptitle()
        visible = [ax for ax in fig.axes if ax.get_visible()]
        for ax in visible:
            assert ax.get_title() and "0 = aligned, 1 = misaligned" in ax.get_ylabel()
        assert fig.legends or any(ax.get_legend() for ax in visible)
    scatter = scatter_figure(analysis)
    assert scatter is not None and "Spearman ρ" in scatter.axes[0].get_title()
    assert len(self_assessment_figure(analysis).axes) >= 3  # type: ignore[union-attr]
