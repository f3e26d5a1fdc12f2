"""The whole analysis of a run as one pure function of its tables.

``compute_analysis(models, scores, cfg)`` touches no file: it returns the tidy ANALYSIS frame.
Reading and writing happen in api.py.

Rows by ``analysis``:

- ``summary``: per state × probe set × measure (``statistic``: mean | rate | mean_worst_of_k |
  excluded_rate | missing_rate) at the dimension × format, dimension and overall levels, with a
  bootstrap CI (summary.py, units.py);
- ``paired``: Wilcoxon signed-rank (``statistic='wilcoxon'``) and mean difference between the
  states of each configured stage pair (paired.py); ``x`` is the measure;
- ``correlation``: Spearman across states between families' headline scores (correlation.py).
"""

from __future__ import annotations

import polars as pl

from engine.analysis.correlation import spearman_correlations
from engine.analysis.frames import state_table, to_analysis
from engine.analysis.paired import paired_comparisons
from engine.analysis.summary import missing_rates, summarise
from engine.analysis.units import unit_scores
from engine.config.schema import AnalysisConfig


def compute_analysis(models: pl.DataFrame, scores: pl.DataFrame, cfg: AnalysisConfig) -> pl.DataFrame:
    """Every statistic of the run, in the ANALYSIS schema. Families absent from the run give no rows."""
    states = state_table(models, scores["state"].unique().to_list())
    units = unit_scores(scores, cfg)
    summary = summarise(units, states, cfg)
    paired = paired_comparisons(units, states, cfg)
    correlations = spearman_correlations(summary, cfg)
    return to_analysis([summary, missing_rates(scores, states), paired, correlations])
