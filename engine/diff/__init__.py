"""``engine diff A B``: compare two runs (or two jobs of a sweep).

- config: each manifest's resolved config flattened to dotted keys; changed, added, removed;
- plan: the plan recompiled from each config (no network); node keys shared / only in A / only in B;
- results: per state × probe set × dimension, the mean score in A and B, B − A with a bootstrap CI,
  a paired Wilcoxon (or Mann-Whitney) test, Holm-corrected over the whole diff;
- one-sided rows: states, cells and samples present in one run only.

Prints a terminal report and writes diff.parquet (tidy, a ``section`` column; see frame.py).
Library use: :func:`diff_runs` (a, b) → :class:`DiffResult`.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.diff.core import DiffResult, diff_runs
from engine.diff.results import Settings


def main(argv: Sequence[str]) -> int:
    from engine.diff.cli import main as cli_main

    return cli_main(argv)


__all__ = ["DiffResult", "Settings", "diff_runs", "main"]
