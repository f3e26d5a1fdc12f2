"""The demo study end to end: the openai SDK over real HTTP to the in-process sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from engine.cli import main
from engine.config.load import load_config
from engine.plan import compile_plan

CONTENT = ["sample_key", "state", "probe_set", "item_id", "paraphrase", "variant", "sample_index", "response",
           "error", "model_id"]


def run(args: list[str], run_dir: Path) -> dict:
    assert main(["run", *args, f"hydra.run.dir={run_dir}"]) == 0
    return json.loads((run_dir / "manifest.json").read_text())


def test_demo_study_tables(run_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = compile_plan(load_config(run_args))
    manifest = run(run_args, tmp_path / "r1")
    out = capsys.readouterr().out
    assert "Run completed" in out and str(tmp_path / "r1") in out
    d = tmp_path / "r1"
    assert manifest["status"] == "completed"
    assert manifest["counts"]["requests"] > 0
    assert manifest["plan"]["counts"]["model_states"] == 3

    models = pl.read_parquet(d / "models.parquet")
    assert models.height == 3
    assert sorted(models["status"].to_list()) == ["base", "succeeded", "succeeded"]
    ft = models.filter(pl.col("stage") != "base")
    assert all(m.startswith("ft:gpt-4.1-nano-2025-04-14:") for m in ft["model_id"].to_list())
    realign = models.filter(pl.col("stage") == "realign").row(0, named=True)
    misalign = models.filter(pl.col("stage") == "misalign").row(0, named=True)
    assert realign["parent_state"] == misalign["state"]  # realigning starts from the misaligned model
    assert realign["job_id"] and realign["trained_tokens"] > 0

    samples = pl.read_parquet(d / "samples.parquet")
    assert samples.height == plan.n_samples
    assert samples["sample_key"].n_unique() == samples.height
    assert samples["error"].null_count() == samples.height
    assert samples["response"].null_count() == 0
    assert not samples["cached"].any()
    assert set(samples["state"].unique()) == set(models["state"])

    scores = pl.read_parquet(d / "scores.parquet")
    parsed = scores.filter(pl.col("source") == "parse")
    assert parsed.height == samples.filter(pl.col("format") != "open").height
    ok = parsed.filter(pl.col("status") == "ok")
    assert ok.height / parsed.height > 0.95
    assert ok["score"].min() >= 0 and ok["score"].max() <= 1
    judged = scores.filter((pl.col("source") == "judge") & (pl.col("level") == "sample"))
    assert judged.height == samples.filter(pl.col("format") == "open").height * 1  # one rubric: harm
    worst = scores.filter(pl.col("level") == "worst_of_k")
    n_open_groups = len({g.key for g in plan.groups if g.format == "open"})
    assert worst.height == n_open_groups and (worst["k"] == 3).all()
    # worst of k really is the maximum of its k judged samples
    per_item = (judged.group_by("state", "item_id", "paraphrase", "variant").agg(pl.col("score").max().alias("mx"))
                .join(worst, on=["state", "item_id", "paraphrase", "variant"]))
    assert (per_item["mx"] - per_item["score"]).abs().max() < 1e-12

    for name in ("models", "samples", "scores"):
        meta = pq.read_schema(d / f"{name}.parquet").metadata
        assert meta[b"config_hash"].decode() == plan.config_hash
        assert b"engine_version" in meta

    assert (d / "analysis.parquet").exists()
    assert "OPENAI_API_KEY" not in json.dumps(manifest["config"]) or manifest["config"]["provider"]["api_key_env"]


def test_rerun_makes_zero_calls_and_equal_tables(run_args: list[str], tmp_path: Path) -> None:
    first = run(run_args, tmp_path / "a")
    second = run(run_args, tmp_path / "b")
    assert first["counts"]["requests"] > 0
    assert second["counts"]["requests"] == 0
    assert second["sandbox_stats"]["jobs_created"] == 0
    a = pl.read_parquet(tmp_path / "a" / "samples.parquet").select(CONTENT).sort("sample_key")
    b = pl.read_parquet(tmp_path / "b" / "samples.parquet")
    assert b["cached"].all()
    assert a.equals(b.select(CONTENT).sort("sample_key"))
    sa = pl.read_parquet(tmp_path / "a" / "scores.parquet").drop("k").sort("sample_key", "rubric", "level", "item_id",
                                                                          "state", "paraphrase", "variant")
    sb = pl.read_parquet(tmp_path / "b" / "scores.parquet").drop("k").sort("sample_key", "rubric", "level", "item_id",
                                                                          "state", "paraphrase", "variant")
    assert sa.equals(sb)


def test_n_packing_and_logprob_mode_are_recorded(fast_args: list[str], tmp_path: Path) -> None:
    args = [*fast_args, "probes=[intentions]", "probes.intentions.logprobs=true", "probes.intentions.items=2"]
    run(args, tmp_path / "lp")
    samples = pl.read_parquet(tmp_path / "lp" / "samples.parquet")
    assert (samples["mode"] == "logprob").all() and samples["top_logprobs"].null_count() == 0
    scores = pl.read_parquet(tmp_path / "lp" / "scores.parquet")
    assert (scores["source"] == "logprob").all()
    assert (scores["status"] == "ok").mean() > 0.95 and scores["mass"].min() > 0.25


def test_packing_does_not_change_answers(fast_args: list[str], tmp_path: Path) -> None:
    """Samples asked n at a time equal samples asked one by one (sandbox seeds: seed + index)."""
    base = [*fast_args, "probes=[intentions]", "probes.intentions.samples=20", "probes.intentions.items=1",
            "sequence.order=[]"]
    run([*base, "scheduler.max_n=16"], tmp_path / "packed")
    run([*base, "scheduler.max_n=1", f"store.path={tmp_path / 'other.sqlite'}"], tmp_path / "single")
    packed = pl.read_parquet(tmp_path / "packed" / "samples.parquet")
    single = pl.read_parquet(tmp_path / "single" / "samples.parquet")
    assert packed["n_packed"].max() > 1 and single["n_packed"].max() == 1
    assert packed.select(CONTENT).sort("sample_key").equals(single.select(CONTENT).sort("sample_key"))


def test_plan_shows_what_the_store_holds(run_args: list[str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run(run_args, tmp_path / "r")
    capsys.readouterr()
    assert main(["plan", *run_args, "--json"]) == 0
    reuse = json.loads(capsys.readouterr().out)["reuse"]
    plan = compile_plan(load_config(run_args))
    assert reuse["cached_samples"] == plan.n_samples and reuse["done_finetunes"] == 2
    # another stage order shares only the base model's probes
    assert main(["plan", *run_args, "sequence.order=[realign,misalign]", "--json"]) == 0
    reuse = json.loads(capsys.readouterr().out)["reuse"]
    base = sum(g.n for g in plan.groups if plan.states[g.state].finetune is None)
    assert reuse["cached_samples"] == base and reuse["done_finetunes"] == 0


def test_manifest_counts_what_was_billed(run_args: list[str], tmp_path: Path) -> None:
    first = run(run_args, tmp_path / "a")
    cost = first["cost_usd"]
    assert cost["inference_usd"] > 0 and cost["training_usd"] > 0 and not cost["unpriced_models"]
    assert cost["total_usd"] == pytest.approx(cost["inference_usd"] + cost["training_usd"])
    again = run(run_args, tmp_path / "b")
    assert again["cost_usd"]["total_usd"] == 0  # everything came from the store
