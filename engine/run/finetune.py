"""Fine-tuning jobs: upload once, create once, poll until done.

Each distinct training file is uploaded once (the store remembers its file id by upload key).
A job is created with metadata carrying the fine-tune's plan key, and before creating one the
provider is asked for a job with that metadata, so a crash between creating and recording a job
never creates (or pays for) a second one.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from engine.config.schema import SchedulerConfig
from engine.plan.model import FineTuneNode
from engine.run.provider import Provider, RequestFailed, classify
from engine.run.store import JobRecord

T = TypeVar("T")
TERMINAL = ("succeeded", "failed", "cancelled")
METADATA_KEY = "engine_key"


async def with_retries(call: Callable[[], Awaitable[T]], sched: SchedulerConfig, what: str) -> T:
    """Retry transient failures of a control-plane call with backoff and jitter."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:  # noqa: BLE001
            failure = exc if isinstance(exc, RequestFailed) else classify(exc)
            attempt += 1
            if not failure.retryable or attempt > sched.max_retries:
                raise RequestFailed(f"{what}: {failure.reason}", False) from exc
            delay = failure.retry_after or min(sched.backoff_max_s, sched.backoff_base_s * 2 ** (attempt - 1))
            await anyio.sleep(delay * (0.5 + random.random() / 2))


async def upload(provider: Provider, filename: str, data: bytes, sched: SchedulerConfig) -> str:
    async def call() -> Any:
        return await provider.client.files.create(file=(filename, data, "application/jsonl"), purpose="fine-tune")

    result = await with_retries(call, sched, f"upload of {filename}")
    return str(result.id)


async def find_job(provider: Provider, ft_key: str, sched: SchedulerConfig) -> Any | None:
    """A job created earlier for this fine-tune (by metadata), preferring live or succeeded ones."""

    async def call() -> list[Any]:
        page = await provider.client.fine_tuning.jobs.list(metadata={METADATA_KEY: ft_key}, limit=20)
        return list(page.data)

    jobs = await with_retries(call, sched, "listing fine-tuning jobs")
    jobs = [j for j in jobs if (j.metadata or {}).get(METADATA_KEY) == ft_key]
    for preferred in (lambda j: j.status == "succeeded", lambda j: j.status not in TERMINAL, lambda j: True):
        for job in jobs:
            if preferred(job):
                return job
    return None


async def create_job(provider: Provider, ft: FineTuneNode, parent_model: str, file_id: str,
                     sched: SchedulerConfig) -> Any:
    async def call() -> Any:
        return await provider.client.fine_tuning.jobs.create(
            model=parent_model, training_file=file_id, suffix=ft.suffix, seed=ft.seed,
            method={"type": "supervised", "supervised": {"hyperparameters": dict(ft.hyperparameters)}},
            metadata={METADATA_KEY: ft.key})

    return await with_retries(call, sched, "creating a fine-tuning job")


async def poll(provider: Provider, job_id: str, sched: SchedulerConfig,
               on_status: Callable[[str], None] | None = None) -> Any:
    """Poll with backoff until the job reaches a terminal state."""
    delay = sched.poll_interval_s
    while True:
        job = await with_retries(lambda: provider.client.fine_tuning.jobs.retrieve(job_id), sched,
                                 f"polling job {job_id}")
        if on_status:
            on_status(job.status)
        if job.status in TERMINAL:
            return job
        await anyio.sleep(delay)
        delay = min(sched.poll_max_s, delay * 1.5)


def record_of(ft_key: str, job: Any) -> JobRecord:
    error = None
    if job.status != "succeeded":
        err = getattr(job, "error", None)
        error = (getattr(err, "message", None) or str(err)) if err else f"job {job.status}"
    return JobRecord(ft_key, job.id, job.status, job.fine_tuned_model, error, getattr(job, "trained_tokens", None))
