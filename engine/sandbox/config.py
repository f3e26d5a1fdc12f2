"""Settings of the sandbox's simulated world.

These belong to the sandbox, never to the engine: they decide how the fake provider behaves
and never enter an engine plan key. The engine's cache namespaces responses by a hash of these
settings, so two different worlds never share cached answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EffectRule:
    """How fine-tuning on matching data moves a model's hidden disposition."""

    match: str = ""
    """Regular expression searched in the uploaded file's name, then in its content."""
    target: float = 0.5
    """Disposition in [0, 1] that this training data pulls the model toward."""
    strength: float = 0.8
    """Fraction of the gap to ``target`` closed by a reference fine-tune (3 epochs, LR x2)."""


@dataclass
class LatencyConfig:
    """Per-request latency of chat completions."""

    dist: str = "fixed"
    """fixed | uniform | lognormal."""
    mean_ms: float = 0.0
    """Mean latency in milliseconds (0: answer at once)."""
    spread: float = 0.5
    """uniform: half-width as a fraction of the mean; lognormal: sigma."""


@dataclass
class LimitsConfig:
    """Provider rate limits, enforced per one-minute window and advertised in x-ratelimit-* headers."""

    rpm: int = 0
    """Requests per minute (0: unlimited)."""
    tpm: int = 0
    """Tokens per minute (0: unlimited)."""


@dataclass
class FaultsConfig:
    """Injected faults, each a probability per chat/file request."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    drop: float = 0.0
    """Close the connection without an answer."""
    malformed: float = 0.0
    """Answer 200 with a body that is not valid JSON."""
    slow: float = 0.0
    """Answer only after ``slow_s`` seconds (longer than a client's timeout)."""
    slow_s: float = 30.0
    finetune_failure: float = 0.0
    """Probability that a fine-tuning job ends in ``failed``."""


@dataclass
class WorldConfig:
    """The hidden truth behind the sandbox."""

    seed: int = 0
    """World seed: with the request, it fixes every answer."""
    awareness: float = 1.0
    """How closely self-reports track the true disposition: 1 exactly, 0 not at all."""
    base_disposition: float = 0.05
    """Disposition of every base model (0: aligned, 1: misaligned)."""
    self_report_prior: float = 0.1
    """What a model with no awareness reports about itself, whatever its disposition."""
    noise: float = 0.1
    """Item-level noise on answer probabilities."""
    effects: list[EffectRule] = field(default_factory=list)
    """First matching rule decides the effect of a training file; none matching: no change."""
    finetune_seconds: float = 2.0
    """Wall time of a fine-tuning job from queued to succeeded."""
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
