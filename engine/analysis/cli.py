"""``engine analyze RUN_DIR`` and ``engine report RUN_DIR``.

Argument errors are UserErrors (one line, exit 2) like every other bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(message, hint=self.format_usage().strip())


def _run_dir(prog: str, description: str, argv: Sequence[str]) -> Path:
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="directory a run wrote")
    return parser.parse_args(list(argv)).run_dir


def analyze_main(argv: Sequence[str]) -> int:
    """Recompute RUN_DIR/analysis.parquet from the run's tables and its manifest's settings."""
    from engine.analysis.api import run_analysis
    from engine.analysis.tables import ANALYSIS_FILE

    run_dir = _run_dir("engine analyze", "Recompute the analysis of a run directory.", argv)
    df = run_analysis(run_dir)
    tests = df.filter(df["statistic"] == "wilcoxon")
    significant = int(tests["significant"].fill_null(False).sum())
    print(f"wrote {run_dir / ANALYSIS_FILE}: {df.height} rows, {tests.height} paired tests "
          f"({significant} significant after correction)", file=sys.stdout)
    return 0


def report_main(argv: Sequence[str]) -> int:
    """Draw the plots and write RUN_DIR/report.md."""
    from engine.analysis.api import write_report

    run_dir = _run_dir("engine report", "Draw the plots and report.md of a run directory.", argv)
    path = write_report(run_dir)
    print(f"wrote {path}", file=sys.stdout)
    return 0
