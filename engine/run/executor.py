"""Executes one or more jobs' plans against one provider: one anyio task group.

    producers (one task per model state) ──SampleJob/JudgeJob──▶ workers (scheduler.concurrency)
         │  cached results                                            │ results
         └──────────────────────────────▶ writer (one) ◀──────────────┘

A state's fine-tune starts when its parent's succeeds; its probes are queued the moment it
succeeds, while other fine-tunes still run. The jobs of a sweep are merged by content key, so a
node they share runs once. Every request goes through the shared rate limiter and is retried
with backoff; one that keeps failing becomes an error row, never a silent drop.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.config.schema import SchedulerConfig
from engine.datasets import load_text, upload_filename
from engine.plan.compile import specs_dir_of
from engine.plan.model import FineTuneNode, Plan, StateNode
from engine.run import finetune as ft_ops
from engine.run.events import Job, JudgeDone, JudgeJob, MergedGroup, SampleDone, SampleJob, merge_groups
from engine.run.limiter import RateLimiter
from engine.run.progress import Counters
from engine.run.provider import ChatResult, Provider, RequestFailed
from engine.run.store import JobRecord, Store
from engine.run.writer import Writer

LOOKUP_CHUNK = 4000


class Executor:
    def __init__(self, jobs: list[Job], provider: Provider, counters: Counters, sched: SchedulerConfig,
                 store_path: Path, limiter: RateLimiter | None = None) -> None:
        self.jobs = jobs
        self.sched = sched
        self.provider = provider
        self.counters = counters
        self.limiter = limiter or RateLimiter(sched.rpm, sched.tpm)
        self.store_path = store_path
        self.reader = Store(store_path, provider.namespace)
        self._read_lock = anyio.Lock()
        self.writer = Writer(jobs, store_path, provider.namespace, counters)
        # the merged plan: every state, fine-tune and sample group once
        self.states: dict[str, StateNode] = {}
        self.finetunes: dict[str, tuple[FineTuneNode, Plan]] = {}
        self.children: dict[str, list[str]] = {}
        for job in jobs:
            for key, s in job.plan.states.items():
                self.states.setdefault(key, s)
                self.children.setdefault(key, [])
            for key, ft in job.plan.finetunes.items():
                self.finetunes.setdefault(key, (ft, job.plan))
        for key, s in self.states.items():
            if s.parent:
                self.children[s.parent].append(key)
        self.groups = merge_groups(jobs)
        self.groups_by_state: dict[str, list[MergedGroup]] = {}
        for mg in self.groups.values():
            self.groups_by_state.setdefault(mg.group.state, []).append(mg)
        self.model_ids: dict[str, str] = {k: s.base_model_id for k, s in self.states.items() if not s.finetune}
        self.job_records: dict[str, JobRecord] = {}
        self.state_status: dict[str, tuple[str, str | None]] = {}
        self.job_slots = anyio.CapacityLimiter(sched.max_concurrent_jobs)
        counters.samples_total += sum(mg.group.n for mg in self.groups.values())
        counters.judge_total += sum(mg.group.n * len(mg.judges) for mg in self.groups.values())
        counters.finetunes_total += len(self.finetunes)
        for job in jobs:
            job.counters.samples_total = job.plan.n_samples
            job.counters.judge_total = job.plan.n_judge_requests
            job.counters.finetunes_total = len(job.plan.finetunes)

    # ---- top level ----
    async def run(self) -> None:
        events_send, events_recv = anyio.create_memory_object_stream[Any](max_buffer_size=20_000)
        jobs_send, jobs_recv = anyio.create_memory_object_stream[Any](max_buffer_size=self.sched.concurrency * 4)
        self.events = events_send
        self.jobs_send = jobs_send
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.writer.run, events_recv)
                async with events_send:
                    async with anyio.create_task_group() as workers:
                        for _ in range(self.sched.concurrency):
                            workers.start_soon(self._worker, jobs_recv.clone())
                        jobs_recv.close()
                        async with jobs_send:
                            async with anyio.create_task_group() as producers:
                                for state in self.states.values():
                                    if state.parent is None:
                                        producers.start_soon(self._state, state, producers)
        finally:
            self.reader.close()

    # ---- producers ----
    async def _state(self, state: StateNode, tg: TaskGroup) -> None:
        if state.finetune:
            record = await self._finetune(state)
            if record.status != "succeeded" or not record.model_id:
                await self._fail_subtree(state, f"fine-tune {record.status}: {record.error}")
                return
            self.model_ids[state.key] = record.model_id
        self.state_status[state.key] = ("base" if not state.finetune else "succeeded", None)
        for child in self.children[state.key]:
            tg.start_soon(self._state, self.states[child], tg)
        await self._enqueue(state)

    async def _read(self, fn: Any, *args: Any) -> Any:
        """Reads share one connection, one at a time, off the event loop."""
        async with self._read_lock:
            return await anyio.to_thread.run_sync(fn, *args)

    async def _enqueue(self, state: StateNode) -> None:
        model_id = self.model_ids[state.key]
        batch: list[MergedGroup] = []
        size = 0
        for mg in self.groups_by_state.get(state.key, []):
            batch.append(mg)
            size += mg.group.n
            if size >= LOOKUP_CHUNK:
                await self._enqueue_batch(batch, model_id)
                batch, size = [], 0
        if batch:
            await self._enqueue_batch(batch, model_id)

    async def _enqueue_batch(self, groups: list[MergedGroup], model_id: str) -> None:
        keys = [mg.group.sample_key(i) for mg in groups for i in range(mg.group.n)]
        cached = await self._read(self.reader.lookup, keys)
        judge_todo: list[tuple[MergedGroup, int, str, str]] = []
        at = 0
        for mg in groups:
            missing: list[int] = []
            for i in range(mg.group.n):
                key = keys[at]
                at += 1
                hit = cached.get(key)
                if hit is None:
                    missing.append(i)
                    continue
                await send(self.events, SampleDone(mg, i, hit.model_id, hit.response, hit.top_logprobs,
                                                  hit.prompt_tokens, hit.completion_tokens, hit.latency_ms,
                                                  hit.n_packed, True, None))
                if mg.judges:
                    judge_todo.append((mg, i, key, hit.response or ""))
            for start, count in _runs(missing, self.sched.max_n):
                await send(self.jobs_send, SampleJob(mg, model_id, start, count))
        if judge_todo:
            jkeys = [mj.spec.request_key(k) for mg, _, k, _ in judge_todo for mj in mg.judges.values()]
            jcached = await self._read(self.reader.lookup, jkeys)
            for mg, i, key, answer in judge_todo:
                for jkey, mj in mg.judges.items():
                    hit = jcached.get(mj.spec.request_key(key))
                    if hit is None:
                        await send(self.jobs_send, JudgeJob(mg, i, key, answer, jkey))
                    else:
                        await send(self.events, JudgeDone(mg, i, key, jkey, hit.response, hit.top_logprobs,
                                                         hit.prompt_tokens, hit.completion_tokens, hit.latency_ms,
                                                         True, None))

    async def _fail_subtree(self, state: StateNode, reason: str) -> None:
        """A state is unavailable: its samples and its descendants' become error rows."""
        stack = [(state, reason)]
        while stack:
            s, why = stack.pop()
            self.state_status[s.key] = ("failed" if s is state else "skipped", why)
            for mg in self.groups_by_state.get(s.key, []):
                for i in range(mg.group.n):
                    await send(self.events, SampleDone(mg, i, None, None, None, None, None, None, None, False, why))
                    for jkey in mg.judges:
                        await send(self.events, JudgeDone(mg, i, mg.group.sample_key(i), jkey, None, None, None,
                                                         None, None, False, why))
            for child in self.children[s.key]:
                stack.append((self.states[child], f"parent {s.label} unavailable: {why}"))

    # ---- fine-tunes ----
    async def _finetune(self, state: StateNode) -> JobRecord:
        ft, _ = self.finetunes[state.key]
        status = self.counters.finetune_status
        store_rec = await self._read(self.reader.job, ft.key)
        if store_rec and store_rec.status in ("failed", "cancelled") and self.sched.retry_failed_finetunes:
            store_rec = None  # try again with a new job
        if store_rec and store_rec.status == "succeeded":
            status[state.key] = "succeeded (stored)"
            self.job_records[state.key] = store_rec
            return store_rec
        async with self.job_slots:
            try:
                record = await self._run_job(state, store_rec)
            except RequestFailed as exc:
                record = JobRecord(ft.key, store_rec.job_id if store_rec else "", "failed", None, exc.reason, None)
        status[state.key] = record.status
        self.job_records[state.key] = record
        await anyio.to_thread.run_sync(self._put, "put_job", record)
        return record

    def _put(self, method: str, *args: Any) -> None:
        """Registry writes (rare): their own connection, committed at once."""
        store = Store(self.store_path, self.provider.namespace)
        try:
            getattr(store, method)(*args)
        finally:
            store.close()

    async def _run_job(self, state: StateNode, store_rec: JobRecord | None) -> JobRecord:
        ft, plan = self.finetunes[state.key]
        cfg = plan.config
        status = self.counters.finetune_status
        job = None
        if store_rec and store_rec.status not in ("failed", "cancelled"):
            job = await ft_ops.with_retries(lambda: self.provider.client.fine_tuning.jobs.retrieve(store_rec.job_id),
                                            self.sched, "retrieving a recorded job")
        if job is None:
            job = await ft_ops.find_job(self.provider, ft.key, self.sched,
                                        include_failed=not self.sched.retry_failed_finetunes)
        if job is None:
            info = plan.datasets[ft.dataset]
            file_id = await self._read(self.reader.file_id, ft.dataset_key)
            if file_id is None:
                status[state.key] = "uploading"
                text = load_text(ft.dataset, cfg.datasets[ft.dataset], specs_dir_of(cfg), Path(cfg.store.cache_dir))
                assert text is not None and info.sha256, "datasets are fetched before the run"
                filename = upload_filename(ft.dataset, info.sha256)
                file_id = await ft_ops.upload(self.provider, filename, text.encode(), self.sched)
                await anyio.to_thread.run_sync(self._put, "put_file", ft.dataset_key, file_id, filename, info.sha256)
            status[state.key] = "creating"
            job = await ft_ops.create_job(self.provider, ft, self.model_ids[ft.parent_state], file_id, self.sched)
        await anyio.to_thread.run_sync(self._put, "put_job", ft_ops.record_of(ft.key, job))
        if job.status not in ft_ops.TERMINAL:
            job = await ft_ops.poll(self.provider, job.id, self.sched, lambda s: status.__setitem__(state.key, s))
        return ft_ops.record_of(ft.key, job)

    # ---- workers ----
    async def _worker(self, jobs: MemoryObjectReceiveStream[Any]) -> None:
        events = self.events.clone()
        async with jobs, events:
            async for job in jobs:
                if isinstance(job, SampleJob):
                    await self._samples(job, events)
                else:
                    await self._judge(job, events)

    async def _request(self, *, model: str, messages: list[dict[str, str]], n: int, temperature: float, seed: int,
                       max_tokens: int, top_logprobs: int, est_tokens: int) -> ChatResult:
        attempt = 0
        c = self.counters
        while True:
            await self.limiter.acquire(est_tokens)
            c.requests += 1
            try:
                result = await self.provider.chat(model=model, messages=messages, n=n, temperature=temperature,
                                                  seed=seed, max_tokens=max_tokens, top_logprobs=top_logprobs,
                                                  timeout=self.sched.request_timeout_s)
            except RequestFailed as failure:
                if failure.rate_limited:
                    c.rate_limited += 1
                    self.limiter.on_rate_limited(failure.retry_after)
                attempt += 1
                if not failure.retryable or attempt > self.sched.max_retries:
                    raise RequestFailed(f"{failure.reason} (after {attempt} attempts)", False) from failure
                c.retries += 1
                delay = failure.retry_after or min(self.sched.backoff_max_s,
                                                   self.sched.backoff_base_s * 2 ** (attempt - 1))
                await anyio.sleep(delay * (0.5 + random.random() / 2))
                continue
            self.limiter.observe(result.headers)
            c.prompt_tokens += result.prompt_tokens
            c.completion_tokens += result.completion_tokens
            used = c.tokens_by_model.setdefault(model, [0, 0])
            used[0] += result.prompt_tokens
            used[1] += result.completion_tokens
            return result

    async def _samples(self, job: SampleJob, events: MemoryObjectSendStream[Any]) -> None:
        mg = job.mg
        g = mg.group
        try:
            res = await self._request(
                model=job.model_id, messages=g.request_payload()["messages"], n=job.count,
                temperature=g.temperature, seed=g.seed + job.start, max_tokens=g.max_tokens,
                top_logprobs=g.top_logprobs, est_tokens=g.est_prompt_tokens + g.max_tokens * job.count)
        except RequestFailed as failure:
            for i in range(job.start, job.start + job.count):
                await send(events, SampleDone(mg, i, job.model_id, None, None, None, None, None, job.count, False,
                                             failure.reason))
                for jkey in mg.judges:
                    await send(events, JudgeDone(mg, i, g.sample_key(i), jkey, None, None, None, None, None, False,
                                                f"sample failed: {failure.reason}"))
            return
        for j in range(job.count):
            top = res.top_logprobs[j]
            await send(events, SampleDone(mg, job.start + j, job.model_id, res.texts[j],
                                         json.dumps(top, sort_keys=True) if top is not None else None,
                                         res.prompt_tokens, res.completion_tokens, res.latency_ms, job.count, False,
                                         None))
        for j in range(job.count):
            i = job.start + j
            for jkey in mg.judges:
                await self._judge(JudgeJob(mg, i, g.sample_key(i), res.texts[j] or "", jkey), events)

    async def _judge(self, job: JudgeJob, events: MemoryObjectSendStream[Any]) -> None:
        spec = job.mg.judges[job.judge].spec
        key = spec.request_key(job.sample_key)
        prompt = spec.rubric.render(job.mg.group.messages[-1][1], job.answer)
        try:
            res = await self._request(model=spec.model, messages=[{"role": "user", "content": prompt}], n=1,
                                      temperature=spec.temperature, seed=int(key[:8], 16) % (2**31 - 1),
                                      max_tokens=spec.max_tokens, top_logprobs=spec.top_logprobs,
                                      est_tokens=len(prompt) // 4 + spec.max_tokens)
        except RequestFailed as failure:
            await send(events, JudgeDone(job.mg, job.index, job.sample_key, job.judge, None, None, None, None, None,
                                        False, failure.reason))
            return
        top = res.top_logprobs[0]
        await send(events, JudgeDone(job.mg, job.index, job.sample_key, job.judge, res.texts[0],
                                    json.dumps(top, sort_keys=True) if top is not None else None, res.prompt_tokens,
                                    res.completion_tokens, res.latency_ms, False, None))


async def send(stream: MemoryObjectSendStream[Any], item: Any) -> None:
    """Send, waiting only when the buffer is full.

    ``stream.send`` passes through the event loop once per item even when there is room: a
    million cached samples, or a result per request, made that a large share of a run's CPU.
    """
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)


def _runs(indices: list[int], max_n: int) -> list[tuple[int, int]]:
    """Contiguous runs of sample indices, each at most max_n long: (start, count)."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][0] + out[-1][1] == i and out[-1][1] < max_n:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((i, 1))
    return out
