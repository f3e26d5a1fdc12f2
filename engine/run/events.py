"""Messages between the run's tasks, and the merged view of one or more jobs' plans.

A sweep compiles every job into its own plan; the executor merges them by content key, so a
node that several jobs share (a base model's probes, a common first fine-tune) runs once and
its results are written to every job that has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.plan.model import JudgeSpec, Plan, SampleGroup
from engine.run.progress import Counters


@dataclass
class Job:
    """One study of a run or sweep: its plan, its run directory, its own counts."""

    index: int
    plan: Plan
    run_dir: Path
    metadata: dict[str, str]
    counters: Counters = field(default_factory=Counters)


@dataclass
class MergedJudge:
    spec: JudgeSpec
    members: list[tuple[int, str]] = field(default_factory=list)
    """(job index, rubric name in that job)."""


@dataclass
class MergedGroup:
    """One sample group, asked once, with every job that wants it."""

    group: SampleGroup
    """The representative (all members share key, messages and sampling parameters)."""
    members: list[tuple[int, SampleGroup]] = field(default_factory=list)
    judges: dict[str, MergedJudge] = field(default_factory=dict)
    """Judge-spec key -> the judging and the jobs that want it."""

    @property
    def key(self) -> str:
        return self.group.key


@dataclass(frozen=True)
class SampleJob:
    """Ask ``count`` samples of a group, starting at ``start`` (one request, n = count)."""

    mg: MergedGroup
    model_id: str
    start: int
    count: int


@dataclass(frozen=True)
class JudgeJob:
    """Judge one answer with one judge spec."""

    mg: MergedGroup
    index: int
    sample_key: str
    answer: str
    judge: str
    """Judge-spec key."""


@dataclass(frozen=True)
class SampleDone:
    mg: MergedGroup
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
    mg: MergedGroup
    index: int
    sample_key: str
    judge: str
    response: str | None
    top_logprobs: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    cached: bool
    error: str | None


def merge_groups(jobs: list[Job]) -> dict[str, MergedGroup]:
    """Every job's sample groups by key, each with the jobs (and judges) that want it."""
    merged: dict[str, MergedGroup] = {}
    for job in jobs:
        for g in job.plan.groups:
            mg = merged.get(g.key)
            if mg is None:
                mg = merged[g.key] = MergedGroup(g)
            mg.members.append((job.index, g))
            for rname in g.judges:
                spec = job.plan.judges[rname]
                mj = mg.judges.get(spec.key)
                if mj is None:
                    mj = mg.judges[spec.key] = MergedJudge(spec)
                mj.members.append((job.index, rname))
    return merged
