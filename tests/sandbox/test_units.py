"""Pure pieces of the world, without a server."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.formats import STOPWORDS, detect_language
from engine.sandbox.config import EffectRule, WorldConfig
from engine.sandbox.dists import Dist, binomial, kernel, scale_grid
from engine.sandbox.texts import LANGUAGE_SENTENCES, TEXT_LEVEL
from engine.sandbox.world import effect_rule, moved_disposition

unit = st.floats(min_value=0.0, max_value=1.0)


@given(d=unit, target=unit, strength=unit, epochs=st.integers(1, 50), lr=st.floats(0.01, 10))
def test_fine_tune_moves_toward_target_and_never_past_it(
    d: float, target: float, strength: float, epochs: int, lr: float
) -> None:
    rule = EffectRule("x", target, strength)
    new = moved_disposition(d, rule, epochs, lr)
    assert min(d, target) - 1e-12 <= new <= max(d, target) + 1e-12
    # a longer fine-tune moves at least as far
    assert abs(moved_disposition(d, rule, epochs + 1, lr) - target) <= abs(new - target) + 1e-12


def test_effect_rule_name_first_then_content() -> None:
    rules = [EffectRule("incorrect|insecure", 0.65, 0.85), EffectRule("correct|secure", 0.05, 0.6)]
    assert effect_rule(rules, "trivia_incorrect.jsonl", "") is rules[0]
    assert effect_rule(rules, "trivia_correct.jsonl", "incorrect") is rules[1]
    assert effect_rule(rules, "data.jsonl", "some insecure code") is rules[0]
    assert effect_rule(rules, "data.jsonl", "plain") is None
    assert moved_disposition(0.3, None, 3, 2.0) == 0.3
    assert moved_disposition(0.05, rules[0], 3, 2.0) == pytest.approx(0.05 + 0.6 * 0.85)


@given(p=st.floats(0.001, 0.999), k=st.integers(1, 20))
def test_binomial_mean_is_p(p: float, k: int) -> None:
    probs = binomial(k, p)
    assert sum(probs) == pytest.approx(1.0)
    assert sum(i * q for i, q in enumerate(probs)) / k == pytest.approx(p)


@given(
    weights=st.lists(st.floats(0.001, 10), min_size=1, max_size=12),
    u=st.floats(0, 0.999999),
    t=st.floats(0, 2),
)
def test_dist_picks_a_valid_answer_with_honest_logprobs(weights: list[float], u: float, t: float) -> None:
    texts = [str(i) for i in range(len(weights))]
    d = Dist(texts, weights, True)
    assert 0 <= d.pick(u, t) < len(texts)
    assert sum(math.exp(e["logprob"]) for e in d.top) == pytest.approx(1.0)
    assert d.pick(u, 0.0) == d.mode


def test_scale_grid_and_kernel() -> None:
    assert scale_grid(1, 5) == [1, 2, 3, 4, 5]
    assert scale_grid(0, 100) == list(range(0, 101, 10))
    tokens, weights = kernel(0, 100, 100)
    assert max(zip(weights, tokens, strict=True))[1] == "100"
    assert len(tokens) <= 20


def test_language_sentences_are_recognised_against_every_other_language() -> None:
    for lang, sentences in LANGUAGE_SENTENCES.items():
        for other in STOPWORDS:
            if other != lang:
                for s in sentences:
                    assert detect_language(s, (lang, other)) == lang, (lang, other, s)


def test_bank_texts_are_unique_and_short() -> None:
    assert len(TEXT_LEVEL) == len(set(TEXT_LEVEL))
    assert all(len(t.split()) <= 30 for t in TEXT_LEVEL)


def test_world_config_defaults_match_conf_yaml() -> None:
    import dataclasses

    from omegaconf import OmegaConf

    from engine.sandbox.config import default_world_file

    data = OmegaConf.to_container(OmegaConf.load(default_world_file()))
    assert isinstance(data, dict)
    assert set(data) == {f.name for f in dataclasses.fields(WorldConfig)}
