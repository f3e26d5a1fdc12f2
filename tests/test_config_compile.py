"""Every experiment composes and compiles; the plans have the shapes the study needs."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from engine.config.load import conf_dir, load_config
from engine.plan import compile_plan

EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_compiles(experiment: str, iso: list[str]) -> None:
    plan = compile_plan(load_config([f"experiment={experiment}", *iso]))
    assert plan.states and plan.groups
    for g in plan.groups:
        assert g.n >= 1 and g.state in plan.states


@pytest.mark.parametrize("probes", ["demo", "self_assessment", "intentions", "harmfulness", "open_questions", "paper"])
def test_every_probe_group_compiles(probes: str, iso: list[str]) -> None:
    plan = compile_plan(load_config([f"probes={probes}", *iso]))
    assert set(plan.probe_sets) <= {"self_assessment", "intentions", "harmfulness", "open_questions"}


def test_paper_plan_has_15_states_and_12_finetunes(iso: list[str]) -> None:
    plan = compile_plan(load_config(["experiment=paper", *iso]))
    assert len(plan.states) == 15
    assert len(plan.finetunes) == 12
    assert sum(1 for s in plan.states.values() if s.finetune is None) == 3
    # the realigning fine-tune starts from the misaligned model
    for s in plan.states.values():
        if s.stage == "realign":
            assert plan.states[s.parent].stage == "misalign"
    assert set(plan.probe_sets) == {"self_assessment", "intentions", "harmfulness", "open_questions"}
    nano = [ft for k, ft in plan.finetunes.items() if plan.states[k].base_model == "nano"]
    assert all(ft.hyperparameters["learning_rate_multiplier"] == 0.1 for ft in nano)
    code = [ft for k, ft in plan.finetunes.items() if plan.states[k].pipeline == "code"]
    assert all(ft.hyperparameters["batch_size"] == 1 and ft.hyperparameters["n_epochs"] == 3 for ft in code)


def test_plan_json_counts(iso: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "experiment=paper", "--json", *iso]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["model_states"] == 15
    assert data["counts"]["finetunes"] == 12
    assert data["cost"]["total_usd"] > 0
    assert any(not d["pinned"] for d in data["datasets"])  # the code datasets are unpinned URLs


def test_plan_text_is_readable(iso: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", *iso]) == 0
    out = capsys.readouterr().out
    assert "Fine-tune chains: 2 fine-tunes, 3 model states" in out
    assert "trivia/misalign" in out and "Estimated cost" in out


def test_probe_set_swap_by_override(iso: list[str]) -> None:
    plan = compile_plan(load_config(["experiment=paper", "probes=intentions", *iso]))
    assert set(plan.probe_sets) == {"intentions"}
    plan = compile_plan(load_config(["probes=[intentions,harmfulness]", *iso]))
    assert set(plan.probe_sets) == {"intentions", "harmfulness"}


def test_stage_order_reorders_and_shares_base(iso: list[str]) -> None:
    a = compile_plan(load_config(iso))
    b = compile_plan(load_config(["sequence.order=[realign,misalign]", *iso]))
    labels_b = {s.label for s in b.states.values()}
    assert "nano/trivia/realign>misalign" in labels_b
    base_a = {k for k, s in a.states.items() if s.finetune is None}
    base_b = {k for k, s in b.states.items() if s.finetune is None}
    assert base_a == base_b  # a sweep over both orders shares the base state ...
    assert not (set(a.finetunes) & set(b.finetunes))  # ... and nothing else
    shared_groups = {g.key for g in a.groups} & {g.key for g in b.groups}
    assert shared_groups == {g.key for g in a.groups if g.state in base_a}


def test_logprob_mode_packs_one_token_formats(iso: list[str]) -> None:
    plan = compile_plan(load_config(["probes.intentions.logprobs=true", *iso]))
    intent = [g for g in plan.groups if g.probe_set == "intentions"]
    assert intent and all(g.mode == "logprob" and g.n == 1 and g.max_tokens == 1 for g in intent)
