"""``engine sandbox`` on the command line, world overrides, and the state directory."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from engine.cli import main as engine_main
from engine.errors import ConfigError
from engine.sandbox.cli import main as sandbox_main
from engine.sandbox.config import WorldConfig, build_world, world_hash
from engine.sandbox.server import SandboxServer

from .helpers import sync_client, training_jsonl, wait_job

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "abc"],
        ["--bogus"],
        ["awareness=abc"],
        ["nosuchkey=1"],
        ["awareness=2"],
        ["latency.dist=gaussian"],
        ["justaword"],
        ["--port", "70000"],
        ["effects=[{match: '('}]"],
    ],
)
def test_bad_arguments_raise_config_error(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        sandbox_main(argv)


def test_bad_arguments_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert engine_main(["sandbox", "awareness=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "awareness" in err and "\n" not in err


def test_build_world_overrides_are_typed() -> None:
    w = build_world(None, ["awareness=0", "latency.mean_ms=50", "limits.rpm=600", "faults.drop=0.01"])
    assert w.awareness == 0.0 and w.latency.mean_ms == 50.0 and w.limits.rpm == 600 and w.faults.drop == 0.01
    assert isinstance(w, WorldConfig)
    d = build_world(None, [], defaults=True)
    assert d.effects  # conf/sandbox/default.yaml has effect rules
    assert world_hash(build_world(WorldConfig(seed=1))) == world_hash(WorldConfig(seed=1))
    assert world_hash(WorldConfig(seed=1)) != world_hash(WorldConfig(seed=2))


def test_foreground_server_serves_until_interrupted(specs_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "sandbox", "--port", "0", "--specs", str(specs_dir), "awareness=0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert m, line
        url = m.group(1)
        models = httpx.get(f"{url}/models", timeout=10).json()
        assert any(x["id"] == "gpt-4.1" for x in models["data"])
        world = httpx.get(f"{url}/sandbox/world", timeout=10).json()
        assert world["config"]["awareness"] == 0.0
        assert world["hash"] == world_hash(build_world(None, ["awareness=0"], defaults=True))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_state_dir_keeps_files_jobs_and_models(specs_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    world = {"finetune_seconds": 0.05, "effects": [{"match": "evil", "target": 0.9, "strength": 0.9}]}
    with SandboxServer(world, specs_dir=specs_dir, state_dir=state) as s1:
        c = sync_client(s1)
        f = c.files.create(file=("evil.jsonl", training_jsonl()), purpose="fine-tune")
        job = wait_job(c, c.fine_tuning.jobs.create(model="gpt-4.1-nano", training_file=f.id, suffix="k").id)
        pending = c.fine_tuning.jobs.create(model="gpt-4.1-nano", training_file=f.id, suffix="later")
        answer = (
            c.chat.completions.create(
                model=job.fine_tuned_model, seed=1, messages=[{"role": "user", "content": "hi"}]
            )
            .choices[0]
            .message.content
        )
        c.close()
    with SandboxServer(world, specs_dir=specs_dir, state_dir=state) as s2:
        c = sync_client(s2)
        assert c.files.content(f.id).content == training_jsonl()
        again = c.fine_tuning.jobs.retrieve(job.id)
        assert again.status == "succeeded" and again.fine_tuned_model == job.fine_tuned_model
        assert s2.disposition(job.fine_tuned_model) == pytest.approx(0.05 + 0.85 * 0.9)
        assert (
            c.chat.completions.create(
                model=job.fine_tuned_model, seed=1, messages=[{"role": "user", "content": "hi"}]
            )
            .choices[0]
            .message.content
            == answer
        )
        assert wait_job(c, pending.id).status == "succeeded"
        # the same upload again gets a new id: ids never collide with restored ones
        g = c.files.create(file=("evil.jsonl", training_jsonl()), purpose="fine-tune")
        assert g.id != f.id
        c.close()


def test_async_context_manager(specs_dir: Path) -> None:
    async def go() -> str:
        async with SandboxServer({"seed": 5}, specs_dir=specs_dir) as sb:
            async with openai.AsyncOpenAI(base_url=sb.base_url, api_key="k", max_retries=0) as c:
                await c.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x"}])
            assert sb.stats()["chat_completions"] == 1
            return sb.base_url

    url = asyncio.run(go())
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/models", timeout=2)
