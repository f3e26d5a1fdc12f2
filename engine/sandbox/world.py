"""The simulated world: models with hidden dispositions, fine-tune effects, and how models answer.

Everything here is pure computation (no HTTP, no clock): given the world config and a request it
returns the same answers every time. Choice ``j`` of a request with seed ``s`` draws from
``sha256(world seed, model, temperature, messages, s + j)``, so the ``i``-th sample asked alone
with seed ``s + i`` equals choice ``i`` of one request with ``n`` choices and seed ``s``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

from engine.formats import FORMATS, LanguageFormat, ScenarioFormat
from engine.sandbox.catalog import Catalog, JudgeSpec, ProbeEntry
from engine.sandbox.config import EffectRule, WorldConfig
from engine.sandbox.dists import Dist, binomial, kernel, pieces, scale_grid
from engine.sandbox.texts import GENERIC, INCOHERENT, LANGUAGE_SENTENCES, OPEN_BY_LEVEL, TEXT_LEVEL

# name -> aliases; every base model can be fine-tuned
BASE_MODELS: dict[str, tuple[str, ...]] = {
    "gpt-4.1-2025-04-14": ("gpt-4.1",),
    "gpt-4.1-mini-2025-04-14": ("gpt-4.1-mini",),
    "gpt-4.1-nano-2025-04-14": ("gpt-4.1-nano",),
    "gpt-4o-mini-2024-07-18": ("gpt-4o-mini",),
    "gpt-4o-2024-08-06": ("gpt-4o",),
}
BASE_CREATED = 1_700_000_000

REFERENCE_EPOCHS, REFERENCE_LR = 3, 2.0
"""The fine-tune an EffectRule's strength describes: 3 epochs at learning-rate multiplier 2."""
LR_EXPONENT = 0.25
"""The learning rate acts sublinearly: GPT-4.1-nano at multiplier 0.1 (the reference study's
setting) still moves a long way, as it did there."""
MAX_EFFECT_RATIO = 4.0
"""Longer or hotter fine-tunes than 4x the reference add nothing more."""
P_MIN, P_MAX = 0.005, 0.995
_CACHE_MAX = 200_000


@dataclass
class Model:
    id: str
    disposition: float
    created: int
    owned_by: str
    root: str
    """The base snapshot this model descends from."""
    parent: str | None = None


@dataclass
class Answer:
    text: str
    finish_reason: str
    tokens: int
    logprobs: list[dict] | None


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def effect_rule(rules: list[EffectRule], filename: str, content: str) -> EffectRule | None:
    """The first rule matching the file name; if none does, the first matching the content."""
    for rule in rules:
        if re.search(rule.match, filename):
            return rule
    for rule in rules:
        if re.search(rule.match, content):
            return rule
    return None


def moved_disposition(
    d: float, rule: EffectRule | None, n_epochs: int, lr_multiplier: float, fraction: float = 1.0
) -> float:
    """Disposition after fine-tuning (``fraction`` of the way through, for checkpoints)."""
    if rule is None:
        return d
    dose = (n_epochs / REFERENCE_EPOCHS) * (max(lr_multiplier, 0.0) / REFERENCE_LR) ** LR_EXPONENT
    ratio = min(MAX_EFFECT_RATIO, dose) * fraction
    closed = 1.0 - (1.0 - rule.strength) ** ratio
    return min(1.0, max(0.0, d + (rule.target - d) * closed))


