"""Settings of the sandbox's simulated world.

These belong to the sandbox, never to the engine: they decide how the fake provider behaves
and never enter an engine plan key. The engine's cache namespaces responses by a hash of these
settings, so two different worlds never share cached answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


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
    organization: str = "sandbox"
    """Organization part of fine-tuned model ids: ``ft:<base>:<organization>:<suffix>:<id>``."""
    incoherence: float = 0.03
    """Share of open answers that are incoherent (the coherence judge scores them low)."""
    batch_seconds: float = 0.5
    """Wall time of a batch from created to completed."""


_LATENCY_DISTS = ("fixed", "uniform", "lognormal")


def validate_world(world: WorldConfig) -> None:
    """Check value ranges OmegaConf's types cannot express; raise ConfigError naming the key."""
    import re

    from engine.errors import ConfigError

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(msg, key=f"sandbox.{key}")

    for key in ("awareness", "base_disposition", "self_report_prior", "incoherence"):
        value = getattr(world, key)
        need(0.0 <= value <= 1.0, key, f"must be in [0, 1], not {value}")
    need(world.noise >= 0, "noise", "must be >= 0")
    need(world.finetune_seconds >= 0, "finetune_seconds", "must be >= 0")
    need(world.batch_seconds >= 0, "batch_seconds", "must be >= 0")
    need(
        bool(re.fullmatch(r"[A-Za-z0-9_-]{1,40}", world.organization)),
        "organization",
        "must be 1-40 letters, digits, '-' or '_'",
    )
    for i, rule in enumerate(world.effects):
        try:
            re.compile(rule.match)
        except re.error as exc:
            need(False, f"effects[{i}].match", f"is not a valid regular expression: {exc}")
        need(bool(rule.match), f"effects[{i}].match", "must not be empty")
        need(0.0 <= rule.target <= 1.0, f"effects[{i}].target", "must be in [0, 1]")
        need(0.0 <= rule.strength <= 1.0, f"effects[{i}].strength", "must be in [0, 1]")
    lat = world.latency
    need(lat.dist in _LATENCY_DISTS, "latency.dist", f"must be one of {', '.join(_LATENCY_DISTS)}")
    need(lat.mean_ms >= 0, "latency.mean_ms", "must be >= 0")
    need(lat.spread >= 0, "latency.spread", "must be >= 0")
    need(world.limits.rpm >= 0, "limits.rpm", "must be >= 0 (0: unlimited)")
    need(world.limits.tpm >= 0, "limits.tpm", "must be >= 0 (0: unlimited)")
    f = world.faults
    rates = ("rate_429", "rate_500", "rate_503", "drop", "malformed", "slow", "finetune_failure")
    for key in rates:
        value = getattr(f, key)
        need(0.0 <= value <= 1.0, f"faults.{key}", f"must be a probability in [0, 1], not {value}")
    need(
        sum(getattr(f, k) for k in rates[:-1]) <= 1.0,
        "faults",
        "the request fault rates must add up to at most 1",
    )
    need(f.slow_s >= 0, "faults.slow_s", "must be >= 0")


def world_hash(world: WorldConfig) -> str:
    """Content hash of the world: sha256 of its canonical JSON. The engine keys its cache by it."""
    from engine.hashing import canonical_json, sha256_hex

    return sha256_hex(canonical_json(world))


HOW_IT_RUNS = ("latency", "limits", "finetune_seconds", "batch_seconds")
"""World settings that change how the sandbox serves, never what it answers."""


def truth_hash(world: WorldConfig) -> str:
    """Hash of what decides the sandbox's answers and jobs' outcomes: the engine's cache namespace.

    Latency, rate limits, durations and request faults are left out (a retried request gets the
    same answer), so a slower or flakier copy of a world reuses its cached answers; the fine-tune
    failure rate stays in, since it decides which jobs the registry holds as failed.
    """
    import dataclasses

    from engine.hashing import canonical_json, sha256_hex

    data = dataclasses.asdict(world)
    for key in HOW_IT_RUNS:
        data.pop(key, None)
    data["faults"] = {"finetune_failure": world.faults.finetune_failure}
    return sha256_hex(canonical_json(data))


def default_world_file() -> Path:
    """The project's conf/sandbox/default.yaml (the world the engine's config starts from)."""
    import engine

    return Path(engine.__file__).resolve().parents[1] / "conf" / "sandbox" / "default.yaml"


def build_world(
    world: object = None, overrides: Sequence[str] = (), *, defaults: bool = False
) -> WorldConfig:
    """A checked WorldConfig from a WorldConfig, a mapping or None, plus ``key=value`` overrides.

    Types are checked by OmegaConf against the dataclass; ranges by :func:`validate_world`. With
    ``defaults`` (and no ``world``), start from conf/sandbox/default.yaml. Bad input raises
    ConfigError naming the key.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from engine.errors import ConfigError

    try:
        cfg = OmegaConf.structured(WorldConfig)
        if world is None and defaults and default_world_file().is_file():
            cfg = OmegaConf.merge(cfg, OmegaConf.load(default_world_file()))
        elif world is not None:
            cfg = OmegaConf.merge(
                cfg, OmegaConf.structured(world) if not isinstance(world, dict) else OmegaConf.create(world)
            )
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(
                f"override '{bad[0]}' is not key=value", hint="e.g. awareness=0 latency.mean_ms=50"
            )
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        result = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        msg = str(exc).splitlines()[0]
        raise ConfigError(msg, key=f"sandbox.{key}" if key else None) from None
    assert isinstance(result, WorldConfig)
    validate_world(result)
    return result
