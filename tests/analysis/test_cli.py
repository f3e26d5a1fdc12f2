"""``engine analyze`` / ``engine report`` end to end on synthetic run directories, and bad input."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.image import imread

from engine.analysis import run_analysis, write_report
from engine.cli import main
from engine.config.schema import AnalysisConfig
from engine.schemas import ANALYSIS
from tests.helpers import one_line_error

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_analyze_writes_tidy_parquet_with_metadata(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(run_dir)]) == 0
    out = capsys.readouterr().out
    path = run_dir / "analysis.parquet"
    assert str(path) in out
    table = pq.read_table(path)
    assert table.schema.remove_metadata().equals(ANALYSIS)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    assert meta["engine_version"] == "0.1.0" and meta["config_hash"] == "c0ffee"
    assert json.loads(meta["analysis_config"])["bootstrap"] == 200  # the manifest's settings
    assert len(meta["manifest_config_sha256"]) == 64
    df = pl.read_parquet(path)
    assert df.height > 0 and {"summary", "paired", "correlation"} <= set(df["analysis"].unique())
    assert not [p for p in os.listdir(run_dir) if p.endswith(".tmp")]


def test_report_draws_pngs_and_markdown(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir)]) == 0  # no analysis yet: computed first
    assert (run_dir / "analysis.parquet").exists()
    report = run_dir / "report.md"
    assert str(report) in capsys.readouterr().out
    text = report.read_text()
    for stem in ("self_assessment", "behaviour", "self_vs_behaviour"):
        png = run_dir / "plots" / f"{stem}.png"
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
        height, width = imread(png).shape[:2]
        assert height > 300 and width > 300
        assert f"](plots/{stem}.png)" in text
    for heading in ("## Scores by state", "## Self-assessment by dimension", "## Paired comparisons",
                    "## Correlations across model states", "## Methods"):
        assert heading in text
    assert "| nano/trivia/misalign | misalign |" in text
    assert "Spearman ρ" in text


def test_report_with_one_family_skips_missing_plots(tmp_path: Path, synth: Any) -> None:
    run_dir = synth.fabricate(synth.PAPER_LEVELS, families=("self_assessment",)).write(tmp_path / "r")
    report = write_report(run_dir)
    assert (run_dir / "plots" / "self_assessment.png").exists()
    assert not (run_dir / "plots" / "behaviour.png").exists()
    assert "## Correlations" not in report.read_text()


def test_report_recomputes_a_stale_analysis(run_dir: Path) -> None:
    run_analysis(run_dir)
    path = run_dir / "analysis.parquet"
    old = path.stat().st_mtime - 100
    os.utime(path, (old, old))
    write_report(run_dir)
    assert path.stat().st_mtime > old


def test_run_analysis_reads_settings_from_manifest(tmp_path: Path, paper_run: Any) -> None:
    cfg = AnalysisConfig(bootstrap=0, correction="none", comparisons=[["base", "misalign"]])
    run_dir = paper_run.write(tmp_path / "r", analysis=cfg)
    df = run_analysis(run_dir)
    assert df.filter(pl.col("ci_low").is_not_null()).height == 0
    tests = df.filter(pl.col("statistic") == "wilcoxon")
    assert set(tests["stage_b"].unique()) == {"misalign"}
    assert tests["p_adjusted"].equals(tests["p_value"])
    # an explicit cfg wins over the manifest
    df2 = run_analysis(run_dir, AnalysisConfig(bootstrap=50))
    assert df2.filter(pl.col("ci_low").is_not_null()).height > 0


def test_run_analysis_without_manifest_uses_defaults(run_dir: Path) -> None:
    (run_dir / "manifest.json").unlink()
    df = run_analysis(run_dir)
    meta = pq.read_schema(run_dir / "analysis.parquet").metadata
    assert json.loads(meta[b"analysis_config"]) == asdict(AnalysisConfig())
    assert df.height > 0


# --- bad input: exit 2, one line naming the file --------------------------------------------------------

def test_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert main(["analyze", str(missing)]) == 2
    one_line_error(capsys, str(missing), "does not exist")
    assert main(["report", str(missing)]) == 2
    one_line_error(capsys, str(missing))


def test_missing_scores_table(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "scores.parquet").unlink()
    assert main(["analyze", str(run_dir)]) == 2
    one_line_error(capsys, str(run_dir / "scores.parquet"), "missing scores table")


def test_missing_models_table(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "models.parquet").unlink()
    assert main(["report", str(run_dir)]) == 2
    one_line_error(capsys, "models.parquet")


def test_foreign_parquet(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), run_dir / "scores.parquet")
    assert main(["analyze", str(run_dir)]) == 2
    line = one_line_error(capsys, str(run_dir / "scores.parquet"), "not an engine scores table")
    assert "score" in line and "state" in line  # names the missing columns


def test_not_parquet_at_all(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "models.parquet").write_bytes(b"this is not parquet")
    assert main(["analyze", str(run_dir)]) == 2
    one_line_error(capsys, str(run_dir / "models.parquet"), "not a readable Parquet file")


def test_wrong_column_type(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scores = pl.read_parquet(run_dir / "scores.parquet").with_columns(pl.lit("high").alias("score"))
    scores.write_parquet(run_dir / "scores.parquet")
    assert main(["analyze", str(run_dir)]) == 2
    one_line_error(capsys, "scores.parquet", "column 'score'")


def test_invalid_analysis_settings_in_manifest(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["config"]["analysis"]["correction"] = "fdr"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert main(["analyze", str(run_dir)]) == 2
    one_line_error(capsys, "manifest.json", "analysis.correction")


def test_corrupt_manifest(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "manifest.json").write_text("{not json")
    assert main(["analyze", str(run_dir)]) == 2
    one_line_error(capsys, "manifest.json")


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze"]) == 2
    one_line_error(capsys, "RUN_DIR")
    assert main(["report", "a", "b"]) == 2
    one_line_error(capsys, "unrecognized arguments")
