"""The sandbox: a local server speaking OpenAI's HTTP API, with a simulated world behind it.

Modules: config (WorldConfig, build_world, world_hash), catalog (known probe prompts and
rubrics), texts and dists (what models say), world (dispositions, fine-tune effects, answers),
api (OpenAI's error shape, ids), chat, training, jobs and batches (endpoint logic), persist (the
optional state directory), limits and faults (realism), stats, app (Starlette routes), server
(SandboxServer, the foreground runner) and cli (``engine sandbox``).

Importing this package is cheap: the server is loaded only when ``SandboxServer`` is used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SandboxServer", "WorldConfig"]


def __getattr__(name: str) -> Any:
    if name == "SandboxServer":
        from engine.sandbox.server import SandboxServer

        return SandboxServer
    if name == "WorldConfig":
        from engine.sandbox.config import WorldConfig

        return WorldConfig
    raise AttributeError(name)
