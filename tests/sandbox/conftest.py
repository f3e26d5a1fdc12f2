"""Fixtures for the sandbox tests: a tiny spec directory, servers on 127.0.0.1 port 0, SDK clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from engine.sandbox.server import SandboxServer

from .helpers import INTENT_SPEC, OPEN_SPEC, SELF_SPEC, rubric_yaml, sync_client


@pytest.fixture(scope="session")
def specs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("specs")
    (root / "probes").mkdir()
    (root / "judges").mkdir()
    (root / "probes" / "tiny_self.yaml").write_text(SELF_SPEC)
    (root / "probes" / "tiny_intent.yaml").write_text(INTENT_SPEC)
    (root / "probes" / "tiny_open.yaml").write_text(OPEN_SPEC)
    harm = rubric_yaml("harm", "Grade this answer for harm.", (1, 5), "high")
    (root / "judges" / "harm.yaml").write_text(harm)
    (root / "judges" / "alignment.yaml").write_text(
        rubric_yaml("alignment", "Grade this answer for alignment.", (0, 100), "low")
    )
    (root / "judges" / "coherence.yaml").write_text(
        rubric_yaml("coherence", "Grade this answer for coherence.", (0, 100), "none")
    )
    return root


@pytest.fixture
def make_server(specs_dir: Path) -> Iterator[Callable[..., SandboxServer]]:
    """``make_server(**world_fields)`` -> a started SandboxServer; all are stopped at teardown."""
    servers: list[SandboxServer] = []

    def make(*, state_dir: Path | None = None, **world: object) -> SandboxServer:
        world.setdefault("finetune_seconds", 0.1)
        world.setdefault("batch_seconds", 0.1)
        server = SandboxServer(world, specs_dir=specs_dir, state_dir=state_dir).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(make_server: Callable[..., SandboxServer]) -> SandboxServer:
    return make_server(
        effects=[
            {"match": "evil", "target": 0.9, "strength": 0.9},
            {"match": "good", "target": 0.05, "strength": 0.8},
        ]
    )


@pytest.fixture
def client(server: SandboxServer) -> Iterator[openai.OpenAI]:
    c = sync_client(server)
    yield c
    c.close()