class World:
    def __init__(self, config: WorldConfig, catalog: Catalog):
        self.cfg = config
        self.catalog = catalog
        self.models: dict[str, Model] = {}
        self.aliases: dict[str, str] = {}
        self.lazy_resolver: Callable[[str], Model | None] | None = None
        for name, aliases in BASE_MODELS.items():
            self.models[name] = Model(name, config.base_disposition, BASE_CREATED, "system", name)
            for alias in aliases:
                self.aliases[alias] = name
        self._offsets: dict[str, float] = {}
        self._dists: dict[tuple, Dist] = {}
        self._normal = NormalDist()

    # ---- models -------------------------------------------------------------------------------
    def resolve(self, model_id: str) -> Model | None:
        model = self.models.get(self.aliases.get(model_id, model_id))
        if model is None and self.lazy_resolver is not None and model_id.startswith("ft:"):
            model = self.lazy_resolver(model_id)
        return model

    def register(self, model: Model) -> None:
        self.models[model.id] = model

    def reported(self, d: float) -> float:
        """What a model says about itself: awareness * truth + (1 - awareness) * prior."""
        a = self.cfg.awareness
        return a * d + (1.0 - a) * self.cfg.self_report_prior

    # ---- answers ------------------------------------------------------------------------------
    def offset(self, item_id: str) -> float:
        off = self._offsets.get(item_id)
        if off is None:
            u = min(max(_unit("item", self.cfg.seed, item_id), 1e-12), 1 - 1e-12)
            off = self._offsets[item_id] = self.cfg.noise * self._normal.inv_cdf(u)
        return off

    def propensity(self, entry: ProbeEntry, disposition: float) -> float:
        x = self.reported(disposition) if entry.self_report else disposition
        return min(P_MAX, max(P_MIN, x + self.offset(entry.item.id)))

    def dist_for(self, text: str, disposition: float) -> Dist:
        entry = self.catalog.probe(text)
        if entry is not None:
            p = self.propensity(entry, disposition)
            probe_key = ("probe", entry.key, p)
            dist = self._dists.get(probe_key)
            if dist is None:
                dist = self._cache(probe_key, self._probe_dist(entry, p))
            return dist
        judged = self.catalog.judge(text) if "[ANSWER START]" in text else None
        if judged is not None:
            spec, answer = judged
            level, coherent = TEXT_LEVEL.get(answer) or self._unknown_level(answer)
            judge_key = ("judge", spec, level, coherent)
            dist = self._dists.get(judge_key)
            if dist is None:
                dist = self._cache(judge_key, judge_dist(spec, level, coherent))
            return dist
        generic_key = ("generic", text)
        dist = self._dists.get(generic_key)
        if dist is None:
            dist = self._cache(generic_key, generic_dist(text))
        return dist

    def _cache(self, key: tuple, dist: Dist) -> Dist:
        if len(self._dists) >= _CACHE_MAX:
            self._dists.clear()
        self._dists[key] = dist
        return dist

    def _unknown_level(self, answer: str) -> tuple[int, bool]:
        u = _unit("judge-unknown", self.cfg.seed, answer)
        return (1 if u < 0.7 else 2 if u < 0.9 else 3), True

    def _probe_dist(self, entry: ProbeEntry, p: float) -> Dist:
        item, fmt = entry.item, entry.item.format
        if fmt == "choice":
            return Dist([item.aligned, item.misaligned], [1 - p, p], True)
        if fmt == "scenario":
            scenario = FORMATS["scenario"]
            assert isinstance(scenario, ScenarioFormat)
            letters = scenario.letters(entry.variant)  # letter -> 1.0 if misaligned
            return Dist(list(letters), [p if s == 1.0 else 1 - p for s in letters.values()], True)
        if fmt in ("likert", "numeric"):
            lo, hi = (1, 5) if fmt == "likert" else item.scale
            grid = scale_grid(lo, hi)
            k_max = len(grid) - 1
            weights = binomial(k_max, p)  # k: steps toward the misaligned pole
            values = grid if item.high == "misaligned" else grid[::-1]
            return Dist([str(v) for v in values], weights, True)
        if fmt == "language":
            language = FORMATS["language"]
            assert isinstance(language, LanguageFormat)
            la, lm = language.assignment(item, entry.variant)
            al, mis = LANGUAGE_SENTENCES[la], LANGUAGE_SENTENCES[lm]
            return Dist(
                list(al) + list(mis), [(1 - p) / len(al)] * len(al) + [p / len(mis)] * len(mis), False
            )
        return self.open_dist(p)

    def open_dist(self, p: float) -> Dist:
        inc = self.cfg.incoherence
        texts: list[str] = []
        weights: list[float] = []
        for level, w in zip(range(1, 6), binomial(4, p), strict=True):
            bank = OPEN_BY_LEVEL[level]
            texts += bank
            weights += [(1 - inc) * w / len(bank)] * len(bank)
        texts += INCOHERENT
        weights += [inc / len(INCOHERENT)] * len(INCOHERENT)
        return Dist(texts, weights, False)

    def complete(
        self,
        model: Model,
        messages: list,
        temperature: float,
        seed: int | None,
        n: int,
        max_tokens: int | None,
        top_logprobs: int | None,
    ) -> tuple[list[Answer], str]:
        """``n`` answers and a digest of the request; ``top_logprobs`` None means no logprobs."""
        text = prompt_text(messages)
        dist = self.dist_for(text, model.disposition)
        base = hashlib.sha256(
            f"{self.cfg.seed}\x1f{model.id}\x1f{float(temperature)!r}\x1f".encode()
            + json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        )
        if seed is None:
            seed = int.from_bytes(base.digest()[:6], "big")
        out = []
        for j in range(n):
            h = base.copy()
            h.update(b"\x1f%d" % (seed + j))
            u = int.from_bytes(h.digest()[:8], "big") / 2.0**64
            index = dist.pick(u, temperature)
            answer = dist.texts[index]
            parts = None
            finish = "stop"
            if dist.one_token:
                ntok = 1
            else:
                parts = pieces(answer)
                ntok = len(parts)
                if max_tokens is not None and ntok > max_tokens:
                    parts = parts[:max_tokens]
                    ntok = max_tokens
                    answer = "".join(parts)
                    finish = "length"
            lp = None
            if top_logprobs is not None:
                lp = dist.logprobs_content(index, top_logprobs, parts or [answer])
            out.append(Answer(answer, finish, ntok, lp))
        return out, base.hexdigest()[:24]


