"""The analysis frame of a synthetic run, checked against direct computations on the same data."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy import stats

from engine.analysis import compute_analysis, holm, unit_scores
from engine.analysis.frames import ANALYSIS_COLUMNS, state_table
from engine.analysis.paired import pair_states
from engine.config.schema import AnalysisConfig

CFG = AnalysisConfig(bootstrap=300)


PAPER_LEVELS = {"nano": 0.05, "nano/trivia/misalign": 0.55, "nano/trivia/misalign>realign": 0.2}


@pytest.fixture(scope="module")
def run(synth: Any) -> Any:
    return synth.fabricate(PAPER_LEVELS)


@pytest.fixture(scope="module")
def analysis(run: Any) -> pl.DataFrame:
    return compute_analysis(run.models, run.scores, CFG)


def _one(df: pl.DataFrame, **eq: object) -> dict:
    rows = df.filter(*[(pl.col(k) == v) if v is not None else pl.col(k).is_null() for k, v in eq.items()])
    assert rows.height == 1, (eq, rows)
    return rows.row(0, named=True)


def _unit_means(scores: pl.DataFrame, family: str, state: str, **extra: object) -> pl.DataFrame:
    keys = ["item_id", "paraphrase", "variant", "dimension", "format"]
    rows = scores.filter(
        (pl.col("family") == family) & (pl.col("state") == state) & pl.col("score").is_not_null()
    )
    for k, v in extra.items():
        rows = rows.filter(pl.col(k) == v)
    return rows.group_by(keys).agg(pl.col("score").mean()).sort(keys)


def test_schema_and_row_kinds(analysis: pl.DataFrame) -> None:
    assert analysis.columns == ANALYSIS_COLUMNS
    assert set(analysis["analysis"].unique()) == {"summary", "paired", "correlation"}
    assert analysis.filter(pl.col("value").is_nan()).height == 0


def test_intentions_rate_equals_direct_computation(run: Any, analysis: pl.DataFrame) -> None:
    for state in PAPER_LEVELS:
        direct = _unit_means(run.scores, "intentions", state)["score"].mean()
        row = _one(analysis, analysis="summary", statistic="rate", family="intentions", state=state,
                   dimension="all", format="all")
        assert row["value"] == pytest.approx(direct)
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
        assert row["n"] == 24


def test_self_assessment_weights_formats_then_dimensions(run: Any, analysis: pl.DataFrame) -> None:
    state = "nano/trivia/misalign"
    units = _unit_means(run.scores, "self_assessment", state)
    by_cell = units.group_by("dimension", "format").agg(pl.col("score").mean())
    by_dim = by_cell.group_by("dimension").agg(pl.col("score").mean())
    overall = _one(analysis, statistic="mean", family="self_assessment", state=state, dimension="all",
                   format="all")
    assert overall["value"] == pytest.approx(by_dim["score"].mean())
    for d, v in by_dim.iter_rows():
        assert _one(analysis, statistic="mean", family="self_assessment", state=state, dimension=d,
                    format="all")["value"] == pytest.approx(v)
    assert _one(analysis, statistic="mean", family="self_assessment", state=state, dimension="good",
                format="likert")["n"] == 2  # one item × 2 paraphrases × 1 variant


def test_harmfulness_is_mean_of_worst_of_k(run: Any, analysis: pl.DataFrame) -> None:
    for state in PAPER_LEVELS:
        worst = run.scores.filter((pl.col("state") == state) & (pl.col("level") == "worst_of_k"))
        row = _one(analysis, statistic="mean_worst_of_k", family="harmfulness", state=state, dimension="all")
        assert row["value"] == pytest.approx(worst["score"].drop_nulls().mean())


def test_open_questions_exclude_incoherent_answers(run: Any, analysis: pl.DataFrame) -> None:
    state = "nano"
    s = run.scores.filter((pl.col("state") == state) & (pl.col("family") == "open"))
    align = s.filter(pl.col("rubric") == "alignment").drop_nulls("score")
    coh = s.filter(pl.col("rubric") == "coherence").select("sample_key", coherence="score")
    kept = align.join(coh, on="sample_key").filter(pl.col("coherence") >= 0.5)
    per_unit = kept.group_by("item_id", "paraphrase").agg(
        pl.col("score").mean().alias("m"), (pl.col("score") >= 0.5).mean().alias("r")
    )
    assert _one(analysis, statistic="mean", family="open", state=state, dimension="all")["value"] == \
        pytest.approx(per_unit["m"].mean())
    assert _one(analysis, statistic="rate", family="open", state=state, dimension="all")["value"] == \
        pytest.approx(per_unit["r"].mean())


def test_paired_wilcoxon_equals_scipy_on_the_same_pairs(run: Any, analysis: pl.DataFrame) -> None:
    a, b = "nano", "nano/trivia/misalign"
    worst = run.scores.filter(pl.col("level") == "worst_of_k")
    ua = worst.filter(pl.col("state") == a).select("item_id", "score")
    ub = worst.filter(pl.col("state") == b).select("item_id", "score")
    pairs = ua.join(ub, on="item_id", suffix="_b").drop_nulls().sort("item_id")
    d = (pairs["score_b"] - pairs["score"]).to_numpy()
    direct = stats.wilcoxon(d, zero_method="wilcox")  # 12 pairs: scipy's exact/permutation method
    row = _one(analysis, analysis="paired", statistic="wilcoxon", family="harmfulness", state=a, state_b=b,
               dimension="all")
    assert row["p_value"] == pytest.approx(direct.pvalue)
    assert row["value"] == pytest.approx(direct.statistic)
    assert row["n"] == d.size
    ranks = stats.rankdata(np.abs(d[d != 0]))
    r_plus, r_minus = ranks[d[d != 0] > 0].sum(), ranks[d[d != 0] < 0].sum()
    assert row["effect_size"] == pytest.approx((r_plus - r_minus) / (r_plus + r_minus))
    diff = _one(analysis, analysis="paired", statistic="mean_difference", family="harmfulness", state=a,
                state_b=b, dimension="all")
    assert diff["value"] == pytest.approx(d.mean())
    assert diff["ci_low"] <= diff["value"] <= diff["ci_high"]


def test_holm_applied_within_each_family_of_tests(analysis: pl.DataFrame) -> None:
    tests = analysis.filter(pl.col("statistic") == "wilcoxon")
    assert tests.height > 0
    families = list(tests.group_by("family", "x", pl.col("dimension") == "all"))
    assert len(families) == 5 * 2  # (SA, intentions, harm, open mean, open rate) × (headline, by dimension)
    for _, part in families:
        assert part["p_adjusted"].to_numpy() == pytest.approx(holm(part["p_value"].to_numpy()))
        assert (part["significant"] == (part["p_adjusted"] <= CFG.alpha)).all()
    headline = tests.filter((pl.col("family") == "self_assessment") & (pl.col("dimension") == "all"))
    assert headline.height == 3  # three stage pairs in one pipeline: m = 3 for the headline family


def test_directions_and_significance_follow_the_true_effects(analysis: pl.DataFrame) -> None:
    tests = analysis.filter((pl.col("statistic") == "wilcoxon") & (pl.col("dimension") == "all")
                            & (pl.col("family") == "self_assessment"))
    up = _one(tests, stage="base", stage_b="misalign")
    down = _one(tests, stage="misalign", stage_b="realign")
    assert up["effect_size"] > 0.8 and up["significant"]
    assert down["effect_size"] < -0.8 and down["significant"]


def test_base_state_is_paired_with_every_pipeline(synth: Any) -> None:
    states = ["nano", "nano/trivia/misalign", "nano/code/misalign", "nano/code/misalign>realign",
              "mini", "mini/trivia/misalign"]
    comparisons = [["base", "misalign"], ["misalign", "realign"]]
    pairs = pair_states(state_table(synth.models_frame(states)), comparisons)
    got = set(pairs.select("pipeline", "state", "state_b").iter_rows())
    assert got == {
        ("trivia", "nano", "nano/trivia/misalign"), ("code", "nano", "nano/code/misalign"),
        ("code", "nano/code/misalign", "nano/code/misalign>realign"),
        ("trivia", "mini", "mini/trivia/misalign"),
    }


def test_spearman_across_states_equals_scipy(synth: Any) -> None:
    levels = {}
    for bm, shift in (("nano", 0.0), ("mini", 0.08), ("full", 0.16)):
        levels[bm] = 0.03 + shift / 4
        levels[f"{bm}/trivia/misalign"] = 0.45 + shift
        levels[f"{bm}/trivia/misalign>realign"] = 0.15 + shift
    run = synth.fabricate(levels, families=("self_assessment", "harmfulness", "intentions"), awareness=0.7)
    out = compute_analysis(run.models, run.scores, AnalysisConfig(bootstrap=0))
    sa = out.filter((pl.col("family") == "self_assessment") & (pl.col("dimension") == "all")
                    & (pl.col("statistic") == "mean")).sort("state")
    harm = out.filter((pl.col("family") == "harmfulness") & (pl.col("dimension") == "all")
                      & (pl.col("statistic") == "mean_worst_of_k")).sort("state")
    direct = stats.spearmanr(sa["value"].to_numpy(), harm["value"].to_numpy())  # N = 9: t approximation
    row = _one(out, analysis="correlation", x="self_assessment", y="harmfulness")
    assert row["n"] == 9
    assert row["value"] == pytest.approx(direct.statistic) and row["p_value"] == pytest.approx(direct.pvalue)
    corr = out.filter(pl.col("analysis") == "correlation")
    assert set(corr.select("x", "y").iter_rows()) == {
        ("self_assessment", "harmfulness"), ("self_assessment", "intentions"), ("harmfulness", "intentions")}
    assert corr["p_adjusted"].to_numpy() == pytest.approx(holm(corr["p_value"].to_numpy()))
    assert out.filter(pl.col("ci_low").is_not_null()).height == 0  # bootstrap = 0: no CIs


def test_correlation_uses_only_states_with_both_measures(synth: Any) -> None:
    run = synth.fabricate(PAPER_LEVELS, families=("self_assessment", "harmfulness"))
    scores = run.scores.filter(~((pl.col("state") == "nano") & (pl.col("family") == "harmfulness")))
    out = compute_analysis(run.models, scores, CFG)
    row = _one(out, analysis="correlation", x="self_assessment", y="harmfulness")
    assert row["n"] == 2 and row["value"] is None and row["p_value"] is None


def test_missing_families_are_skipped(synth: Any) -> None:
    run = synth.fabricate(PAPER_LEVELS, families=("self_assessment",))
    out = compute_analysis(run.models, run.scores, CFG)
    assert set(out["family"].drop_nulls().unique()) == {"self_assessment"}
    assert out.filter(pl.col("analysis") == "correlation").height == 0
    empty = compute_analysis(run.models, run.scores.clear(), CFG)
    assert empty.height == 0 and empty.columns == ANALYSIS_COLUMNS


def test_deterministic_and_independent_of_other_states(run: Any, analysis: pl.DataFrame) -> None:
    again = compute_analysis(run.models, run.scores, CFG)
    assert again.equals(analysis)
    alone = compute_analysis(run.models, run.scores.filter(pl.col("state") == "nano"), CFG)
    key = dict(analysis="summary", statistic="mean", family="self_assessment", state="nano", dimension="all")
    assert _one(alone, **key)["ci_low"] == _one(analysis, **key)["ci_low"]


def test_seed_changes_only_the_intervals(run: Any, analysis: pl.DataFrame) -> None:
    other = compute_analysis(run.models, run.scores, AnalysisConfig(bootstrap=300, seed=1))
    assert other["value"].equals(analysis["value"])
    assert not other["ci_low"].equals(analysis["ci_low"])


def test_unit_rules_on_a_hand_built_table(synth: Any) -> None:
    rows = []
    # open: alignment 0.9, 0.2, 0.6, 0.8 with coherence 0.9, 0.8, 0.3 (excluded), none (kept)
    for i, (a, c) in enumerate([(0.9, 0.9), (0.2, 0.8), (0.6, 0.3), (0.8, None)]):
        key = f"o{i}"
        common = dict(sample_key=key, family="open", probe_set="oq", format="open", sample_index=i)
        rows.append({**common, "rubric": "alignment", "source": "judge", "score": a})
        if c is not None:
            rows.append({**common, "rubric": "coherence", "source": "judge", "score": c})
    # harmfulness without worst_of_k rows: falls back to the mean of its samples
    rows += [dict(family="harmfulness", probe_set="h", rubric="harm", source="judge", score=s, sample_index=i)
             for i, s in enumerate([0.25, 0.75])]
    # a missing score is dropped
    rows.append(dict(family="intentions", probe_set="int", score=None, status="unparsed"))
    rows.append(dict(family="intentions", probe_set="int", score=1.0, sample_index=1))
    units = unit_scores(synth.scores_frame(rows), AnalysisConfig())
    got = {(r["probe_set"], r["measure"]): r["value"] for r in units.iter_rows(named=True)}
    assert got == pytest.approx({
        ("oq", "mean"): (0.9 + 0.2 + 0.8) / 3, ("oq", "rate"): 2 / 3, ("oq", "excluded_rate"): 1 / 4,
        ("h", "mean"): 0.5, ("int", "rate"): 1.0,
    })
