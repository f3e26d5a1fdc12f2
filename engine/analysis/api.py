"""The library entry points a run calls at its end: run_analysis, then write_report."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from engine.analysis.pipeline import compute_analysis
from engine.analysis.settings import MANIFEST, check_config, config_from_manifest, read_manifest
from engine.analysis.tables import (
    ANALYSIS_FILE,
    check_run_dir,
    provenance,
    read_models,
    read_scores,
    write_analysis,
)
from engine.config.schema import AnalysisConfig


def run_analysis(run_dir: Path, cfg: AnalysisConfig | None = None) -> pl.DataFrame:
    """Read a run's models and scores, compute every statistic, write RUN_DIR/analysis.parquet.

    ``cfg`` None: the run's own settings from manifest.json's config.analysis (defaults if the
    manifest has none). Returns the frame written. Raises UserError naming the file when the
    directory or a table is missing or unreadable.
    """
    run_dir = check_run_dir(Path(run_dir))
    manifest = read_manifest(run_dir)
    if cfg is None:
        cfg = config_from_manifest(manifest, str(run_dir / MANIFEST))
    else:
        check_config(cfg)
    models, scores = read_models(run_dir), read_scores(run_dir)
    df = compute_analysis(models, scores, cfg)
    write_analysis(df, run_dir / ANALYSIS_FILE, provenance(manifest, cfg))
    return df


def write_report(run_dir: Path) -> Path:
    """Draw the plots and write RUN_DIR/report.md; returns its path.

    Uses RUN_DIR/analysis.parquet, recomputing it first when it is missing or older than the
    tables it was computed from.
    """
    from engine.analysis.report import build_report

    return build_report(Path(run_dir))
