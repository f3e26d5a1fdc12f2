"""The HTTP face of the sandbox: a Starlette app speaking OpenAI's API over the simulated world.

:class:`Sandbox` holds the state (world, files, jobs, batches, limiter, faults, stats);
:func:`build_app` wraps it in routes. Everything runs on one event loop; nothing blocks it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from engine.sandbox.api import APIError, invalid, model_not_found
from engine.sandbox.batches import BatchStore
from engine.sandbox.catalog import Catalog
from engine.sandbox.chat import complete, parse_chat
from engine.sandbox.config import WorldConfig, world_hash
from engine.sandbox.faults import Faults, Latency
from engine.sandbox.jobs import FILE_PURPOSES, JobStore
from engine.sandbox.limits import RateLimiter
from engine.sandbox.persist import StateDir
from engine.sandbox.stats import Stats
from engine.sandbox.world import World

_METADATA_KEY = re.compile(r"^metadata\[(.+)\]$")
_RAW_SEND = "sandbox.raw_send"


class Sandbox:
    """All state of one sandbox server."""

    def __init__(
        self, config: WorldConfig, specs_dir: Path | str | None = None, state_dir: Path | str | None = None
    ):
        self.config = config
        self.hash = world_hash(config)
        self.catalog = Catalog.load(specs_dir)
        self.world = World(config, self.catalog)
        self.jobs = JobStore(self.world)
        self.batches = BatchStore(self.jobs)
        if state_dir is not None:
            StateDir(Path(state_dir), self.jobs, self.batches).attach()
        self.limiter = RateLimiter(config.limits.rpm, config.limits.tpm)
        self.faults = Faults(config.faults, config.seed)
        self.latency = Latency(config.latency, config.seed)
        self.stats = Stats()
        self.counter = 0

    def snapshot(self) -> dict:
        return self.stats.snapshot(self.limiter.violations)

    def reset_stats(self) -> None:
        self.stats.reset()
        self.stats.limit_violations_at_reset = self.limiter.violations

    def next_fault(self) -> tuple[int, str | None]:
        self.counter += 1
        fault = self.faults.decide(self.counter)
        if fault is not None:
            self.stats.faults[fault] += 1
        return self.counter, fault


class OpenAIJSON(JSONResponse):
    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def list_response(data: list[dict]) -> Response:
    """An unpaginated OpenAI list object."""
    return OpenAIJSON({"object": "list", "data": data, "has_more": False,
                       "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})


def error_response(err: APIError) -> Response:
    return OpenAIJSON(err.body(), status_code=err.status, headers=err.headers or None)


class DropResponse(Response):
    """Close the connection without answering (a dropped connection, as the client sees it)."""

    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get(_RAW_SEND)
        transport = getattr(getattr(raw, "__self__", None), "transport", None)
        if transport is not None:
            transport.abort()
            await asyncio.sleep(0)  # let the server see the connection is gone before it returns
            await asyncio.sleep(0)
            return
        # no transport at hand: start a response and break it off
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
            }
        )
        raise ConnectionAbortedError("sandbox: injected dropped connection")


def _fault_response(kind: str) -> Response | None:
    if kind == "rate_429":
        return error_response(
            APIError(
                429,
                "Rate limit reached (injected by the sandbox). Please try again in 100ms.",
                type="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": "1", "retry-after-ms": "100"},
            )
        )
    if kind == "rate_500":
        return error_response(
            APIError(
                500,
                "The server had an error while processing your request. Sorry about that!",
                type="server_error",
            )
        )
    if kind == "rate_503":
        return error_response(
            APIError(503, "The server is overloaded or not ready yet.", type="server_error")
        )
    if kind == "drop":
        return DropResponse()
    if kind == "malformed":
        return Response(
            b'{"id": "chatcmpl-sandbox", "object": "chat.completion", "choices": [{"ind',
            media_type="application/json",
        )
    return None


Handler = Callable[[Request], Awaitable[Response]]


def build_app(sb: Sandbox) -> Callable:
    world, jobs, batches, stats = sb.world, sb.jobs, sb.batches, sb.stats
    routes: list[Route] = []

    def route(method: str, path: str) -> Callable[[Handler], Handler]:
        name = f"{method} {path}"

        def wrap(fn: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                stats.count(name)
                try:
                    return await fn(request)
                except APIError as err:
                    return error_response(err)

            routes.append(Route(path, endpoint, methods=[method]))
            return fn

        return wrap

    async def json_body(request: Request) -> dict:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise invalid(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
            )
        return body

    async def faulted() -> Response | None:
        counter, fault = sb.next_fault()
        if fault == "slow":
            await asyncio.sleep(sb.faults.slow_s)
            return None
        return _fault_response(fault) if fault else None

    # ---- chat ------------------------------------------------------------------------------------
    @route("POST", "/v1/chat/completions")
    async def chat(request: Request) -> Response:
        req = parse_chat(world, await json_body(request))
        headers: dict[str, str] = {}
        if sb.limiter.active:
            ok, wait, headers = sb.limiter.admit(req.limit_tokens)
            if not ok:
                stats.limit_429 += 1
                kind = "requests" if sb.limiter.rpm and len(sb.limiter.window) >= sb.limiter.rpm else "tokens"
                unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
                limit = sb.limiter.rpm if kind == "requests" else sb.limiter.tpm
                raise APIError(
                    429,
                    f"Rate limit reached for {req.model.id} in organization "
                    f"org-{sb.config.organization} on {unit}: Limit {limit}. Please try again in "
                    f"{wait:.3f}s.",
                    type=kind,
                    code="rate_limit_exceeded",
                    headers={**headers, **sb.limiter.retry_headers(wait)},
                )
        counter, fault = sb.next_fault()
        if fault == "slow":
            await asyncio.sleep(sb.faults.slow_s)
        elif fault is not None:
            return _fault_response(fault)  # type: ignore[return-value]
        delay = sb.latency.sample(counter)
        if delay > 0:
            await asyncio.sleep(delay)
        out, ctoks = complete(world, req)
        stats.chat_completions += 1
        stats.choices += req.n
        stats.prompt_tokens += req.prompt_tokens
        stats.completion_tokens += ctoks
        return OpenAIJSON(out, headers=headers or None)

    # ---- models ----------------------------------------------------------------------------------
    def model_obj(model_id: str, created: int, owned_by: str) -> dict:
        return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}

    @route("GET", "/v1/models")
    async def list_models(request: Request) -> Response:
        jobs.refresh_all()
        data = [
            model_obj(m.id, m.created, m.owned_by) for m in world.models.values() if ":ckpt-step-" not in m.id
        ]
        data += [model_obj(a, world.models[t].created, "system") for a, t in world.aliases.items()]
        return OpenAIJSON({"object": "list", "data": data})

    @route("GET", "/v1/models/{model:path}")
    async def get_model(request: Request) -> Response:
        model_id = request.path_params["model"]
        m = world.resolve(model_id)
        if m is None:
            raise model_not_found(model_id)
        return OpenAIJSON(model_obj(model_id, m.created, m.owned_by))

    # ---- files -----------------------------------------------------------------------------------
    @route("POST", "/v1/files")
    async def upload(request: Request) -> Response:
        if (resp := await faulted()) is not None:
            return resp
        try:
            form = await request.form()
        except Exception:  # noqa: BLE001 - any multipart parse error is the client's
            raise invalid("Could not parse the multipart form body.") from None
        upload = form.get("file")
        purpose = form.get("purpose")
        if upload is None or isinstance(upload, str):
            raise invalid(
                "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
            )
        if purpose not in FILE_PURPOSES:
            raise invalid(
                f"Invalid value for 'purpose': {purpose!r}; the sandbox takes {' or '.join(FILE_PURPOSES)}.",
                param="purpose",
            )
        data = await upload.read()
        rec = jobs.add_file(upload.filename or "upload.jsonl", str(purpose), data)
        stats.files_created += 1
        return OpenAIJSON(rec.obj())

    @route("GET", "/v1/files")
    async def list_files(request: Request) -> Response:
        purpose = request.query_params.get("purpose")
        data = [f.obj() for f in reversed(jobs.files.values()) if purpose in (None, f.purpose)]
        return list_response(data)

    @route("GET", "/v1/files/{file_id}")
    async def get_file(request: Request) -> Response:
        if (resp := await faulted()) is not None:
            return resp
        return OpenAIJSON(jobs.file(request.path_params["file_id"]).obj())

    @route("DELETE", "/v1/files/{file_id}")
    async def delete_file(request: Request) -> Response:
        rec = jobs.file(request.path_params["file_id"])
        del jobs.files[rec.id]
        jobs.on_change()
        return OpenAIJSON({"id": rec.id, "object": "file", "deleted": True})

    @route("GET", "/v1/files/{file_id}/content")
    async def file_content(request: Request) -> Response:
        if (resp := await faulted()) is not None:
            return resp
        return Response(jobs.file(request.path_params["file_id"]).data, media_type="application/octet-stream")

    # ---- fine-tuning -----------------------------------------------------------------------------
    def limit_of(request: Request, default: int) -> int:
        raw = request.query_params.get("limit")
        if raw is None:
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise invalid("Invalid 'limit': expected an integer between 1 and 100.", param="limit")
        return int(raw)

    @route("POST", "/v1/fine_tuning/jobs")
    async def create_job(request: Request) -> Response:
        job = jobs.create_job(await json_body(request))
        stats.jobs_created += 1
        return OpenAIJSON(jobs.job_obj(job))

    @route("GET", "/v1/fine_tuning/jobs")
    async def list_jobs(request: Request) -> Response:
        meta = {m.group(1): v for k, v in request.query_params.multi_items() if (m := _METADATA_KEY.match(k))}
        return OpenAIJSON(
            jobs.list_jobs(request.query_params.get("after"), limit_of(request, 20), meta or None)
        )

    @route("GET", "/v1/fine_tuning/jobs/{job_id}")
    async def get_job(request: Request) -> Response:
        return OpenAIJSON(jobs.job_obj(jobs.job(request.path_params["job_id"])))

    @route("GET", "/v1/fine_tuning/jobs/{job_id}/events")
    async def job_events(request: Request) -> Response:
        job = jobs.job(request.path_params["job_id"])
        return OpenAIJSON(jobs.events(job, request.query_params.get("after"), limit_of(request, 20)))

    @route("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints")
    async def job_checkpoints(request: Request) -> Response:
        job = jobs.job(request.path_params["job_id"])
        return OpenAIJSON(jobs.checkpoints(job, request.query_params.get("after"), limit_of(request, 10)))

    @route("POST", "/v1/fine_tuning/jobs/{job_id}/cancel")
    async def cancel_job(request: Request) -> Response:
        job = jobs.job(request.path_params["job_id"])
        jobs.cancel(job)
        return OpenAIJSON(jobs.job_obj(job))

    # ---- batches ---------------------------------------------------------------------------------
    @route("POST", "/v1/batches")
    async def create_batch(request: Request) -> Response:
        batch = batches.create(await json_body(request))
        stats.batches_created += 1
        return OpenAIJSON(batches.obj(batch))

    @route("GET", "/v1/batches")
    async def list_batches(request: Request) -> Response:
        data = [batches.obj(b) for b in reversed(batches.batches.values())]
        return list_response(data)

    @route("GET", "/v1/batches/{batch_id}")
    async def get_batch(request: Request) -> Response:
        return OpenAIJSON(batches.obj(batches.get(request.path_params["batch_id"])))

    @route("POST", "/v1/batches/{batch_id}/cancel")
    async def cancel_batch(request: Request) -> Response:
        batch = batches.get(request.path_params["batch_id"])
        batches.cancel(batch)
        return OpenAIJSON(batches.obj(batch))

    # ---- the laboratory --------------------------------------------------------------------------
    @route("GET", "/v1/sandbox/stats")
    async def get_stats(request: Request) -> Response:
        return OpenAIJSON(sb.snapshot())

    @route("POST", "/v1/sandbox/reset_stats")
    async def reset_stats(request: Request) -> Response:
        sb.reset_stats()
        return OpenAIJSON(sb.snapshot())

    @route("GET", "/v1/sandbox/world")
    async def get_world(request: Request) -> Response:
        return OpenAIJSON(
            {
                "hash": sb.hash,
                "config": dataclasses.asdict(sb.config),
                "probe_prompts": len(sb.catalog.probes),
                "rubrics": len(sb.catalog.rubrics),
                "spec_problems": sb.catalog.problems,
            }
        )

    @route("GET", "/v1/sandbox/models/{model:path}/disposition")
    async def disposition(request: Request) -> Response:
        model_id = request.path_params["model"]
        m = world.resolve(model_id)
        if m is None:
            raise model_not_found(model_id)
        return OpenAIJSON(
            {
                "model": m.id,
                "disposition": m.disposition,
                "reported": world.reported(m.disposition),
                "root": m.root,
                "parent": m.parent,
            }
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            msg = f"Invalid URL ({request.method} {request.url.path})"
        elif status == 405:
            msg = f"Method {request.method} not allowed on {request.url.path}"
        else:
            msg = str(getattr(exc, "detail", "")) or "error"
        return error_response(APIError(status, msg))

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(
            APIError(500, f"The sandbox failed: {type(exc).__name__}: {exc}", type="server_error")
        )

    inner = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http":
            scope[_RAW_SEND] = send
        await inner(scope, receive, send)

    return app
