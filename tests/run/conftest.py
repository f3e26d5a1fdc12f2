"""Small, fast studies on the in-process sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

FAST = [
    "sandbox.finetune_seconds=0.2", "scheduler.poll_interval_s=0.05", "scheduler.poll_max_s=0.2",
    "scheduler.progress=off", "analysis.report=false", "analysis.bootstrap=200",
    "scheduler.backoff_base_s=0.01", "scheduler.backoff_max_s=0.05",
]
DATA = ["datasets.trivia_incorrect.limit=40", "datasets.trivia_correct.limit=40"]
SMALL = [
    "probes.self_assessment.samples=4", "probes.self_assessment.paraphrases=1",
    "probes.intentions.samples=4", "probes.intentions.items=1",
    "probes.harmfulness.samples=3", "probes.harmfulness.items=4",
    "datasets.trivia_incorrect.limit=40", "datasets.trivia_correct.limit=40",
]


@pytest.fixture
def run_args(iso: list[str], tmp_path: Path) -> list[str]:
    return [*iso, *FAST, *SMALL]


@pytest.fixture
def fast_args(iso: list[str]) -> list[str]:
    """Fast settings and small data, leaving the probe sets to the test."""
    return [*iso, *FAST, *DATA]
