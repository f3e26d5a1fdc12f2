"""Crash safety: a run killed with SIGKILL resumes without repeating finished work."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from tests.run.conftest import FAST, SMALL

CONTENT = ["sample_key", "state", "probe_set", "item_id", "paraphrase", "variant", "sample_index", "response",
           "error", "model_id"]
SLOW = ["sandbox.latency.mean_ms=40", "scheduler.concurrency=4", "scheduler.max_n=2"]


def engine_cmd(tmp: Path, store: str, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "engine", "run", *FAST, *SMALL, *SLOW, f"store.path={tmp / store}",
            f"store.cache_dir={tmp / 'cache'}", f"hydra.run.dir={run_dir}"]


def stored_responses(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM responses").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # the uninterrupted reference, in its own store
    ref = subprocess.run(engine_cmd(tmp_path, "ref.sqlite", tmp_path / "ref"), cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]

    # a run killed mid-way through sampling
    cmd = engine_cmd(tmp_path, "store.sqlite", tmp_path / "run")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while stored_responses(tmp_path / "store.sqlite") < 60 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = stored_responses(tmp_path / "store.sqlite")
    assert before >= 60

    # the same command again finishes the study
    resumed = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    ref_manifest = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["samples_cached"] + counts["judge_cached"] >= before  # nothing finished was asked again
    # the provider holds exactly one job per fine-tune: none was created twice across the crash
    states = list((tmp_path / "sandbox").glob("*/state.json"))
    assert len(states) == 1
    jobs = json.loads(states[0].read_text())["jobs"]
    assert len(jobs) == 2 and len({j["metadata"]["engine_key"] for j in jobs}) == 2
    assert counts["requests"] < ref_manifest["counts"]["requests"]

    for table, cols in (("samples", CONTENT), ("scores", None)):
        a = pl.read_parquet(tmp_path / "ref" / f"{table}.parquet")
        b = pl.read_parquet(tmp_path / "run" / f"{table}.parquet")
        if cols:
            a, b = a.select(cols), b.select(cols)
        keys = [c for c in ("sample_key", "rubric", "level", "state", "item_id", "paraphrase", "variant")
                if c in a.columns]
        assert a.sort(keys).equals(b.sort(keys)), table
    models_a = pl.read_parquet(tmp_path / "ref" / "models.parquet").drop("training_cost_usd").sort("state")
    models_b = pl.read_parquet(tmp_path / "run" / "models.parquet").drop("training_cost_usd").sort("state")
    assert models_a.equals(models_b)
