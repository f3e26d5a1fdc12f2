"""Key invariants: keys follow what changes a result, and nothing else."""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.load import load_config
from engine.hashing import canonical_json, content_key
from engine.plan import compile_plan

BASE = ["probes=[self_assessment,harmfulness]", "probes.self_assessment.paraphrases=1", "probes.harmfulness.items=2"]


def keys(overrides: list[str]) -> tuple[set[str], set[str], set[str]]:
    plan = compile_plan(load_config([*BASE, *overrides]))
    return set(plan.states), set(plan.finetunes), {g.key for g in plan.groups}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6), st.randoms())
def test_key_order_never_changes_a_key(payload: dict, rnd: random.Random) -> None:
    items = list(payload.items())
    rnd.shuffle(items)
    assert content_key("x", dict(items)) == content_key("x", payload)
    assert canonical_json(dict(items)) == canonical_json(payload)


def test_config_key_order_does_not_change_plan(iso: list[str]) -> None:
    a = compile_plan(load_config(["experiment=paper", *iso]))
    # the same models in another order (and hyperparameter keys in another order)
    cfg = load_config(["experiment=paper", *iso])
    models = dict(reversed(list(cfg.models.items())))
    for m in models.values():
        m.hyperparameters = dataclasses.replace(m.hyperparameters)
    b = compile_plan(dataclasses.replace(cfg, models=models, probes=dict(reversed(list(cfg.probes.items())))))
    assert set(a.states) == set(b.states) and set(a.finetunes) == set(b.finetunes)
    assert {g.key for g in a.groups} == {g.key for g in b.groups}
    assert a.plan_key == b.plan_key


RUN_ONLY = [
    "scheduler.concurrency=7", "scheduler.max_retries=1", "scheduler.request_timeout_s=3", "scheduler.max_n=2",
    "scheduler.rpm=100", "scheduler.progress=off", "scheduler.poll_interval_s=9", "provider.transport=httpx",
    "store.path=elsewhere.sqlite", "analysis.bootstrap=500", "sandbox.latency.mean_ms=50",
]


@settings(max_examples=len(RUN_ONLY), deadline=None)
@given(st.sampled_from(RUN_ONLY))
def test_run_only_settings_change_no_key(override: str) -> None:
    assert keys([override]) == keys([])


RESULT_CHANGES = {
    "seed=1": "all",
    "probes.self_assessment.temperature=0.5": "groups",
    "probes.harmfulness.max_tokens=99": "groups",
    "probes.self_assessment.logprobs=true": "groups",
    "sequence.pipelines.trivia.stages.misalign.hyperparameters.n_epochs=2": "finetunes",
    "datasets.trivia_incorrect.limit=50": "finetunes",
    "models.nano.id=gpt-4.1-mini-2025-04-14": "all",
    "sequence.pipelines.trivia.stages.realign.suffix=other": "finetunes",
}


@settings(max_examples=len(RESULT_CHANGES), deadline=None)
@given(st.sampled_from(sorted(RESULT_CHANGES)))
def test_result_relevant_changes_change_keys(override: str) -> None:
    states0, fts0, groups0 = keys([])
    states1, fts1, groups1 = keys([override])
    what = RESULT_CHANGES[override]
    if what in ("all", "finetunes"):
        assert fts0 != fts1
    if what in ("all", "groups"):
        assert groups0 != groups1
    if what == "finetunes":  # the base state's probes are untouched, its descendants' change
        assert groups0 & groups1 and groups0 != groups1


def test_sample_keys_are_distinct_per_index(iso: list[str]) -> None:
    plan = compile_plan(load_config(iso))
    g = plan.groups[0]
    ks = [g.sample_key(i) for i in range(g.n)]
    assert len(set(ks)) == g.n
    assert len({gr.key for gr in plan.groups}) == len(plan.groups)
    # the fast path gives the generic content key (stores written before it still answer)
    assert ks == [content_key("sample", {"group": g.key, "index": i}) for i in range(g.n)]


def test_rerun_asks_for_exactly_the_same_things(iso: list[str]) -> None:
    a = compile_plan(load_config(iso))
    b = compile_plan(load_config(iso))
    assert [(g.key, g.seed, g.n) for g in a.groups] == [(g.key, g.seed, g.n) for g in b.groups]
    assert [f.seed for f in a.finetunes.values()] == [f.seed for f in b.finetunes.values()]


def test_cache_namespace_follows_what_the_world_answers(iso: list[str]) -> None:
    from engine.run.provider import namespace_for

    base = namespace_for(load_config(iso))
    for how in ("sandbox.latency.mean_ms=50", "sandbox.limits.rpm=100", "sandbox.faults.rate_429=0.1",
                "sandbox.finetune_seconds=9"):
        assert namespace_for(load_config([*iso, how])) == base, how
    for what in ("sandbox.awareness=0", "sandbox.seed=3", "sandbox.noise=0.2", "sandbox.faults.finetune_failure=0.5"):
        assert namespace_for(load_config([*iso, what])) != base, what
    assert namespace_for(load_config([*iso, "provider=openai"])) != base
