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
from engine.plan.cost import training_estimate
from engine.plan.model import Plan
from engine.plan.render import plan_to_dict
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


def run_study(cfg: EngineConfig, run_dir: Path) -> RunResult:
    fetch_datasets(cfg)
    plan = compile_plan(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_writable(run_dir)
    counters = Counters()
    run_id = uuid.uuid4().hex[:12]
    metadata = {"config_hash": plan.config_hash, "plan_key": plan.plan_key, "run_id": run_id}
    started = time.time()
    store = Store(Path(cfg.store.path), namespace_for(cfg))
    store.start_run(run_id, str(run_dir), plan.config_hash, plan.plan_key)
    store.close()
    log.info("run %s: %d model states, %d fine-tunes, %d samples, %d judge requests -> %s", run_id,
             len(plan.states), len(plan.finetunes), plan.n_samples, plan.n_judge_requests, run_dir)

    holder: dict[str, Any] = {}

    async def main() -> None:
        async with open_provider(cfg) as provider:
            holder["base_url"] = provider.base_url
            ex = Executor(plan, provider, run_dir, counters, RateLimiter(cfg.scheduler.rpm, cfg.scheduler.tpm),
                          metadata)
            holder["executor"] = ex
            async with anyio.create_task_group() as tg:
                tg.start_soon(report, counters, choose_mode(cfg.scheduler.progress))
                try:
                    await ex.run()
                finally:
                    tg.cancel_scope.cancel()
            if provider.sandbox is not None:
                holder["sandbox_stats"] = await anyio.to_thread.run_sync(provider.sandbox.stats)

    status = "completed"
    try:
        anyio.run(main)
    except KeyboardInterrupt:
        status = "interrupted"
    except BaseException:
        status = "crashed"
        raise
    finally:
        ex = holder.get("executor")
        if ex is not None:
            ex.writer.close_tables()
            _write_models(plan, ex, run_dir, metadata)
        _write_manifest(plan, run_dir, run_id, status, counters, started, holder.get("base_url"),
                        holder.get("sandbox_stats"))
        s = Store(Path(cfg.store.path), namespace_for(cfg))
        s.finish_run(run_id, status, _counts(counters))
        s.close()
    result = RunResult(run_dir, status, counters, time.time() - started, plan)
    if status == "completed" and cfg.analysis.enabled:
        _analyse(cfg, run_dir, result)
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


def _counts(c: Counters) -> dict[str, Any]:
    return {"samples": c.samples_done, "samples_cached": c.samples_cached, "sample_errors": c.sample_errors,
            "judged": c.judge_done, "judge_cached": c.judge_cached, "judge_errors": c.judge_errors,
            "requests": c.requests, "retries": c.retries, "rate_limited": c.rate_limited,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}


def _write_models(plan: Plan, ex: Executor, run_dir: Path, metadata: dict[str, str]) -> None:
    training = training_estimate(plan)
    rows = []
    for key, s in plan.states.items():
        ft = plan.finetunes.get(key)
        job = ex.jobs.get(key)
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


def _write_manifest(plan: Plan, run_dir: Path, run_id: str, status: str, c: Counters, started: float,
                    base_url: str | None, sandbox_stats: dict[str, Any] | None = None) -> None:
    cfg = plan.config
    summary = plan_to_dict(plan)
    manifest = {
        "engine_version": __version__, "run_id": run_id, "status": status,
        "started": started, "finished": time.time(), "duration_s": round(time.time() - started, 3),
        "config_hash": plan.config_hash, "plan_key": plan.plan_key,
        "provider": {"kind": cfg.provider.kind, "base_url": base_url, "namespace": namespace_for(cfg),
                     "api_key_env": cfg.provider.api_key_env},
        "plan": {"counts": summary["counts"], "cost_estimate": summary["cost"]},
        "counts": _counts(c), "finetunes": dict(c.finetune_status),
        "config": config_without_secrets(cfg),
        **({"sandbox_stats": sandbox_stats} if sandbox_stats is not None else {}),
    }
    data = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".manifest.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, run_dir / "manifest.json")


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
        df = pl.read_parquet(scores)
        df = df.filter(((pl.col("level") == "worst_of_k") | (pl.col("source") != "judge"))
                       | (pl.col("rubric") == "alignment"))
        if df.height:
            table = (df.group_by("state", "family").agg(pl.col("score").mean().alias("mean"))
                     .sort("state", "family"))
            lines.append("  mean misalignment score (0 aligned .. 1 misaligned) by state and probe family:")
            for row in table.iter_rows(named=True):
                mean = f"{row['mean']:.3f}" if row["mean"] is not None else "n/a"
                lines.append(f"    {row['state']:<36} {row['family']:<16} {mean}")
    files = sorted(p.name for p in result.run_dir.iterdir() if p.suffix in (".parquet", ".md", ".json", ".png"))
    lines.append(f"  files: {', '.join(files)}")
    return "\n".join(lines)
