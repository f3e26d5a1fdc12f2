"""Two sandboxes sharing one state directory (two runs started at once) lose nothing of each other's."""

from __future__ import annotations

import json
from pathlib import Path

from engine.sandbox.config import EffectRule, WorldConfig
from engine.sandbox.server import SandboxServer
from tests.sandbox.helpers import fine_tune, sync_client, training_jsonl


def test_two_sandboxes_on_one_state_dir(tmp_path: Path) -> None:
    world = WorldConfig(finetune_seconds=0.05, effects=[EffectRule(match="evil", target=0.8, strength=0.9)])
    state = tmp_path / "state"
    with SandboxServer(world, state_dir=state) as a, SandboxServer(world, state_dir=state) as b:
        ca, cb = sync_client(a), sync_client(b)
        model_a = fine_tune(ca, "gpt-4.1-nano", "evil.jsonl", training_jsonl(word="one"))
        model_b = fine_tune(cb, "gpt-4.1-mini", "plain.jsonl", training_jsonl(word="two"))
        # each serves the other's model, with the same hidden disposition
        reply = cb.chat.completions.create(model=model_a, messages=[{"role": "user", "content": "Hi"}], seed=1)
        assert reply.choices[0].message.content
        assert b.disposition(model_a) == a.disposition(model_a) > 0.5
        assert ca.chat.completions.create(model=model_b, messages=[{"role": "user", "content": "Hi"}], seed=1)
        ca.close()
        cb.close()
    saved = json.loads((state / "state.json").read_text())
    assert {j["fine_tuned_model"] for j in saved["jobs"]} == {model_a, model_b}  # no save dropped the other's
    assert len(saved["files"]) == 2
    assert not [p for p in state.iterdir() if p.name.startswith(".state.json.")]  # no stray temp files
