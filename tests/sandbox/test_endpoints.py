"""Every endpoint through the official openai SDK over loopback, sync and async."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from engine.hashing import canonical_json, sha256_hex
from engine.sandbox.config import world_hash

from .helpers import async_client, fine_tune, sync_client, training_jsonl, wait_job

BASES = ["gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14", "gpt-4o-mini-2024-07-18"]
ALIASES = ["gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano"]


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert set(BASES + ALIASES) <= ids
    m = client.models.retrieve("gpt-4.1-mini")
    assert m.id == "gpt-4.1-mini" and m.object == "model"
    with pytest.raises(openai.NotFoundError) as exc:
        client.models.retrieve("gpt-9")
    assert exc.value.status_code == 404
    assert exc.value.code == "model_not_found"


def test_files_upload_get_content_list_delete(client: openai.OpenAI) -> None:
    data = training_jsonl()
    f = client.files.create(file=("train.jsonl", data), purpose="fine-tune")
    assert f.id.startswith("file-") and f.bytes == len(data) and f.filename == "train.jsonl"
    assert f.purpose == "fine-tune" and f.status == "processed"
    assert client.files.retrieve(f.id).id == f.id
    assert client.files.content(f.id).content == data
    b = client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    assert {x.id for x in client.files.list()} >= {f.id, b.id}
    assert client.files.delete(b.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(b.id)
    with pytest.raises(openai.BadRequestError) as exc:
        client.files.create(file=("x.txt", b"x"), purpose="assistants")
    assert exc.value.param == "purpose"


def test_fine_tune_lifecycle_events_checkpoints(client: openai.OpenAI) -> None:
    f = client.files.create(file=("train.jsonl", training_jsonl(20)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="gpt-4.1-nano",
        training_file=f.id,
        suffix="demo",
        seed=7,
        metadata={"node": "abc"},
        hyperparameters={"n_epochs": 2, "batch_size": 4},
    )
    assert job.status == "validating_files" and job.fine_tuned_model is None and job.trained_tokens is None
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 4
    assert job.seed == 7 and job.metadata == {"node": "abc"} and job.model == "gpt-4.1-nano"
    seen = {job.status}
    deadline = time.monotonic() + 5
    while job.status not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.005)
        job = client.fine_tuning.jobs.retrieve(job.id)
        seen.add(job.status)
    assert job.status == "succeeded"
    assert {"queued", "running"} & seen
    assert job.fine_tuned_model.startswith("ft:gpt-4.1-nano-2025-04-14:sandbox:demo:")
    assert job.trained_tokens and job.trained_tokens > 0 and job.finished_at
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    messages = [e.message for e in events]
    assert messages[0] == "The job has successfully completed"  # newest first
    assert messages[-1].startswith("Created fine-tuning job")
    assert any(e.type == "metrics" for e in events)
    page = client.fine_tuning.jobs.list_events(job.id, limit=3)
    assert len(page.data) == 3 and page.has_more
    cps = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert len(cps) == 2 and all(c.fine_tuned_model_checkpoint.startswith(job.fine_tuned_model) for c in cps)
    # the fine-tuned model and its checkpoints answer chat requests
    for model in (job.fine_tuned_model, cps[-1].fine_tuned_model_checkpoint):
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
    assert job.fine_tuned_model in {m.id for m in client.models.list()}


def test_fine_tune_method_form_and_fine_tune_of_fine_tune(client: openai.OpenAI) -> None:
    f = client.files.create(file=("t.jsonl", training_jsonl()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="gpt-4.1-mini-2025-04-14",
        training_file=f.id,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 4, "learning_rate_multiplier": 0.5}},
        },
    )
    assert job.hyperparameters.n_epochs == 4 and job.hyperparameters.learning_rate_multiplier == 0.5
    assert job.method.type == "supervised"
    first = wait_job(client, job.id).fine_tuned_model
    second = fine_tune(client, first, "t2.jsonl", training_jsonl(), suffix="again")
    assert second.startswith("ft:gpt-4.1-mini-2025-04-14:sandbox:again:")


def test_fine_tune_validation_errors(client: openai.OpenAI) -> None:
    def create(content: bytes, **kw: object) -> openai.BadRequestError:
        f = client.files.create(file=("t.jsonl", content), purpose="fine-tune")
        with pytest.raises(openai.BadRequestError) as exc:
            client.fine_tuning.jobs.create(model="gpt-4.1-nano", training_file=f.id, **kw)  # type: ignore[arg-type]
        return exc.value

    err = create(training_jsonl(9))
    assert err.status_code == 400 and err.code == "invalid_training_file" and err.param == "training_file"
    assert "at least 10" in err.message
    body = err.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "invalid_request_error"
    lines = training_jsonl(12).splitlines()
    assert "line 3 " in create(b"\n".join(lines[:2] + [b"not json"] + lines[2:])).message
    bad_role = training_jsonl(12).replace(b'"system"', b'"robot"', 1)
    assert "role" in create(bad_role).message
    empty = training_jsonl(12).replace(b'"Answer 0"', b'"  "')
    assert "assistant" in create(empty).message
    assert create(training_jsonl(), hyperparameters={"n_epochs": 0}).param == "hyperparameters.n_epochs"
    assert create(training_jsonl(), method={"type": "reinforcement"}).param == "method.type"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(model="gpt-4.1-nano", training_file="file-nope")
    b = client.files.create(file=("b.jsonl", training_jsonl()), purpose="batch")
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(model="gpt-4.1-nano", training_file=b.id)
    f = client.files.create(file=("t.jsonl", training_jsonl()), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError) as nf:
        client.fine_tuning.jobs.create(model="gpt-5-nope", training_file=f.id)
    assert nf.value.code == "model_not_found"


def test_jobs_list_pagination_and_metadata_filter(client: openai.OpenAI) -> None:
    f = client.files.create(file=("t.jsonl", training_jsonl()), purpose="fine-tune")
    ids = [
        client.fine_tuning.jobs.create(
            model="gpt-4.1-nano", training_file=f.id, metadata={"k": str(i % 2), "run": "x"}
        ).id
        for i in range(5)
    ]
    page = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in page.data] == ids[::-1][:2] and page.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(limit=2)] == ids[::-1]  # auto-pagination
    after = client.fine_tuning.jobs.list(limit=2, after=ids[3])
    assert [j.id for j in after.data] == [ids[2], ids[1]]
    odd = client.fine_tuning.jobs.list(metadata={"k": "1"})
    assert [j.id for j in odd.data] == [ids[3], ids[1]]
    assert client.fine_tuning.jobs.list(metadata={"k": "1", "run": "y"}).data == []
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")


def test_cancel_and_failure(make_server) -> None:  # noqa: ANN001
    slow = make_server(finetune_seconds=30)
    c = sync_client(slow)
    f = c.files.create(file=("t.jsonl", training_jsonl()), purpose="fine-tune")
    job = c.fine_tuning.jobs.create(model="gpt-4.1-nano", training_file=f.id)
    cancelled = c.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
    assert c.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert c.fine_tuning.jobs.list_events(job.id).data[0].message == "Fine-tuning job cancelled"
    with pytest.raises(openai.BadRequestError):
        c.fine_tuning.jobs.cancel(job.id)
    failing = make_server(faults={"finetune_failure": 1.0})
    c2 = sync_client(failing)
    f = c2.files.create(file=("t.jsonl", training_jsonl()), purpose="fine-tune")
    job = wait_job(c2, c2.fine_tuning.jobs.create(model="gpt-4.1", training_file=f.id).id)
    assert job.status == "failed" and job.error and job.error.code and job.error.message
    assert job.fine_tuned_model is None
    assert c2.fine_tuning.jobs.list_events(job.id).data[0].level == "error"
    c.close()
    c2.close()


def test_jobs_advance_without_polling(make_server) -> None:  # noqa: ANN001
    s = make_server(finetune_seconds=0.1)
    c = sync_client(s)
    f = c.files.create(file=("t.jsonl", training_jsonl()), purpose="fine-tune")
    job = c.fine_tuning.jobs.create(model="gpt-4.1-nano", training_file=f.id, suffix="quiet")
    time.sleep(0.2)
    # never polled: the model answers at once, and the job reads succeeded
    r = c.chat.completions.create(
        model=job.fine_tuned_model or _ft_name(c, job.id), messages=[{"role": "user", "content": "hi"}]
    )
    assert r.choices[0].message.content
    c.close()


def _ft_name(c: openai.OpenAI, job_id: str) -> str:
    return c.fine_tuning.jobs.retrieve(job_id).fine_tuned_model or ""


def test_chat_completion_shape(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "Hello there"}], n=3, seed=1, temperature=0.7
    )
    assert r.object == "chat.completion" and r.model == "gpt-4.1-2025-04-14" and r.id.startswith("chatcmpl-")
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(
        c.finish_reason == "stop" and c.message.role == "assistant" and c.message.content for c in r.choices
    )
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    short = client.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "Hello"}], max_tokens=2
    )
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 2
    short2 = client.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "Hello"}], max_completion_tokens=3
    )
    assert short2.choices[0].finish_reason == "length" and short2.usage.completion_tokens == 3
    lp = client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "Hello"}],
        logprobs=True,
        top_logprobs=2,
        max_tokens=4,
    )
    content = lp.choices[0].logprobs.content
    assert len(content) == 4 and len(content[0].top_logprobs) <= 2 and content[0].logprob <= 0


def test_chat_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert nf.value.code == "model_not_found" and nf.value.body["type"] == "invalid_request_error"
    for kw, param in (
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ):
        with pytest.raises(openai.BadRequestError) as exc:
            client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x"}], **kw)  # type: ignore[arg-type]
        assert exc.value.status_code == 400 and exc.value.param == param, kw
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-4.1", messages=[])
    assert exc.value.param == "messages"
    raw = httpx.post(str(client.base_url.join("chat/completions")), content=b"{not json", timeout=5)
    assert raw.status_code == 400 and set(raw.json()["error"]) == {"message", "type", "param", "code"}
    missing = httpx.get(str(client.base_url.join("no/such/path")), timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"


def test_batches(client: openai.OpenAI) -> None:
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4.1-nano",
                "messages": [{"role": "user", "content": f"Hi {i}"}],
                "seed": i,
            },
        }
        for i in range(3)
    ]
    lines.append(
        {
            "custom_id": "bad",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
        }
    )
    data = "\n".join(json.dumps(x) for x in lines).encode()
    f = client.files.create(file=("batch.jsonl", data), purpose="batch")
    batch = client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"k": "v"}
    )
    assert batch.status in ("validating", "in_progress") and batch.output_file_id is None
    deadline = time.monotonic() + 5
    while batch.status != "completed" and time.monotonic() < deadline:
        time.sleep(0.02)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.request_counts.total == 4
    assert batch.request_counts.completed == 3 and batch.request_counts.failed == 1
    out = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in out] == ["r0", "r1", "r2"]
    assert all(o["response"]["status_code"] == 200 for o in out)
    # the same request answered directly gives the same answer
    direct = client.chat.completions.create(**lines[1]["body"])
    assert out[1]["response"]["body"]["choices"][0]["message"]["content"] == direct.choices[0].message.content
    err = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    assert err[0]["custom_id"] == "bad" and err[0]["response"]["status_code"] == 404
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")


def test_async_client_end_to_end(server) -> None:  # noqa: ANN001
    async def go() -> None:
        c = async_client(server)
        async with c:
            models = [m.id async for m in c.models.list()]
            assert "gpt-4.1" in models
            f = await c.files.create(file=("evil.jsonl", training_jsonl()), purpose="fine-tune")
            assert (await c.files.retrieve(f.id)).id == f.id
            job = await c.fine_tuning.jobs.create(model="gpt-4.1-nano", training_file=f.id)
            for _ in range(200):
                job = await c.fine_tuning.jobs.retrieve(job.id)
                if job.status == "succeeded":
                    break
                await asyncio.sleep(0.01)
            assert job.status == "succeeded"
            assert (await c.fine_tuning.jobs.list_events(job.id)).data
            assert (await c.fine_tuning.jobs.checkpoints.list(job.id)).data
            rs = await asyncio.gather(
                *(
                    c.chat.completions.create(
                        model=job.fine_tuned_model, messages=[{"role": "user", "content": f"q{i}"}], seed=i
                    )
                    for i in range(20)
                )
            )
            assert all(r.choices[0].message.content for r in rs)
            with pytest.raises(openai.NotFoundError):
                await c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])

    asyncio.run(go())


def test_aiohttp_transport(server) -> None:  # noqa: ANN001
    async def go() -> str:
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key="k", max_retries=0, http_client=openai.DefaultAioHttpClient()
        ) as c:
            r = await c.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x"}])
            return r.choices[0].message.content or ""

    assert asyncio.run(go())


def test_sandbox_endpoints(server) -> None:  # noqa: ANN001
    base = server.base_url
    world = httpx.get(f"{base}/sandbox/world", timeout=5).json()
    assert world["hash"] == world_hash(server.config) == sha256_hex(canonical_json(server.config))
    assert world["probe_prompts"] > 0
    d = httpx.get(f"{base}/sandbox/models/gpt-4.1/disposition", timeout=5).json()
    assert d["disposition"] == pytest.approx(0.05) and d["model"] == "gpt-4.1-2025-04-14"
    assert httpx.get(f"{base}/sandbox/models/nope/disposition", timeout=5).status_code == 404
    c = sync_client(server)
    c.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x"}], n=2)
    stats = httpx.get(f"{base}/sandbox/stats", timeout=5).json()
    for key in (
        "requests",
        "requests_total",
        "chat_completions",
        "choices",
        "tokens",
        "responses_429",
        "limit_violations",
        "faults",
        "jobs_created",
        "files_created",
        "batches_created",
    ):
        assert key in stats
    assert stats["chat_completions"] == 1 and stats["choices"] == 2
    assert stats["requests"]["POST /v1/chat/completions"] == 1
    assert stats == {
        **server.stats(),
        "uptime_s": stats["uptime_s"],
        "since_reset_s": stats["since_reset_s"],
        "requests": stats["requests"],
        "requests_total": stats["requests_total"],
    }
    reset = httpx.post(f"{base}/sandbox/reset_stats", timeout=5).json()
    assert reset["chat_completions"] == 0
    c.close()
