"""Shared fixtures: every test gets its own store and cache, so nothing leaks between tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def iso(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Overrides that point the store, the dataset cache and the run directory into tmp_path."""
    monkeypatch.chdir(tmp_path)
    return [f"store.path={tmp_path / 'store.sqlite'}", f"store.cache_dir={tmp_path / 'cache'}"]
