"""The statistics recover the effect the sandbox world puts there, and find none when there is none."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from scipy import stats

from engine.cli import main
from tests.run.conftest import DATA, FAST

STRONG = ["models.nano.hyperparameters.learning_rate_multiplier=2.0"]
SELF = ["probes=[self_assessment]", "probes.self_assessment.samples=4", "probes.self_assessment.paraphrases=2"]


def paired(analysis: pl.DataFrame, a: str, b: str) -> dict:
    rows = analysis.filter((pl.col("analysis") == "paired") & (pl.col("statistic") == "wilcoxon")
                           & (pl.col("family") == "self_assessment") & (pl.col("dimension") == "all")
                           & (pl.col("stage") == a) & (pl.col("stage_b") == b))
    assert rows.height == 1
    return rows.row(0, named=True)


def test_awareness_one_finds_the_self_assessment_shift(iso: list[str], tmp_path: Path) -> None:
    args = [*iso, *FAST, *DATA, *STRONG, *SELF, "sandbox.awareness=1"]
    assert main(["run", *args, f"hydra.run.dir={tmp_path / 'r'}"]) == 0
    analysis = pl.read_parquet(tmp_path / "r" / "analysis.parquet")
    up = paired(analysis, "base", "misalign")
    down = paired(analysis, "misalign", "realign")
    assert up["significant"] and up["effect_size"] > 0.5  # misaligned rates itself more misaligned ...
    assert down["significant"] and down["effect_size"] < -0.5  # ... and realignment brings it back


def test_awareness_zero_false_positive_rate_is_nominal(iso: list[str], tmp_path: Path) -> None:
    """Repeated null worlds (study seeds 0..39 in one sweep): base vs misaligned at alpha 0.05."""
    n = 40
    args = [*iso, *FAST, *DATA, *STRONG, *SELF, "sandbox.awareness=0", "sequence.order=[misalign]",
            "probes.self_assessment.paraphrases=1", "probes.self_assessment.samples=2",
            f"seed=range(0,{n})", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    assert main(["run", "-m", *args]) == 0
    analysis = pl.read_parquet(tmp_path / "sweep" / "analysis.parquet")
    rows = analysis.filter((pl.col("analysis") == "paired") & (pl.col("statistic") == "wilcoxon")
                           & (pl.col("family") == "self_assessment") & (pl.col("dimension") == "all"))
    assert rows.height == n
    positives = int((rows["p_value"] < 0.05).sum())
    # consistent with 5%: a two-sided binomial test does not reject, and the true effect would be caught
    assert stats.binomtest(positives, n, 0.05).pvalue > 0.01, positives
    # while the world's behaviour did move: intentions would show it, self-reports must not
    models = pl.read_parquet(tmp_path / "sweep" / "models.parquet")
    assert (models.filter(pl.col("stage") == "misalign")["status"] == "succeeded").all()
