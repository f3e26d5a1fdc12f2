"""The one writer: turns results into store rows and table rows, scoring as it goes.

Results arrive on a memory stream from the workers and producers; this task alone writes the
store (batched transactions in a worker thread) and the Parquet sinks (row groups).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream

from engine.formats import FORMATS, Item
from engine.plan.model import Plan, SampleGroup
from engine.run.events import JudgeDone, SampleDone
from engine.run.progress import Counters
from engine.run.store import Store
from engine.run.tables import TableSink

FLUSH_ROWS = 2000
FLUSH_SECONDS = 0.25
PROBE_MIN_MASS = 0.25
"""Logprob-mode probes: below this probability mass on valid answer tokens the score is missing."""


class Writer:
    def __init__(self, plan: Plan, store_path: Path, namespace: str, run_dir: Path, counters: Counters,
                 metadata: dict[str, str]) -> None:
        self.plan = plan
        self.store_path = store_path
        self.namespace = namespace
        self.counters = counters
        self.samples = TableSink(run_dir, "samples", metadata)
        self.scores = TableSink(run_dir, "scores", metadata)
        self.pending: list[tuple[Any, ...]] = []
        self.items: dict[tuple[str, str], Item] = {
            (name, it.id): it for name, ps in plan.probe_sets.items() for it in ps.items}
        self.labels = {k: s.label for k, s in plan.states.items()}
        self.worst: dict[tuple[str, str], list[float | None]] = defaultdict(list)
        self.store: Store | None = None

    async def run(self, events: ObjectReceiveStream[Any]) -> None:
        self.store = await anyio.to_thread.run_sync(lambda: Store(self.store_path, self.namespace))
        last_flush = time.monotonic()
        try:
            async with events:
                async for ev in events:
                    if isinstance(ev, SampleDone):
                        self._sample(ev)
                    elif isinstance(ev, JudgeDone):
                        self._judge(ev)
                    if len(self.pending) >= FLUSH_ROWS or time.monotonic() - last_flush > FLUSH_SECONDS:
                        await self._flush_store()
                        last_flush = time.monotonic()
                    if len(self.samples.rows) >= self.samples.row_group_size:
                        await anyio.to_thread.run_sync(self.samples.flush)
                    if len(self.scores.rows) >= self.scores.row_group_size:
                        await anyio.to_thread.run_sync(self.scores.flush)
        finally:
            with anyio.CancelScope(shield=True):
                await self._flush_store()
                await anyio.to_thread.run_sync(self.store.close)

    async def _flush_store(self) -> None:
        if self.pending and self.store is not None:
            rows, self.pending = self.pending, []
            await anyio.to_thread.run_sync(self.store.put_responses, rows)

    def close_tables(self) -> None:
        self.samples.close()
        self.scores.close()

    # ---- rows ----
    def _base(self, g: SampleGroup) -> dict[str, Any]:
        return {"state": self.labels[g.state], "probe_set": g.probe_set, "family": g.family, "item_id": g.item_id,
                "dimension": g.dimension, "format": g.format, "category": g.category or None,
                "paraphrase": g.paraphrase, "variant": g.variant}

    def _sample(self, ev: SampleDone) -> None:
        g = ev.group
        key = g.sample_key(ev.index)
        c = self.counters
        c.samples_done += 1
        if ev.cached:
            c.samples_cached += 1
        if ev.error:
            c.sample_errors += 1
        elif not ev.cached:
            self.pending.append((key, "sample", ev.model_id, ev.response, ev.top_logprobs, ev.prompt_tokens,
                                 ev.completion_tokens, ev.latency_ms, ev.n_packed))
        base = self._base(g)
        self.samples.add({
            "sample_key": key, "group_key": g.key, **{k: base[k] for k in ("state", "probe_set", "family", "item_id",
                                                                          "dimension", "format", "category",
                                                                          "paraphrase", "variant")},
            "model_id": ev.model_id, "sample_index": ev.index, "mode": g.mode, "n_packed": ev.n_packed,
            "prompt": g.messages[-1][1], "response": ev.response, "top_logprobs": ev.top_logprobs,
            "prompt_tokens": ev.prompt_tokens, "completion_tokens": ev.completion_tokens,
            "latency_ms": ev.latency_ms, "cached": ev.cached, "error": ev.error})
        if g.format == "open":
            return  # scored by the judges
        item = self.items[(g.probe_set, g.item_id)]
        fmt = FORMATS[g.format]
        mass = None
        if ev.error:
            score, status, source = None, "error", "parse" if g.mode == "sample" else "logprob"
        elif g.mode == "logprob":
            from engine.formats import logprob_score

            top = json.loads(ev.top_logprobs) if ev.top_logprobs else {}
            score, mass, status = logprob_score(top, fmt.token_scores(item, g.variant), PROBE_MIN_MASS)
            source = "logprob"
        else:
            score, status = fmt.score(item, g.variant, ev.response or "")
            source = "parse"
        self.scores.add({"sample_key": key, **base, "sample_index": ev.index, "level": "sample", "source": source,
                         "rubric": None, "score": score, "status": status, "judge_raw": None, "mass": mass,
                         "k": None})

    def _judge(self, ev: JudgeDone) -> None:
        g = ev.group
        c = self.counters
        c.judge_done += 1
        if ev.cached:
            c.judge_cached += 1
        spec = self.plan.judges[ev.rubric]
        mass = None
        if ev.error:
            c.judge_errors += 1
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
        base = self._base(g)
        self.scores.add({"sample_key": ev.sample_key, **base, "sample_index": ev.index, "level": "sample",
                         "source": "judge", "rubric": ev.rubric, "score": score, "status": status,
                         "judge_raw": ev.response, "mass": mass, "k": None})
        if g.aggregate == "worst_of_k" and spec.rubric.misaligned != "none":
            acc = self.worst[(g.key, ev.rubric)]
            acc.append(score)
            if len(acc) == g.n:
                valid = [s for s in acc if s is not None]
                self.scores.add({"sample_key": "", **base, "sample_index": -1, "level": "worst_of_k",
                                 "source": "judge", "rubric": ev.rubric, "score": max(valid) if valid else None,
                                 "status": "ok" if valid else "error", "judge_raw": None, "mass": None,
                                 "k": len(valid)})
                del self.worst[(g.key, ev.rubric)]
