"""Fine-tuning jobs: upload once, create once, poll until done.

Each distinct training file is uploaded once (the store remembers its file id by upload key).
A job is created with metadata carrying the fine-tune's plan key, and before creating one the
provider is asked for a job with that metadata, so a crash between creating and recording a job
never creates (or pays for) a second one. Two runs that create a job for the same fine-tune at
the same moment (concurrent runs on one store), or a create retried after an answer was lost,
converge: right after creating, the jobs with that metadata are listed, everyone keeps the
oldest live one, and a newer duplicate is cancelled before it trains.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio

from engine.config.schema import SchedulerConfig
from engine.plan.model import FineTuneNode
from engine.run.provider import Provider, RequestFailed, classify
from engine.run.store import JobRecord

if TYPE_CHECKING:
    from openai.types.fine_tuning import SupervisedHyperparametersParam
    from openai.types.fine_tuning.job_create_params import Method

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
    """The id of the training file: one uploaded before (a run killed between uploading and
    recording it, or another run) if there is one, else a new upload.

    File names carry the content's sha256, so a file with the same name and size is the same
    data. After uploading, the oldest such file is used, so that two uploads racing each other
    (two chains of one run, or two runs) agree on one file, and so on one job id.
    """

    async def call() -> Any:
        return await provider.client.files.create(file=(filename, data, "application/jsonl"),
                                                  purpose="fine-tune")

    existing = await find_file(provider, filename, len(data), sched)
    if existing is not None:
        return existing
    result = await with_retries(call, sched, f"upload of {filename}")
    return await find_file(provider, filename, len(data), sched) or str(result.id)


async def find_file(provider: Provider, filename: str, size: int, sched: SchedulerConfig) -> str | None:
    """The oldest fine-tune file with this name and size, or None (also when listing fails)."""

    async def call() -> list[Any]:
        page = await provider.client.files.list(purpose="fine-tune")
        return list(page.data)

    try:
        files = await with_retries(call, sched, "listing files")
    except RequestFailed:
        return None
    same = [(i, f) for i, f in enumerate(files) if f.filename == filename and f.bytes == size
            and getattr(f, "status", None) not in ("error", "deleted")]
    if not same:
        return None
    _, oldest = min(same, key=lambda item: (item[1].created_at or 0, -item[0]))  # the list is newest first
    return str(oldest.id)


async def find_job(provider: Provider, ft_key: str, sched: SchedulerConfig, include_failed: bool = True) -> Any | None:
    """A job created earlier for this fine-tune (by metadata), preferring live or succeeded ones.

    ``include_failed=False`` ignores failed and cancelled jobs (to try a failed fine-tune again).
    """

    async def call() -> list[Any]:
        page = await provider.client.fine_tuning.jobs.list(metadata={METADATA_KEY: ft_key}, limit=20)
        return list(page.data)

    jobs = await with_retries(call, sched, "listing fine-tuning jobs")
    jobs = [j for j in jobs if (j.metadata or {}).get(METADATA_KEY) == ft_key
            and (include_failed or j.status not in ("failed", "cancelled"))]
    for preferred in (lambda j: j.status == "succeeded", lambda j: j.status not in TERMINAL, lambda j: True):
        for job in jobs:
            if preferred(job):
                return job
    return None


async def create_job(provider: Provider, ft: FineTuneNode, parent_model: str, file_id: str,
                     sched: SchedulerConfig) -> Any:
    attempts = 0

    async def call() -> Any:
        nonlocal attempts
        attempts += 1
        if attempts > 1:  # the last attempt may have created a job before its answer was lost
            earlier = await find_job(provider, ft.key, sched)
            if earlier is not None and earlier.status not in ("failed", "cancelled"):
                return earlier
        # the plan's hyperparameters are the config schema's fields, which use the API's names
        hyperparameters = cast("SupervisedHyperparametersParam", dict(ft.hyperparameters))
        method: Method = {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}
        return await provider.client.fine_tuning.jobs.create(
            model=parent_model, training_file=file_id, suffix=ft.suffix, seed=ft.seed,
            method=method, metadata={METADATA_KEY: ft.key})

    job = await with_retries(call, sched, "creating a fine-tuning job")
    return await converge(provider, ft.key, job, sched)


async def converge(provider: Provider, ft_key: str, job: Any, sched: SchedulerConfig) -> Any:
    """The job everyone keeps for this fine-tune: the oldest live one; ours is cancelled if newer.

    Whoever lists after creating sees every job created before its own, so all agree on the
    oldest (the list is newest first, which orders jobs created within the same second).
    """

    async def listing() -> list[Any]:
        page = await provider.client.fine_tuning.jobs.list(metadata={METADATA_KEY: ft_key}, limit=20)
        return list(page.data)

    try:
        jobs = await with_retries(listing, sched, "listing fine-tuning jobs")
    except RequestFailed:
        return job
    live = [(i, j) for i, j in enumerate(jobs) if (j.metadata or {}).get(METADATA_KEY) == ft_key
            and j.status not in ("failed", "cancelled")]
    if not live:
        return job
    _, oldest = min(live, key=lambda ij: (ij[1].created_at or 0, -ij[0]))
    if oldest.id == job.id:
        return job
    try:
        await with_retries(lambda: provider.client.fine_tuning.jobs.cancel(job.id), sched,
                           f"cancelling duplicate job {job.id}")
    except RequestFailed:
        pass  # it may have finished already; either way we use the oldest
    return oldest


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
    return JobRecord(ft_key, job.id, job.status, job.fine_tuned_model, error,
                     getattr(job, "trained_tokens", None))
