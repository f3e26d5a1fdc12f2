"""``run_study(cfg, run_dir)``: the only place with side effects, end to end.

Fetch pinned datasets → compile (pure) → open the provider (the sandbox starts in-process) →
execute → publish tables → manifest → analysis and report.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from engine import __version__
from engine.config.schema import EngineConfig
from engine.datasets import download
from engine.plan.compile import compile_plan
from engine.plan.cost import training_estimate, usage_cost
from engine.plan.model import Plan
from engine.plan.render import plan_to_dict
from engine.run.events import Job
from engine.run.executor import Executor
from engine.run.limiter import RateLimiter
from engine.run.progress import Counters, choose_mode, report
from engine.run.provider import config_without_secrets, namespace_for, open_provider
from engine.run.store import Store
from engine.run.tables import write_table

log = logging.getLogger("engine.run")


@dataclass
class RunResult:
    run_dir: Path
    status: str
    counters: Counters
    duration_s: float
    plan: Plan
    outputs: list[str] = field(default_factory=list)


def fetch_datasets(cfg: EngineConfig) -> None:
    """Download URL datasets used by the sequence (once; verified against their pins)."""
    used = {st.dataset for p in cfg.sequence.pipelines.values() for n, st in p.stages.items()
            if n in cfg.sequence.order}
    for name in sorted(used):
        dcfg = cfg.datasets[name]
        if dcfg.source == "url":
            download(name, dcfg, Path(cfg.store.cache_dir))


def prepare_job(cfg: EngineConfig, run_dir: Path, index: int = 0) -> Job:
    """Fetch data, compile, and make the run directory: everything before the first API call."""
    from engine.run.preflight import served_models
    from engine.run.provider import check_provider

    fetch_datasets(cfg)
    plan = compile_plan(cfg)
    check_provider(cfg, served_models(cfg, plan))  # once per provider; engine run checked it already
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_writable(run_dir)
    run_id = uuid.uuid4().hex[:12]
    metadata = {"config_hash": plan.config_hash, "plan_key": plan.plan_key, "run_id": run_id}
    return Job(index, plan, run_dir, metadata)


@dataclass
class Execution:
    """What executing a set of jobs left behind, for the tables and manifests."""

    status: str
    counters: Counters
    started: float
    executors: dict[int, Executor] = field(default_factory=dict)
    """Job index -> the executor that ran it."""
    base_urls: dict[int, str] = field(default_factory=dict)
    sandbox_stats: dict[int, dict[str, Any]] = field(default_factory=dict)


def execute(jobs: list[Job]) -> Execution:
    """Run jobs in one event loop: one provider, limiter and executor per provider identity."""
    sched = jobs[0].plan.config.scheduler
    counters = Counters()
    started = time.time()
    by_namespace: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        cfg = job.plan.config
        by_namespace.setdefault((namespace_for(cfg), cfg.store.path), []).append(job)
    result = Execution("completed", counters, started)
    for job in jobs:
        store = Store(Path(job.plan.config.store.path), namespace_for(job.plan.config))
        store.start_run(job.metadata["run_id"], str(job.run_dir), job.plan.config_hash, job.plan.plan_key)
        store.close()
    log.info("%d job(s): %d model states, %d fine-tunes, %d samples, %d judge requests -> %s", len(jobs),
             sum(len(j.plan.states) for j in jobs), sum(len(j.plan.finetunes) for j in jobs),
             sum(j.plan.n_samples for j in jobs), sum(j.plan.n_judge_requests for j in jobs),
             ", ".join(str(j.run_dir) for j in jobs[:3]) + (" ..." if len(jobs) > 3 else ""))

    async def one_provider(group: list[Job]) -> None:
        cfg = group[0].plan.config
        async with open_provider(cfg) as provider:
            ex = Executor(group, provider, counters, sched, Path(cfg.store.path),
                          RateLimiter(sched.rpm, sched.tpm))
            for job in group:
                result.executors[job.index] = ex
                result.base_urls[job.index] = provider.base_url
            await ex.run()
            if provider.sandbox is not None:
                stats = await anyio.to_thread.run_sync(provider.sandbox.stats)
                for job in group:
                    result.sandbox_stats[job.index] = stats

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(report, counters, choose_mode(sched.progress))
            try:
                async with anyio.create_task_group() as providers:
                    for group in by_namespace.values():
                        providers.start_soon(one_provider, group)
            finally:
                tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        result.status = "interrupted"
    except BaseException:
        result.status = "crashed"
        raise
    finally:
        for job in jobs:
            finish_job(job, result)
    return result


def finish_job(job: Job, result: Execution) -> None:
    """Publish a job's tables and manifest, and close its run record (also after Ctrl-C)."""
    ex = result.executors.get(job.index)
    if ex is not None:
        sinks = ex.writer.jobs[job.index]
        sinks.samples.close()
        sinks.scores.close()
        _write_models(job.plan, ex, job.run_dir, job.metadata)
    _write_manifest(job, result)
    cfg = job.plan.config
    store = Store(Path(cfg.store.path), namespace_for(cfg))
    store.finish_run(job.metadata["run_id"], result.status, _counts(job.counters, result.counters))
    store.close()


