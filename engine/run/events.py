"""Messages between the run's tasks: work for the request workers, results for the one writer."""

from __future__ import annotations

from dataclasses import dataclass

from engine.plan.model import SampleGroup


@dataclass(frozen=True)
class SampleJob:
    """Ask ``count`` samples of a group, starting at ``start`` (one request, n = count)."""

    group: SampleGroup
    model_id: str
    start: int
    count: int


@dataclass(frozen=True)
class JudgeJob:
    """Judge one answer with one rubric."""

    group: SampleGroup
    index: int
    sample_key: str
    answer: str
    rubric: str


@dataclass(frozen=True)
class SampleDone:
    group: SampleGroup
    index: int
    model_id: str | None
    response: str | None
    top_logprobs: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    n_packed: int | None
    cached: bool
    error: str | None


@dataclass(frozen=True)
class JudgeDone:
    group: SampleGroup
    index: int
    sample_key: str
    rubric: str
    response: str | None
    top_logprobs: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    cached: bool
    error: str | None
