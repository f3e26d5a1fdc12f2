"""The one writer: turns results into store rows and table rows, scoring as it goes.

Results arrive on a memory stream from the workers and producers; this task alone writes the
store (batched transactions in a worker thread) and the Parquet sinks (row groups). A result
shared by several jobs of a sweep is stored once and written to each job's tables.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from engine.formats import FORMATS, Item, logprob_score
from engine.plan.model import SampleGroup
from engine.run.events import Job, JudgeDone, MergedGroup, SampleDone
from engine.run.progress import Counters
from engine.run.store import Store
from engine.run.tables import TableSink

FLUSH_ROWS = 2000
FLUSH_SECONDS = 0.25
YIELD_EVERY = 200
"""Results taken from the buffer in a row before the writer lets other tasks run."""
PROBE_MIN_MASS = 0.25
"""Logprob-mode probes: below this probability mass on valid answer tokens the score is missing."""


class JobSinks:
    """One job's tables and lookups."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.samples = TableSink(job.run_dir, "samples", job.metadata)
        self.scores = TableSink(job.run_dir, "scores", job.metadata)
        self.items: dict[tuple[str, str], Item] = {
            (name, it.id): it for name, ps in job.plan.probe_sets.items() for it in ps.items}
        self.labels = {k: s.label for k, s in job.plan.states.items()}
        self.worst: dict[tuple[str, str], list[float | None]] = defaultdict(list)


