"""The API key never appears in any output, log, manifest, Hydra's saved config, the store or the cache.

A recognisable fake key is exported, the engine runs, plans and fails against OpenAI-compatible
servers on loopback; then every byte it wrote (Parquet and SQLite decoded too) and everything it
printed is searched for the key.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from engine.config.load import load_config
from engine.sandbox.server import SandboxServer
from tests.reliability.helpers import FAKE_KEY, FAST, KEY_ENV, TINY, engine, external, free_port, http_server

MARK = "SECRET-DO-NOT-LEAK"


def texts_of(path: Path) -> list[str]:
    """The file's bytes, and for Parquet and SQLite their decoded contents (compression hides strings)."""
    data = path.read_bytes()
    out = [data.decode("latin-1")]
    if path.suffix == ".parquet":
        meta = pq.read_schema(path).metadata or {}
        out.append(json.dumps({k.decode(): v.decode("latin-1") for k, v in meta.items()}))
        out.append(pl.read_parquet(path).write_ndjson())
    if data.startswith(b"SQLite format 3"):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            out.append("\n".join(conn.iterdump()))
    return out


def leaks(root: Path) -> list[str]:
    found = []
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert files
    for p in files:
        if any(FAKE_KEY in t or MARK in t for t in texts_of(p)):
            found.append(str(p))
    return found


def test_api_key_is_never_written(tmp_path: Path) -> None:
    env = {KEY_ENV: FAKE_KEY}
    state = tmp_path / "state"
    base = [*FAST, *TINY, f"store.path={state / 'store.sqlite'}", f"store.cache_dir={state / 'cache'}",
            "scheduler.progress=log"]
    cfg = load_config(base)
    served = {"object": "list", "data": [{"id": m, "object": "model"}
                                         for m in [*(x.id for x in cfg.models.values()), cfg.judge.model]]}
    seen: list[str] = []

    def echo(handler) -> tuple[int, bytes]:  # noqa: ANN001 - a stdlib request handler
        """A careless proxy: its error messages repeat the Authorization header."""
        seen.append(handler.headers.get("Authorization", ""))
        body = {"error": {"message": f"bad request with {handler.headers.get('Authorization')}"}}
        return 400, json.dumps(body).encode()

    outputs: list[str] = []
    with SandboxServer(overrides=["finetune_seconds=0.2"], state_dir=state / "sandbox") as sb, \
            http_server({"/v1/models": (200, json.dumps(served).encode()), "/v1/files": echo,
                         "/v1/chat/completions": echo}) as proxy:
        ok = engine("run", *base, *external(sb.base_url), f"hydra.run.dir={tmp_path / 'run'}", env=env,
                    cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr[-3000:]
        plan = engine("plan", *base, *external(sb.base_url), env=env, cwd=tmp_path)
        assert plan.returncode == 0, plan.stderr
        down = engine("run", *base, *external(f"http://127.0.0.1:{free_port()}/v1"),
                      f"hydra.run.dir={tmp_path / 'down'}", env=env, cwd=tmp_path)
        assert down.returncode == 2 and "provider.base_url" in down.stderr
        echoed = engine("run", *base, *external(proxy + "/v1"), f"hydra.run.dir={tmp_path / 'echo'}",
                        "analysis.enabled=false", env=env,
                        cwd=tmp_path)
        assert echoed.returncode in (0, 1), echoed.stderr[-3000:]
        assert sb.stats()["chat_completions"] > 0
        outputs += [p.stdout + p.stderr for p in (ok, plan, down, echoed)]

    assert seen and all(s == f"Bearer {FAKE_KEY}" for s in seen)  # the key really was sent ...
    samples = pl.read_parquet(tmp_path / "echo" / "samples.parquet")
    assert samples["error"].str.contains("bad request with Bearer ***", literal=True).any()  # ... and masked
    models = pl.read_parquet(tmp_path / "echo" / "models.parquet")
    assert models["status"].to_list().count("failed") == 1
    for name in ("run", "echo"):
        assert (tmp_path / name / ".hydra" / "config.yaml").exists()
        assert (tmp_path / name / "engine.log").exists()
    assert (state / "sandbox").exists() and (state / "store.sqlite").exists()
    assert leaks(tmp_path) == []
    for text in outputs:
        assert FAKE_KEY not in text and MARK not in text
