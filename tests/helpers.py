"""Assertions shared by test modules."""

from __future__ import annotations

import pytest


def one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """stderr holds exactly one ``error:`` line, no traceback, naming every needle."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