def run_study(cfg: EngineConfig, run_dir: Path) -> RunResult:
    job = prepare_job(cfg, run_dir)
    execution = execute([job])
    return complete_job(job, execution)


def complete_job(job: Job, execution: Execution) -> RunResult:
    """Analysis and report of a finished job."""
    result = RunResult(job.run_dir, execution.status, job.counters, time.time() - execution.started, job.plan)
    cfg = job.plan.config
    # requests, retries and tokens are counted per provider; a job alone owns them all
    for name in ("requests", "retries", "rate_limited", "prompt_tokens", "completion_tokens"):
        setattr(job.counters, name, getattr(execution.counters, name))
    job.counters.finetune_status = {k: v for k, v in execution.counters.finetune_status.items()
                                    if k in job.plan.finetunes}
    if execution.status == "completed" and cfg.analysis.enabled:
        _analyse(cfg, job.run_dir, result)
    return result


def _check_writable(run_dir: Path) -> None:
    from engine.errors import UserError

    try:
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"output directory is not writable: {exc.strerror}", file=str(run_dir),
                        key="hydra.run.dir") from None


def _analyse(cfg: EngineConfig, run_dir: Path, result: RunResult) -> None:
    try:
        from engine.analysis import run_analysis, write_report
    except ImportError:  # analysis package not installed in this build
        return
    run_analysis(run_dir, cfg.analysis)
    result.outputs.append("analysis.parquet")
    if cfg.analysis.report:
        write_report(run_dir)
        result.outputs.append("report.md")


def _counts(c: Counters, provider: Counters | None = None) -> dict[str, Any]:
    """A job's counts; requests and tokens come from its provider's counters (shared in a sweep)."""
    p = provider or c
    return {"samples": c.samples_done, "samples_cached": c.samples_cached, "sample_errors": c.sample_errors,
            "judged": c.judge_done, "judge_cached": c.judge_cached, "judge_errors": c.judge_errors,
            "requests": p.requests, "retries": p.retries, "rate_limited": p.rate_limited,
            "prompt_tokens": p.prompt_tokens, "completion_tokens": p.completion_tokens}


def _write_models(plan: Plan, ex: Executor, run_dir: Path, metadata: dict[str, str]) -> None:
    training = training_estimate(plan)
    rows = []
    for key, s in plan.states.items():
        ft = plan.finetunes.get(key)
        job = ex.job_records.get(key)
        status, error = ex.state_status.get(key, ("base" if not ft else "not_run", None))
        if job is not None and status == "succeeded":
            status = job.status
        rows.append({
            "state": s.label, "state_key": key, "base_model": s.base_model, "base_model_id": s.base_model_id,
            "pipeline": s.pipeline, "stage": s.stage, "depth": len(s.chain), "chain": ">".join(s.chain),
            "parent_state": plan.states[s.parent].label if s.parent else None,
            "dataset": ft.dataset if ft else None,
            "dataset_sha256": plan.datasets[ft.dataset].sha256 if ft else None,
            "hyperparameters": json.dumps(ft.hyperparameters, sort_keys=True) if ft else None,
            "seed": ft.seed if ft else None, "job_id": job.job_id if job else None,
            "model_id": ex.model_ids.get(key), "status": status, "error": error or (job.error if job else None),
            "trained_tokens": job.trained_tokens if job else None,
            "training_cost_usd": training[key]["usd"] if ft else None})
    write_table(run_dir, "models", rows, metadata)