class Writer:
    def __init__(self, jobs: list[Job], store_path: Path, namespace: str, counters: Counters) -> None:
        self.jobs = {job.index: JobSinks(job) for job in jobs}
        self.store_path = store_path
        self.namespace = namespace
        self.counters = counters
        self.pending: list[tuple[Any, ...]] = []
        self.store: Store | None = None

    async def run(self, events: MemoryObjectReceiveStream[Any]) -> None:
        self.store = await anyio.to_thread.run_sync(lambda: Store(self.store_path, self.namespace))
        last_flush = time.monotonic()
        unyielded = 0
        try:
            async with events:
                while True:
                    # take what is buffered without a pass through the event loop per result, but
                    # yield now and then so the workers' responses are not kept waiting
                    try:
                        if unyielded >= YIELD_EVERY:
                            raise anyio.WouldBlock
                        ev = events.receive_nowait()
                        unyielded += 1
                    except anyio.WouldBlock:
                        unyielded = 0
                        try:
                            ev = await events.receive()
                        except anyio.EndOfStream:
                            break
                    except anyio.EndOfStream:
                        break
                    if isinstance(ev, SampleDone):
                        self._sample(ev)
                    elif isinstance(ev, JudgeDone):
                        self._judge(ev)
                    if len(self.pending) >= FLUSH_ROWS or time.monotonic() - last_flush > FLUSH_SECONDS:
                        await self._flush_store()
                        last_flush = time.monotonic()
                        unyielded = 0
        finally:
            with anyio.CancelScope(shield=True):
                await self._flush_store()
                await anyio.to_thread.run_sync(self.store.close)

    async def _flush_store(self) -> None:
        if self.pending and self.store is not None:
            rows, self.pending = self.pending, []
            await anyio.to_thread.run_sync(self.store.put_responses, rows)

    def close_tables(self) -> None:
        for sinks in self.jobs.values():
            sinks.samples.close()
            sinks.scores.close()

    # ---- rows ----
    @staticmethod
    def _base(sinks: JobSinks, g: SampleGroup) -> dict[str, Any]:
        return {"state": sinks.labels[g.state], "probe_set": g.probe_set, "family": g.family, "item_id": g.item_id,
                "dimension": g.dimension, "format": g.format, "category": g.category or None,
                "paraphrase": g.paraphrase, "variant": g.variant}

    def _sample(self, ev: SampleDone) -> None:
        mg: MergedGroup = ev.mg
        key = mg.group.sample_key(ev.index)
        _count_sample(self.counters, ev)
        if not ev.error and not ev.cached:
            self.pending.append((key, "sample", ev.model_id, ev.response, ev.top_logprobs, ev.prompt_tokens,
                                 ev.completion_tokens, ev.latency_ms, ev.n_packed))
        for job_index, g in mg.members:
            sinks = self.jobs[job_index]
            _count_sample(sinks.job.counters, ev)
            base = self._base(sinks, g)
            sinks.samples.add({
                "sample_key": key, "group_key": g.key, **base, "model_id": ev.model_id, "sample_index": ev.index,
                "mode": g.mode, "n_packed": ev.n_packed, "prompt": g.messages[-1][1], "response": ev.response,
                "top_logprobs": ev.top_logprobs, "prompt_tokens": ev.prompt_tokens,
                "completion_tokens": ev.completion_tokens, "latency_ms": ev.latency_ms, "cached": ev.cached,
                "error": ev.error})
            if g.format != "open":  # open answers are scored by the judges
                sinks.scores.add(self._score_row(sinks, g, key, ev, base))

    def _score_row(self, sinks: JobSinks, g: SampleGroup, key: str, ev: SampleDone,
                   base: dict[str, Any]) -> dict[str, Any]:
        item = sinks.items[(g.probe_set, g.item_id)]
        fmt = FORMATS[g.format]
        mass = None
        source = "logprob" if g.mode == "logprob" else "parse"
        if ev.error:
            score, status = None, "error"
        elif g.mode == "logprob":
            top = json.loads(ev.top_logprobs) if ev.top_logprobs else {}
            score, mass, status = logprob_score(top, fmt.token_scores(item, g.variant), PROBE_MIN_MASS)
        else:
            score, status = fmt.score(item, g.variant, ev.response or "")
        return {"sample_key": key, **base, "sample_index": ev.index, "level": "sample", "source": source,
                "rubric": None, "score": score, "status": status, "judge_raw": None, "mass": mass, "k": None}

    def _judge(self, ev: JudgeDone) -> None:
        mg: MergedGroup = ev.mg
        mj = mg.judges[ev.judge]
        spec = mj.spec
        _count_judge(self.counters, ev)
        mass = None
        if ev.error:
            score, status = None, "error"
        else:
            if not ev.cached:
                self.pending.append((spec.request_key(ev.sample_key), "judge", spec.model, ev.response,
                                     ev.top_logprobs, ev.prompt_tokens, ev.completion_tokens, ev.latency_ms, 1))
            if spec.mode == "logprob":
                top = json.loads(ev.top_logprobs) if ev.top_logprobs else {}
                score, mass, status = spec.rubric.from_logprobs(top)
            else:
                score, status = spec.rubric.parse(ev.response or "")
        groups = dict(mg.members)
        for job_index, rubric in mj.members:
            sinks = self.jobs[job_index]
            g = groups[job_index]
            _count_judge(sinks.job.counters, ev)
            base = self._base(sinks, g)
            sinks.scores.add({"sample_key": ev.sample_key, **base, "sample_index": ev.index, "level": "sample",
                              "source": "judge", "rubric": rubric, "score": score, "status": status,
                              "judge_raw": ev.response, "mass": mass, "k": None})
            if g.aggregate == "worst_of_k" and spec.rubric.misaligned != "none":
                acc = sinks.worst[(g.key, rubric)]
                acc.append(score)
                if len(acc) == g.n:
                    valid = [s for s in acc if s is not None]
                    sinks.scores.add({"sample_key": "", **base, "sample_index": -1, "level": "worst_of_k",
                                      "source": "judge", "rubric": rubric, "score": max(valid) if valid else None,
                                      "status": "ok" if valid else "error", "judge_raw": None, "mass": None,
                                      "k": len(valid)})
                    del sinks.worst[(g.key, rubric)]


def _count_sample(c: Counters, ev: SampleDone) -> None:
    c.samples_done += 1
    c.samples_cached += ev.cached
    c.sample_errors += ev.error is not None


def _count_judge(c: Counters, ev: JudgeDone) -> None:
    c.judge_done += 1
    c.judge_cached += ev.cached
    c.judge_errors += ev.error is not None
