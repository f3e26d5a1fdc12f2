"""Executes a plan: one anyio task group, work released as its parents finish.

    producers (one task per model state) ──SampleJob/JudgeJob──▶ workers (scheduler.concurrency)
         │  cached results                                            │ results
         └──────────────────────────────▶ writer (one) ◀──────────────┘

A state's fine-tune starts when its parent's succeeds; its probes are queued the moment it
succeeds, while other fine-tunes still run. Every request goes through the shared rate limiter
and is retried with backoff; one that keeps failing becomes an error row, never a silent drop.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream, TaskGroup

from engine.config.schema import EngineConfig
from engine.datasets import load_text, upload_filename
from engine.plan.compile import specs_dir_of
from engine.plan.model import Plan, SampleGroup, StateNode
from engine.run import finetune as ft_ops
from engine.run.events import JudgeDone, JudgeJob, SampleDone, SampleJob
from engine.run.limiter import RateLimiter
from engine.run.progress import Counters
from engine.run.provider import ChatResult, Provider, RequestFailed
from engine.run.store import JobRecord, Store
from engine.run.writer import Writer

LOOKUP_CHUNK = 4000


class Executor:
    def __init__(self, plan: Plan, provider: Provider, run_dir: Path, counters: Counters,
                 limiter: RateLimiter | None = None, metadata: dict[str, str] | None = None) -> None:
        self.plan = plan
        self.cfg: EngineConfig = plan.config
        self.sched = self.cfg.scheduler
        self.provider = provider
        self.counters = counters
        self.limiter = limiter or RateLimiter(self.sched.rpm, self.sched.tpm)
        self.store_path = Path(self.cfg.store.path)
        self.reader = Store(self.store_path, provider.namespace)
        self._read_lock = anyio.Lock()
        self.writer = Writer(plan, self.store_path, provider.namespace, run_dir, counters, metadata or {})
        self.children = plan.children()
        self.model_ids: dict[str, str] = {s.key: s.base_model_id for s in plan.states.values() if not s.finetune}
        self.jobs: dict[str, JobRecord] = {}
        self.state_status: dict[str, tuple[str, str | None]] = {}
        self.job_slots = anyio.CapacityLimiter(self.sched.max_concurrent_jobs)
        self.user_text = {g.key: g.messages[-1][1] for g in plan.groups}
        self.groups_by_state: dict[str, list[SampleGroup]] = {}
        for g in plan.groups:
            self.groups_by_state.setdefault(g.state, []).append(g)
        counters.samples_total = plan.n_samples
        counters.judge_total = plan.n_judge_requests
        counters.finetunes_total = len(plan.finetunes)

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
                                for state in self.plan.states.values():
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
            tg.start_soon(self._state, self.plan.states[child], tg)
        await self._enqueue(state)

    async def _read(self, fn: Any, *args: Any) -> Any:
        """Reads share one connection, one at a time, off the event loop."""
        async with self._read_lock:
            return await anyio.to_thread.run_sync(fn, *args)

    async def _lookup(self, keys: list[str]) -> dict[str, Any]:
        return await self._read(self.reader.lookup, keys)

    async def _enqueue(self, state: StateNode) -> None:
        groups = self.groups_by_state.get(state.key, [])
        model_id = self.model_ids[state.key]
        batch: list[SampleGroup] = []
        size = 0
        for g in groups:
            batch.append(g)
            size += g.n
            if size >= LOOKUP_CHUNK:
                await self._enqueue_batch(batch, model_id)
                batch, size = [], 0
        if batch:
            await self._enqueue_batch(batch, model_id)

    async def _enqueue_batch(self, groups: list[SampleGroup], model_id: str) -> None:
        keys = [g.sample_key(i) for g in groups for i in range(g.n)]
        cached = await self._lookup(keys)
        judge_todo: list[tuple[SampleGroup, int, str, str]] = []
        for g in groups:
            missing: list[int] = []
            for i in range(g.n):
                key = g.sample_key(i)
                hit = cached.get(key)
                if hit is None:
                    missing.append(i)
                    continue
                await self.events.send(SampleDone(g, i, hit.model_id, hit.response, hit.top_logprobs, hit.prompt_tokens,
                                                  hit.completion_tokens, hit.latency_ms, hit.n_packed, True, None))
                if g.judges:
                    judge_todo.append((g, i, key, hit.response or ""))
            for start, count in _runs(missing, self.sched.max_n):
                await self.jobs_send.send(SampleJob(g, model_id, start, count))
        if judge_todo:
            jkeys = [self.plan.judges[r].request_key(k) for g, _, k, _ in judge_todo for r in g.judges]
            jcached = await self._lookup(jkeys)
            for g, i, key, answer in judge_todo:
                for r in g.judges:
                    hit = jcached.get(self.plan.judges[r].request_key(key))
                    if hit is None:
                        await self.jobs_send.send(JudgeJob(g, i, key, answer, r))
                    else:
                        await self.events.send(JudgeDone(g, i, key, r, hit.response, hit.top_logprobs,
                                                         hit.prompt_tokens, hit.completion_tokens, hit.latency_ms,
                                                         True, None))

    async def _fail_subtree(self, state: StateNode, reason: str) -> None:
        """A state is unavailable: its samples and its descendants' become error rows."""
        stack = [(state, reason)]
        while stack:
            s, why = stack.pop()
            self.state_status[s.key] = ("failed" if s is state else "skipped", why)
            for g in self.groups_by_state.get(s.key, []):
                for i in range(g.n):
                    await self.events.send(SampleDone(g, i, None, None, None, None, None, None, None, False, why))
                    for r in g.judges:
                        await self.events.send(JudgeDone(g, i, g.sample_key(i), r, None, None, None, None, None,
                                                         False, why))
            for child in self.children[s.key]:
                stack.append((self.plan.states[child], f"parent {s.label} unavailable: {why}"))

    # ---- fine-tunes ----
    async def _finetune(self, state: StateNode) -> JobRecord:
        ft = self.plan.finetunes[state.key]
        status = self.counters.finetune_status
        store_rec = await self._read(self.reader.job, ft.key)
        if store_rec and store_rec.status == "succeeded":
            status[state.key] = "succeeded (stored)"
            self.jobs[state.key] = store_rec
            return store_rec
        async with self.job_slots:
            try:
                record = await self._run_job(state, store_rec)
            except RequestFailed as exc:
                record = JobRecord(ft.key, store_rec.job_id if store_rec else "", "failed", None, exc.reason, None)
        status[state.key] = record.status
        self.jobs[state.key] = record
        await anyio.to_thread.run_sync(self._put_job, record)
        return record

    def _put_job(self, record: JobRecord) -> None:
        with_store = Store(self.store_path, self.provider.namespace)
        try:
            with_store.put_job(record)
        finally:
            with_store.close()

    async def _run_job(self, state: StateNode, store_rec: JobRecord | None) -> JobRecord:
        ft = self.plan.finetunes[state.key]
        status = self.counters.finetune_status
        job = None
        if store_rec and store_rec.status not in ("failed", "cancelled"):
            job = await ft_ops.with_retries(lambda: self.provider.client.fine_tuning.jobs.retrieve(store_rec.job_id),
                                            self.sched, "retrieving a recorded job")
        if job is None:
            job = await ft_ops.find_job(self.provider, ft.key, self.sched)
        if job is None:
            info = self.plan.datasets[ft.dataset]
            text = load_text(ft.dataset, self.cfg.datasets[ft.dataset], specs_dir_of(self.cfg),
                             Path(self.cfg.store.cache_dir))
            assert text is not None and info.sha256
            file_id = await self._read(self.reader.file_id, ft.dataset_key)
            if file_id is None:
                status[state.key] = "uploading"
                filename = upload_filename(ft.dataset, info.sha256)
                file_id = await ft_ops.upload(self.provider, filename, text.encode(), self.sched)
                await anyio.to_thread.run_sync(self._put_file, ft.dataset_key, file_id, filename, info.sha256)
            status[state.key] = "creating"
            job = await ft_ops.create_job(self.provider, ft, self.model_ids[ft.parent_state], file_id, self.sched)
        await anyio.to_thread.run_sync(self._put_job, ft_ops.record_of(ft.key, job))
        if job.status not in ft_ops.TERMINAL:
            job = await ft_ops.poll(self.provider, job.id, self.sched,
                                    lambda s: status.__setitem__(state.key, s))
        return ft_ops.record_of(ft.key, job)

    def _put_file(self, upload_key: str, file_id: str, filename: str, sha: str) -> None:
        s = Store(self.store_path, self.provider.namespace)
        try:
            s.put_file(upload_key, file_id, filename, sha)
        finally:
            s.close()

    # ---- workers ----
    async def _worker(self, jobs: ObjectReceiveStream[Any]) -> None:
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
            return result

    async def _samples(self, job: SampleJob, events: ObjectSendStream[Any]) -> None:
        g = job.group
        try:
            res = await self._request(
                model=job.model_id, messages=g.request_payload()["messages"], n=job.count,
                temperature=g.temperature, seed=g.seed + job.start, max_tokens=g.max_tokens,
                top_logprobs=g.top_logprobs, est_tokens=g.est_prompt_tokens + g.max_tokens * job.count)
        except RequestFailed as failure:
            for j in range(job.count):
                i = job.start + j
                await events.send(SampleDone(g, i, job.model_id, None, None, None, None, None, job.count, False,
                                             failure.reason))
                for r in g.judges:
                    await events.send(JudgeDone(g, i, g.sample_key(i), r, None, None, None, None, None, False,
                                                f"sample failed: {failure.reason}"))
            return
        for j in range(job.count):
            top = res.top_logprobs[j]
            await events.send(SampleDone(g, job.start + j, job.model_id, res.texts[j],
                                         json.dumps(top, sort_keys=True) if top is not None else None,
                                         res.prompt_tokens, res.completion_tokens, res.latency_ms, job.count, False,
                                         None))
        for j in range(job.count):
            i = job.start + j
            for r in g.judges:
                await self._judge(JudgeJob(g, i, g.sample_key(i), res.texts[j] or "", r), events)

    async def _judge(self, job: JudgeJob, events: ObjectSendStream[Any]) -> None:
        spec = self.plan.judges[job.rubric]
        key = spec.request_key(job.sample_key)
        prompt = spec.rubric.render(self.user_text[job.group.key], job.answer)
        try:
            res = await self._request(model=spec.model, messages=[{"role": "user", "content": prompt}], n=1,
                                      temperature=spec.temperature, seed=int(key[:8], 16) % (2**31 - 1),
                                      max_tokens=spec.max_tokens, top_logprobs=spec.top_logprobs,
                                      est_tokens=len(prompt) // 4 + spec.max_tokens)
        except RequestFailed as failure:
            await events.send(JudgeDone(job.group, job.index, job.sample_key, job.rubric, None, None, None, None, None,
                                        False, failure.reason))
            return
        top = res.top_logprobs[0]
        await events.send(JudgeDone(job.group, job.index, job.sample_key, job.rubric, res.texts[0],
                                    json.dumps(top, sort_keys=True) if top is not None else None, res.prompt_tokens,
                                    res.completion_tokens, res.latency_ms, False, None))


def _runs(indices: list[int], max_n: int) -> list[tuple[int, int]]:
    """Contiguous runs of sample indices, each at most max_n long: (start, count)."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][0] + out[-1][1] == i and out[-1][1] < max_n:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((i, 1))
    return out
