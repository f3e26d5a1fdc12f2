"""Statistics and reports of a run: per-state scores with CIs, paired tests, correlations.

Public API (each analysis is a pure function from polars frames to a tidy ANALYSIS frame):

- :func:`run_analysis` (run_dir, cfg=None) → DataFrame: read tables, compute, write analysis.parquet;
- :func:`write_report` (run_dir) → Path: plots and report.md;
- :func:`compute_analysis` (models, scores, cfg): the whole analysis, no I/O;
- building blocks: :func:`unit_scores`, :func:`summarise`, :func:`paired_comparisons`,
  :func:`spearman_correlations`, :func:`signed_rank`, :func:`holm`.
"""

from engine.analysis.api import run_analysis, write_report
from engine.analysis.correction import adjust, bonferroni, holm
from engine.analysis.correlation import headline_scores, spearman_correlations
from engine.analysis.paired import paired_comparisons, rank_biserial, signed_rank
from engine.analysis.pipeline import compute_analysis
from engine.analysis.summary import summarise
from engine.analysis.units import unit_scores

__all__ = [
    "adjust", "bonferroni", "compute_analysis", "headline_scores", "holm", "paired_comparisons",
    "rank_biserial", "run_analysis", "signed_rank", "spearman_correlations", "summarise", "unit_scores",
    "write_report",
]
