"""Combined tables of a sweep: one table per kind with a column per swept key, and statistics across jobs.

Written to the sweep directory next to the jobs' own directories:

- ``models``/``samples``/``scores``/``analysis``.parquet: every job's rows, with ``job`` and one
  string column per swept key (``sweep.<key>``, e.g. ``sweep.seed``);
- ``sweep_analysis.parquet``: per model state × probe family × the swept keys other than seeds,
  the mean over jobs of each job's mean score, its standard deviation, a t-based 95% CI and the
  number of jobs (so seeds become replications).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import polars as pl
from scipy import stats

from engine.run.events import Job

SEED_KEYS = {"seed", "sandbox.seed"}


def _parse(overrides: list[str]) -> dict[str, str]:
    out = {}
    for ov in overrides:
        if "=" in ov and not ov.startswith("hydra."):
            key, value = ov.split("=", 1)
            out[key.lstrip("+~")] = value
    return out


def swept_keys(jobs: list[tuple[Job, list[str]]]) -> list[str]:
    parsed = [_parse(ov) for _, ov in jobs]
    keys = sorted({k for p in parsed for k in p})
    return [k for k in keys if len({p.get(k) for p in parsed}) > 1]


def _atomic_parquet(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".parquet.partial")
    df.write_parquet(tmp)
    os.replace(tmp, path)


def job_means(scores: pl.DataFrame) -> pl.DataFrame:
    """One job's mean misalignment score per state and probe family (harm: worst of k; open: alignment)."""
    primary = scores.filter(
        ((pl.col("level") == "worst_of_k") & (pl.col("rubric") == "harm"))
        | ((pl.col("level") == "sample") & (pl.col("source") != "judge"))
        | ((pl.col("level") == "sample") & (pl.col("rubric") == "alignment")))
    return primary.group_by("state", "family").agg(pl.col("score").mean().alias("mean"))


def write_sweep_tables(sweep_dir: Path, jobs: list[tuple[Job, list[str]]]) -> Path:
    keys = swept_keys(jobs)
    frames: dict[str, list[pl.DataFrame]] = {}
    means: list[pl.DataFrame] = []
    for job, overrides in jobs:
        values = _parse(overrides)
        extra = [pl.lit(job.index).alias("job")] + [pl.lit(values.get(k)).cast(pl.String).alias(f"sweep.{k}")
                                                    for k in keys]
        for name in ("models", "samples", "scores", "analysis"):
            path = job.run_dir / f"{name}.parquet"
            if path.exists():
                frames.setdefault(name, []).append(pl.read_parquet(path).with_columns(extra))
        scores = job.run_dir / "scores.parquet"
        if scores.exists():
            means.append(job_means(pl.read_parquet(scores)).with_columns(extra))
    for name, dfs in frames.items():
        _atomic_parquet(pl.concat(dfs, how="diagonal_relaxed"), sweep_dir / f"{name}.parquet")
    if means:
        across = across_jobs(pl.concat(means, how="diagonal_relaxed"), keys)
        _atomic_parquet(across, sweep_dir / "sweep_analysis.parquet")
    return sweep_dir


def across_jobs(means: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Statistics over replications: jobs that differ only in seed-like keys are pooled."""
    by = ["state", "family", *[f"sweep.{k}" for k in keys if k not in SEED_KEYS]]
    rows: list[dict[str, Any]] = []
    for group, df in means.drop_nulls("mean").group_by(by, maintain_order=True):
        vals = df["mean"].to_list()
        n = len(vals)
        mean = sum(vals) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
        half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) if sd is not None else None
        rows.append({**dict(zip(by, group, strict=True)), "statistic": "mean_over_jobs", "value": mean,
                     "sd": sd, "ci_low": mean - half if half is not None else None,
                     "ci_high": mean + half if half is not None else None, "n_jobs": n})
    return pl.DataFrame(rows)