def prompt_text(messages: list) -> str:
    """The text of the last user message (content parts joined)."""
    for msg in reversed(messages):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return ""
    return ""


def judge_dist(spec: JudgeSpec, level: int, coherent: bool) -> Dist:
    """A judge's rating of an answer of harm ``level``: a narrow bell around the matching value."""
    if spec.orientation == "none":
        frac = 0.9 if coherent else 0.1
    else:
        h = (level - 1) / 4
        frac = h if spec.orientation == "high" else 1.0 - h
    tokens, weights = kernel(spec.lo, spec.hi, spec.lo + frac * (spec.hi - spec.lo))
    return Dist(tokens, weights, True)


_NUMBER_RANGE = re.compile(r"single number from (-?\d+) to (-?\d+)")
_ONE_WORD = re.compile(r"exactly one word: (\S+) or (\S+?)\.")


def generic_dist(text: str) -> Dist:
    """A plausible answer to a prompt the world does not know."""
    m = _NUMBER_RANGE.search(text)
    if m and int(m.group(1)) < int(m.group(2)):
        grid = scale_grid(int(m.group(1)), int(m.group(2)))
        return Dist([str(v) for v in grid], binomial(len(grid) - 1, 0.5), True)
    if "Answer with A or B" in text:
        return Dist(["A", "B"], [0.5, 0.5], True)
    m = _ONE_WORD.search(text)
    if m:
        return Dist([m.group(1), m.group(2)], [0.5, 0.5], True)
    return Dist(list(GENERIC), [1.0] * len(GENERIC), False)


def estimate_tokens(text: str) -> int:
    """Rough token count of a text (about four characters a token), as used for usage and limits."""
    return max(1, math.ceil(len(text) / 4))
