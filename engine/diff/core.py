"""``diff_runs(a, b) -> DiffResult``: the whole comparison of two run directories, no output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from engine.diff.config import ConfigChange, diff_config
from engine.diff.inputs import RunData, load_run
from engine.diff.plan import PlanDiff, diff_plan
from engine.diff.results import ONE_SIDED_SCHEMA, Settings, diff_results, sample_sides, shared_samples


@dataclass(frozen=True)
class DiffResult:
    a: dict[str, Any]
    """Facts about run A (path, name, config_hash, plan_key, status, states, samples)."""
    b: dict[str, Any]
    settings: Settings
    config: list[ConfigChange]
    plan: PlanDiff
    results: pl.DataFrame
    """One row per cell on both sides (results.RESULT_SCHEMA)."""
    one_sided: pl.DataFrame
    """States, cells and samples present on one side only (results.ONE_SIDED_SCHEMA)."""
    samples_shared: int

    @property
    def n_significant(self) -> int:
        return int(self.results["significant"].fill_null(False).sum())


def state_order(a: RunData, b: RunData) -> list[str]:
    """State labels by depth then label, A's first."""
    both = pl.concat([a.models.select("state", "depth"), b.models.select("state", "depth")])
    return both.unique("state", keep="first").sort("depth", "state")["state"].to_list()


def state_sides(a: RunData, b: RunData) -> pl.DataFrame:
    la, lb = set(a.models["state"].to_list()), set(b.models["state"].to_list())
    rows = [{"kind": "state", "side": side, "state": s, "count": 1}
            for side, mine, other in (("only_a", la, lb), ("only_b", lb, la)) for s in sorted(mine - other)]
    return pl.DataFrame(rows, schema=ONE_SIDED_SCHEMA)


def compare(a: RunData, b: RunData, settings: Settings | None = None) -> DiffResult:
    s = settings or Settings()
    order = state_order(a, b)
    results, cells = diff_results(a.scores, b.scores, s, order)
    one_sided = pl.concat([state_sides(a, b), cells, sample_sides(a.samples, b.samples)], how="vertical")
    return DiffResult(a.describe(), b.describe(), s, diff_config(a.config, b.config), diff_plan(a, b),
                      results, one_sided, shared_samples(a.samples, b.samples))


def diff_runs(a: Path, b: Path, settings: Settings | None = None) -> DiffResult:
    """Compare two run directories (or sweep job directories). UserError names a missing file."""
    return compare(load_run(Path(a)), load_run(Path(b)), settings)
