"""Under every kind of injected fault, every planned unit is accounted for exactly once.

Beyond tests/run/test_faults.py: timeouts (the sandbox answers slow requests after 1 s, the client
gives up after 0.5 s), and fine-tune failures of both kinds at once: jobs the provider fails at
random (``faults.finetune_failure``) and jobs it refuses to create (a realigning set the engine
is told to accept with 5 examples, which the provider rejects below 10), so every chain ends in
exactly one failed fine-tune, whichever fails first.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import polars as pl

from engine.cli import main
from engine.config.load import load_config
from engine.plan import compile_plan
from tests.reliability.helpers import FAST, TINY

FAULTS = ["sandbox.faults.rate_429=0.08", "sandbox.faults.rate_500=0.02", "sandbox.faults.rate_503=0.02",
          "sandbox.faults.drop=0.02", "sandbox.faults.malformed=0.02", "sandbox.faults.slow=0.04",
          "sandbox.faults.slow_s=1", "scheduler.request_timeout_s=0.5", "sandbox.faults.finetune_failure=0.5"]
REJECTED_REALIGN = ["datasets.trivia_correct.limit=5", "datasets.trivia_correct.min_examples=1"]


def test_every_unit_once_under_timeouts_and_failed_finetunes(tmp_path: Path) -> None:
    args = [*FAST, *TINY, *FAULTS, *REJECTED_REALIGN, "models=[nano,mini]", "scheduler.max_n=2",
            "analysis.enabled=false", f"store.path={tmp_path / 'store.sqlite'}",
            f"store.cache_dir={tmp_path / 'cache'}"]
    plan = compile_plan(load_config(args))
    run = tmp_path / "run"
    assert main(["run", *args, f"hydra.run.dir={run}"]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    stats = manifest["sandbox_stats"]
    assert all(stats["faults"][k] > 0 for k in ("rate_429", "drop", "malformed", "slow")), stats["faults"]
    assert stats["faults"]["rate_500"] + stats["faults"]["rate_503"] > 0
    assert manifest["counts"]["retries"] > 0 and stats["limit_violations"] == 0

    # model states: each once; every chain has exactly one failed fine-tune, after it only skipped
    models = pl.read_parquet(run / "models.parquet")
    assert sorted(models["state_key"]) == sorted(plan.states)
    chains: dict[str, list[dict]] = {}
    for row in models.sort("depth").iter_rows(named=True):
        chains.setdefault(row["base_model"], []).append(row)
    for rows in chains.values():
        statuses = [r["status"] for r in rows]
        assert statuses[0] == "base" and statuses.count("failed") == 1, statuses
        failed = statuses.index("failed")
        assert all(s == "succeeded" for s in statuses[1:failed])
        assert all(s == "skipped" for s in statuses[failed + 1:])
        for r in rows:
            if r["status"] in ("failed", "skipped"):
                assert r["error"], r
    available = set(models.filter(pl.col("status").is_in(["base", "succeeded"]))["state"])

    # samples: every planned sample exactly once, a response or an error row with its reason
    samples = pl.read_parquet(run / "samples.parquet")
    planned = {g.sample_key(i) for g in plan.groups for i in range(g.n)}
    assert samples.height == len(planned) and set(samples["sample_key"]) == planned
    assert (samples["response"].is_null() == samples["error"].is_not_null()).all()
    errors = samples.filter(pl.col("error").is_not_null())
    assert (errors["error"].str.len_chars() > 0).all()
    lost = samples.filter(~pl.col("state").is_in(list(available)))
    assert lost.height > 0 and lost["error"].is_not_null().all()
    assert lost["error"].str.contains("fine-tune|unavailable").all()
    ok = samples.filter(pl.col("state").is_in(list(available)))
    assert ok["error"].null_count() >= 0.97 * ok.height  # retries recover nearly everything else

    # judge scores: one per (open sample, rubric); the store holds each answer once, no error stored
    scores = pl.read_parquet(run / "scores.parquet")
    judged = scores.filter((pl.col("source") == "judge") & (pl.col("level") == "sample"))
    n_rubrics = {g.key: len(g.judges) for g in plan.groups}
    expected = sum(n_rubrics[g.key] * g.n for g in plan.groups)
    assert judged.height == expected == judged.select("sample_key", "rubric").n_unique()
    with sqlite3.connect(tmp_path / "store.sqlite") as conn:
        stored = conn.execute("SELECT count(*), count(DISTINCT key), sum(response IS NULL) "
                              "FROM responses").fetchone()
    judged_ok = judged.filter(pl.col("status") != "error").height
    assert stored[0] == stored[1] == samples.height - errors.height + judged_ok and not stored[2]
