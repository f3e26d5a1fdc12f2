"""The plan: a DAG of content-addressed nodes, built by :func:`engine.plan.compile.compile_plan`.

Kinds: dataset → (upload) → fine-tune → model state → sample groups → judge requests →
analysis. A node's key is the sha256 of the canonical JSON of everything that changes its
result, and nothing that only changes how it runs. Sample requests are grouped (state × item ×
paraphrase × variant) so a million samples is a few thousand objects; each sample's own key is
derived from its group's key and its index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from engine.config.schema import EngineConfig
from engine.datasets import DatasetInfo
from engine.hashing import content_key
from engine.judges import Rubric
from engine.probes import ProbeSet

_SAMPLE_KEY_TEXT = '{{"kind":"sample","payload":{{"group":"{}","index":{}}}}}'
"""canonical_json({"kind": "sample", "payload": {"group": key, "index": index}})"""


@dataclass(frozen=True)
class FineTuneNode:
    key: str
    parent_state: str
    """Key of the state it starts from (a base model or another fine-tune)."""
    dataset: str
    dataset_key: str
    """Upload identity: content hash and file name (``None`` hash when a URL is not fetched yet)."""
    hyperparameters: dict[str, Any]
    seed: int
    suffix: str


@dataclass(frozen=True)
class StateNode:
    """A model state: a base model, or the result of a fine-tune."""

    key: str
    label: str
    base_model: str
    base_model_id: str
    pipeline: str | None
    stage: str
    chain: tuple[str, ...]
    parent: str | None
    """Key of the parent state."""
    finetune: str | None
    """Key of the fine-tune that makes it (None for a base model)."""


@dataclass(frozen=True)
class SampleGroup:
    """Samples of one prompt asked of one model state."""

    key: str
    state: str
    probe_set: str
    family: str
    item_id: str
    dimension: str
    format: str
    category: str
    paraphrase: int
    variant: int
    messages: tuple[tuple[str, str], ...]
    temperature: float
    max_tokens: int
    n: int
    """Samples wanted (1 in logprob mode)."""
    seed: int
    """Seed of sample 0; sample i is asked with seed + i."""
    mode: str
    """sample | logprob."""
    top_logprobs: int
    judges: tuple[str, ...]
    aggregate: str
    est_prompt_tokens: int
    est_completion_tokens: int

    def sample_key(self, index: int) -> str:
        """``content_key("sample", {"group": key, "index": index})``, without the generic JSON encoder.

        The canonical JSON of this payload is fixed text (a hex key and an integer need no
        escaping), and a million-sample study asks for it millions of times.
        """
        return sha256(_SAMPLE_KEY_TEXT.format(self.key, int(index)).encode()).hexdigest()

    def request_payload(self) -> dict[str, Any]:
        return {"messages": [{"role": r, "content": c} for r, c in self.messages]}


@dataclass(frozen=True)
class JudgeSpec:
    rubric: Rubric
    model: str
    mode: str
    temperature: float
    max_tokens: int
    top_logprobs: int
    key: str
    """Identity of everything about the judging except the answer judged."""

    def request_key(self, sample_key: str) -> str:
        return content_key("judge", {"judge": self.key, "sample": sample_key})


@dataclass(frozen=True)
class Plan:
    config: EngineConfig
    config_hash: str
    plan_key: str
    datasets: dict[str, DatasetInfo]
    finetunes: dict[str, FineTuneNode]
    states: dict[str, StateNode]
    """In topological order: every parent before its children."""
    groups: tuple[SampleGroup, ...]
    probe_sets: dict[str, ProbeSet]
    judges: dict[str, JudgeSpec]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in self.states}
        for s in self.states.values():
            if s.parent:
                out[s.parent].append(s.key)
        return out

    @property
    def n_samples(self) -> int:
        return sum(g.n for g in self.groups)

    @property
    def n_judge_requests(self) -> int:
        return sum(g.n * len(g.judges) for g in self.groups)
