"""Calibration of the paired test as the pipeline runs it: no effect → ~5% positives; an effect → found.

Each world has two states probed on the same units; a unit's true misalignment is shared by both
states (plus, for a real effect, a shift in the second). Samples are 0/1 choices, so unit means tie
and differences are often zero: the regime the real probes produce.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

from engine.analysis.frames import state_table
from engine.analysis.paired import paired_comparisons
from engine.analysis.units import unit_scores
from engine.config.schema import AnalysisConfig

CFG = AnalysisConfig(bootstrap=0, comparisons=[["base", "misalign"]])
STATES = ["m", "m/p/misalign"]
N_UNITS, K = 16, 6
WORLDS = 200


def _world(seed: int, effect: float) -> pl.DataFrame:
    """Scores of one world (only the columns the analysis reads)."""
    rng = np.random.default_rng([seed, 42])
    p_unit = rng.uniform(0.05, 0.6, N_UNITS)
    frames = []
    for state, shift in zip(STATES, (0.0, effect), strict=True):
        p = np.clip(p_unit + shift, 0, 1)
        draws = (rng.random((N_UNITS, K)) < p[:, None]).astype(float)
        unit = np.repeat(np.arange(N_UNITS), K)
        frames.append(pl.DataFrame({
            "sample_key": [f"{state}-{i}" for i in range(N_UNITS * K)],
            "state": state, "probe_set": "intentions", "family": "intentions",
            "item_id": [f"s{u // 2}" for u in unit], "dimension": "good", "format": "scenario",
            "paraphrase": 0, "variant": unit % 2, "level": "sample", "rubric": None,
            "score": draws.ravel(),
        }, schema_overrides={"rubric": pl.String, "variant": pl.Int64, "paraphrase": pl.Int64}))
    return pl.concat(frames)


def _p_value(seed: int, effect: float, states: pl.DataFrame) -> float:
    units = unit_scores(_world(seed, effect), CFG)
    rows = paired_comparisons(units, states, CFG).filter(
        (pl.col("statistic") == "wilcoxon") & (pl.col("dimension") == "all")
    )
    assert rows.height == 1
    return float(rows["p_value"][0])


def _states() -> pl.DataFrame:
    empty = pl.DataFrame(schema={"state": pl.String, "base_model": pl.String, "pipeline": pl.String,
                                 "stage": pl.String, "depth": pl.Int64})
    return state_table(empty, STATES)


def test_false_positive_rate_is_nominal_without_an_effect() -> None:
    states = _states()
    p = np.array([_p_value(seed, 0.0, states) for seed in range(WORLDS)])
    positives = int(np.sum(p < 0.05))
    # consistent with 5%: a two-sided binomial test does not reject at 1%
    assert stats.binomtest(positives, WORLDS, 0.05).pvalue > 0.01, positives
    # and the lower tail as a whole is not inflated either (P(p < 0.2) ≈ 0.2 under H0)
    assert 0.12 < np.mean(p < 0.2) < 0.28


def test_a_real_effect_is_detected() -> None:
    states = _states()
    p = np.array([_p_value(seed, 0.25, states) for seed in range(50)])
    assert np.mean(p < 0.05) > 0.9
