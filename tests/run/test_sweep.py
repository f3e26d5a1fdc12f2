"""Sweeps: every job in one event loop with shared nodes run once; Hydra's basic launcher still works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from engine.cli import main
from engine.config.load import load_config
from engine.plan import compile_plan
from engine.plan.cost import requests_for
from tests.run.conftest import FAST, SMALL
from tests.run.test_resume import stored_responses

ORDERS = "sequence.order=[misalign,realign],[realign,misalign]"


def job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def test_sweep_runs_once_per_distinct_node(run_args: list[str], tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    assert main(["run", "-m", *run_args, "seed=0,1", ORDERS, f"hydra.sweep.dir={sweep}"]) == 0
    dirs = job_dirs(sweep)
    assert len(dirs) == 4
    plans = []
    for d in dirs:
        manifest = json.loads((d / "manifest.json").read_text())
        assert manifest["status"] == "completed"
        overrides = (d / ".hydra" / "overrides.yaml").read_text()
        plans.append(compile_plan(load_config([*run_args, *[ln[2:] for ln in overrides.splitlines()
                                                              if ln.startswith("- ") and "hydra" not in ln]])))
        samples = pl.read_parquet(d / "samples.parquet")
        assert samples.height == plans[-1].n_samples and samples["error"].null_count() == samples.height
    # the base model's probes are shared by the two orders of each seed: asked once
    distinct = {g.key: g for p in plans for g in p.groups}
    expected = sum(requests_for(g, 16) for g in distinct.values())
    expected += sum(g.n * len(g.judges) for g in distinct.values())
    total = sum(requests_for(g, 16) + g.n * len(g.judges) for p in plans for g in p.groups)
    requests = json.loads((dirs[0] / "manifest.json").read_text())["counts"]["requests"]
    assert requests == expected < total
    stats = json.loads((dirs[0] / "manifest.json").read_text())["sandbox_stats"]
    assert stats["jobs_created"] == len({k for p in plans for k in p.finetunes}) == 8

    combined = pl.read_parquet(sweep / "samples.parquet")
    assert combined.height == sum(p.n_samples for p in plans)
    assert {"job", "sweep.seed", "sweep.sequence.order"} <= set(combined.columns)
    across = pl.read_parquet(sweep / "sweep_analysis.parquet")
    assert (across["n_jobs"] == 2).all()  # seeds pooled per (state, family, order)
    assert {"sweep.sequence.order", "state", "family", "value", "ci_low", "ci_high"} <= set(across.columns)


def test_basic_launcher_still_works(run_args: list[str], tmp_path: Path) -> None:
    sweep = tmp_path / "basic"
    assert main(["run", "-m", *run_args, "seed=0,1", "hydra/launcher=basic", f"hydra.sweep.dir={sweep}"]) == 0
    dirs = job_dirs(sweep)
    assert len(dirs) == 2
    for d in dirs:
        assert json.loads((d / "manifest.json").read_text())["status"] == "completed"


def test_sweep_bad_job_stops_before_anything_runs(run_args: list[str], tmp_path: Path, capsys) -> None:
    code = main(["run", "-m", *run_args, "scheduler.concurrency=1,0", f"hydra.sweep.dir={tmp_path / 's'}"])
    assert code == 2
    assert "scheduler.concurrency" in capsys.readouterr().err
    assert not list((tmp_path / "s").glob("*/samples.parquet"))


def test_sweep_resumes_after_sigkill(tmp_path: Path) -> None:
    slow = ["sandbox.latency.mean_ms=40", "scheduler.concurrency=4", "scheduler.max_n=2"]
    cmd = [sys.executable, "-m", "engine", "run", "-m", *FAST, *SMALL, *slow, "seed=0,1",
           f"store.path={tmp_path / 'store.sqlite'}", f"store.cache_dir={tmp_path / 'cache'}",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while stored_responses(tmp_path / "store.sqlite") < 80 and time.monotonic() < deadline:
        assert proc.poll() is None
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = stored_responses(tmp_path / "store.sqlite")
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    cached = 0
    for d in job_dirs(tmp_path / "sweep"):
        manifest = json.loads((d / "manifest.json").read_text())
        assert manifest["status"] == "completed"
        samples = pl.read_parquet(d / "samples.parquet")
        assert samples.height == manifest["plan"]["counts"]["samples"]
        assert samples["error"].null_count() == samples.height
        cached += samples["cached"].sum()
    assert cached >= min(before, 80)