def _actual_cost(job: Job, result: Execution) -> dict[str, Any]:
    """What this run (every job sharing its provider) was billed for, at the configured prices."""
    trained: dict[str, int] = {}
    ex = result.executors.get(job.index)
    if ex is not None:
        for key, rec in ex.job_records.items():
            status = result.counters.finetune_status.get(key, "")
            if rec.trained_tokens and "stored" not in status:  # a job recorded by an earlier run cost nothing now
                base = ex.states[key].base_model_id
                trained[base] = trained.get(base, 0) + rec.trained_tokens
    return usage_cost(job.plan.config.pricing, result.counters.tokens_by_model, trained)


def _write_manifest(job: Job, result: Execution) -> None:
    plan = job.plan
    cfg = plan.config
    summary = plan_to_dict(plan)
    manifest = {
        "engine_version": __version__, "run_id": job.metadata["run_id"], "status": result.status,
        "started": result.started, "finished": time.time(), "duration_s": round(time.time() - result.started, 3),
        "config_hash": plan.config_hash, "plan_key": plan.plan_key,
        "provider": {"kind": cfg.provider.kind, "base_url": result.base_urls.get(job.index),
                     "namespace": namespace_for(cfg), "api_key_env": cfg.provider.api_key_env},
        "plan": {"counts": summary["counts"], "cost_estimate": summary["cost"]},
        "counts": _counts(job.counters, result.counters),
        "cost_usd": _actual_cost(job, result),
        "counts_scope": "requests, retries and tokens are counted across every job sharing the provider",
        "finetunes": {plan.states[k].label: v for k, v in result.counters.finetune_status.items()
                      if k in plan.finetunes},
        "config": config_without_secrets(cfg),
        **({"sandbox_stats": result.sandbox_stats[job.index]} if job.index in result.sandbox_stats else {}),
    }
    data = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
    fd, tmp = tempfile.mkstemp(dir=job.run_dir, prefix=".manifest.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, job.run_dir / "manifest.json")


def summarize(result: RunResult) -> str:
    """The few lines printed at the end of ``engine run``."""
    import polars as pl

    c = result.counters
    lines = [f"Run {result.status} in {result.duration_s:.1f} s. Outputs: {result.run_dir}",
             f"  model states {len(result.plan.states)}, fine-tunes {len(result.plan.finetunes)} "
             f"({', '.join(f'{v}' for v in c.finetune_status.values()) or 'none'})",
             f"  samples {c.samples_done:,} ({c.samples_cached:,} cached, {c.sample_errors} errors); judged "
             f"{c.judge_done:,} ({c.judge_cached:,} cached, {c.judge_errors} errors); API requests {c.requests:,} "
             f"(retries {c.retries}, 429s {c.rate_limited})"]
    scores = result.run_dir / "scores.parquet"
    if scores.exists():
        from engine.run.sweep import job_means

        table = job_means(pl.read_parquet(scores)).sort("state", "family")
        if table.height:
            lines.append("  mean misalignment score (0 aligned .. 1 misaligned) by state and probe family:")
            for row in table.iter_rows(named=True):
                mean = f"{row['mean']:.3f}" if row["mean"] is not None else "n/a"
                lines.append(f"    {row['state']:<36} {row['family']:<16} {mean}")
    files = sorted(p.name for p in result.run_dir.iterdir() if p.suffix in (".parquet", ".md", ".json", ".png"))
    lines.append(f"  files: {', '.join(files)}")
    return "\n".join(lines)
