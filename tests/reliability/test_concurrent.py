"""Two runs of one study sharing one store at the same time.

Both talk to one standalone sandbox (``engine sandbox``), as two processes would talk to one
provider. What is guaranteed (README, Reliability):

- both finish, with equal tables, and the store passes SQLite's integrity check;
- the store holds every response once (content keys are primary keys, inserts are idempotent);
- every fine-tune has one job that trains: a job created by both at the same moment is
  cancelled by the newer creator before training, and both use the older one;
- requests are not coordinated across processes while in flight: a request both runs reach
  before either has stored its answer is sent by both, so the two runs together send at most
  twice the plan's requests; a run that starts after another finished sends none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from engine.cli import main
from tests.reliability.helpers import FAKE_KEY, FAST, KEY_ENV, TINY, Sandbox, count_rows, external, integrity

CONTENT = ["sample_key", "state", "probe_set", "item_id", "paraphrase", "variant", "sample_index", "response",
           "error", "model_id"]
SCORE_KEYS = ["sample_key", "rubric", "level", "state", "item_id", "paraphrase", "variant"]
FINETUNE_S = 2.0


def table(run: Path, name: str) -> pl.DataFrame:
    df = pl.read_parquet(run / f"{name}.parquet")
    if name == "samples":
        return df.select(CONTENT).sort("sample_key")
    if name == "scores":
        return df.drop("k").sort(SCORE_KEYS, nulls_last=True)
    return df.drop("training_cost_usd").sort("state")


def test_two_concurrent_runs_share_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store.sqlite"
    with Sandbox(tmp_path / "sandbox", [f"finetune_seconds={FINETUNE_S}", "latency.mean_ms=5"],
                 log=tmp_path / "sandbox.log") as sb:
        args = [*FAST, *TINY, *external(sb.base_url), f"store.path={store}",
                f"store.cache_dir={tmp_path / 'cache'}"]
        env = {**os.environ, KEY_ENV: FAKE_KEY}
        cmd = [sys.executable, "-m", "engine", "run", *args]
        procs = [subprocess.Popen([*cmd, f"hydra.run.dir={tmp_path / n}"], env=env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for n in ("a", "b")]
        results = [p.communicate(timeout=240) for p in procs]
        for p, (_, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, err[-3000:]
        stats = sb.stats()
        # a third run, after both: everything is in the store, nothing is asked or trained again
        monkeypatch.setenv(KEY_ENV, FAKE_KEY)
        assert main(["run", *args, f"hydra.run.dir={tmp_path / 'c'}"]) == 0
        after = sb.stats()
    state = json.loads((tmp_path / "sandbox" / "state.json").read_text())

    manifests = [json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("a", "b", "c")]
    planned = manifests[0]["plan"]["counts"]
    planned_requests = planned["sample_requests"] + planned["judge_requests"]
    sent = [m["counts"]["requests"] for m in manifests]
    assert integrity(store) == "ok"
    assert count_rows(store) == planned["samples"] + planned["judge_requests"]  # each response once
    for name in ("samples", "scores", "models"):
        a, b, c = (table(tmp_path / n, name) for n in ("a", "b", "c"))
        assert a.equals(b) and a.equals(c), name
    assert table(tmp_path / "a", "samples")["error"].null_count() == planned["samples"]

    by_key: dict[str, list[dict]] = {}
    for job in state["jobs"]:
        by_key.setdefault(job["metadata"]["engine_key"], []).append(job)
    assert len(by_key) == planned["finetunes"]
    for jobs in by_key.values():
        kept = [j for j in jobs if j["cancelled_at"] is None]
        assert len(kept) == 1  # one job trains per fine-tune ...
        for j in jobs:
            if j["cancelled_at"] is not None:  # ... a duplicate is cancelled while still validating
                assert j["cancelled_at"] < 0.2 * FINETUNE_S, j
    assert stats["jobs_created"] == sum(len(v) for v in by_key.values())

    assert stats["chat_completions"] == sent[0] + sent[1] <= 2 * planned_requests
    assert sent[2] == 0 and after["chat_completions"] == stats["chat_completions"]
    assert after["jobs_created"] == stats["jobs_created"]
    print(f"planned requests {planned_requests}; sent by the concurrent runs {sent[0]} + {sent[1]}; "
          f"fine-tune jobs created {stats['jobs_created']} for {planned['finetunes']} fine-tunes")
