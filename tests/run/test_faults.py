"""Under injected faults a study still accounts for every planned sample exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from engine.cli import main
from engine.config.load import load_config
from engine.plan import compile_plan

FAULTS = ["sandbox.faults.rate_429=0.10", "sandbox.faults.rate_500=0.015", "sandbox.faults.rate_503=0.015",
          "sandbox.faults.drop=0.01", "sandbox.faults.malformed=0.01"]


def test_faults_every_sample_exactly_once(run_args: list[str], tmp_path: Path) -> None:
    args = [*run_args, *FAULTS, "sandbox.limits.rpm=6000", "scheduler.max_n=2"]
    plan = compile_plan(load_config(args))
    assert main(["run", *args, f"hydra.run.dir={tmp_path / 'r'}"]) == 0
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    stats = manifest["sandbox_stats"]
    injected = stats["faults"]
    assert injected["rate_429"] > 0 and injected["rate_500"] + injected["rate_503"] > 0
    assert injected["drop"] + injected["malformed"] > 0
    assert stats["limit_violations"] == 0
    assert manifest["counts"]["retries"] > 0

    samples = pl.read_parquet(tmp_path / "r" / "samples.parquet")
    planned = {g.sample_key(i) for g in plan.groups for i in range(g.n)}
    assert samples.height == len(planned)
    assert set(samples["sample_key"]) == planned  # each planned sample once: a result or an error row
    errors = samples.filter(pl.col("error").is_not_null())
    assert (errors["response"].is_null()).all()
    assert errors.height <= samples.height * 0.01  # retries recover nearly everything
    scores = pl.read_parquet(tmp_path / "r" / "scores.parquet")
    judged = scores.filter((pl.col("source") == "judge") & (pl.col("level") == "sample"))
    assert judged["sample_key"].n_unique() == judged.height == samples.filter(pl.col("format") == "open").height


def test_failed_finetune_skips_descendants_and_goes_on(run_args: list[str], tmp_path: Path) -> None:
    args = [*run_args, "sandbox.faults.finetune_failure=1.0"]
    assert main(["run", *args, f"hydra.run.dir={tmp_path / 'r'}"]) == 0
    models = pl.read_parquet(tmp_path / "r" / "models.parquet").sort("depth")
    assert models["status"].to_list() == ["base", "failed", "skipped"]
    assert models["error"][1] and "unavailable" in models["error"][2]
    samples = pl.read_parquet(tmp_path / "r" / "samples.parquet")
    base = samples.filter(pl.col("state") == models["state"][0])
    assert base["error"].null_count() == base.height  # the rest of the study went on
    rest = samples.filter(pl.col("state") != models["state"][0])
    assert rest.height > 0 and rest["error"].null_count() == 0


def test_failed_finetune_is_retried_only_when_asked(run_args: list[str], tmp_path: Path) -> None:
    args = [*run_args, "sandbox.faults.finetune_failure=1.0", "sequence.order=[misalign]"]
    assert main(["run", *args, f"hydra.run.dir={tmp_path / 'a'}"]) == 0
    assert main(["run", *args, f"hydra.run.dir={tmp_path / 'b'}"]) == 0
    again = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert again["sandbox_stats"]["jobs_created"] == 0  # reported failed again, not paid for again
    assert main(["run", *args, "scheduler.retry_failed_finetunes=true", f"hydra.run.dir={tmp_path / 'c'}"]) == 0
    retried = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert retried["sandbox_stats"]["jobs_created"] == 1
    models = pl.read_parquet(tmp_path / "c" / "models.parquet")
    assert models.filter(pl.col("stage") == "misalign")["status"].to_list() == ["failed"]
