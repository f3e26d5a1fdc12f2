"""The provider seam: one OpenAI SDK client, pointed at the real API or at the sandbox.

Both kinds go through the same ``AsyncOpenAI`` client over real HTTP; the sandbox is just a
server on a loopback port. The SDK's own retries are off: the scheduler retries, honouring
``retry-after`` and sharing one rate limiter. The API key is read from the environment variable
the config names and is never written anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai

# the raw response type of the SDK's client: httpx2 from openai 3, httpx before
if TYPE_CHECKING:
    from httpx2 import Response as _HTTPResponse
else:
    try:
        from httpx2 import Response as _HTTPResponse
    except ImportError:  # pragma: no cover - older SDKs
        from httpx import Response as _HTTPResponse

from engine.config.schema import EngineConfig
from engine.errors import ProviderConfigError
from engine.hashing import content_key

SANDBOX_KEY = "sandbox-key-not-secret"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
PREFLIGHT_TIMEOUT_S = 10.0


def namespace_for(cfg: EngineConfig) -> str:
    """Identity of the provider for the store: responses are cached per namespace."""
    if cfg.provider.kind == "sandbox":
        from engine.sandbox.config import truth_hash

        return f"sandbox:{truth_hash(cfg.sandbox)}"
    return f"openai:{(cfg.provider.base_url or 'https://api.openai.com/v1').rstrip('/')}"


_SECRETS: set[str] = set()
"""Every API key this process has read: :func:`redact` masks them in text bound for outputs."""


def api_key(cfg: EngineConfig) -> str:
    if cfg.provider.kind == "sandbox":
        return SANDBOX_KEY
    key = os.environ.get(cfg.provider.api_key_env, "")
    if not key.strip():
        raise ProviderConfigError(
            f"environment variable {cfg.provider.api_key_env} is not set", key="provider.api_key_env",
            hint=f"export {cfg.provider.api_key_env}=... or use provider=sandbox")
    if len(key.strip()) >= 8:
        _SECRETS.update({key, key.strip()})
    return key


def redact(text: str) -> str:
    """``text`` with any API key read by this process replaced by ``***`` (a server may echo it)."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


_CHECKED: set[tuple[Any, ...]] = set()
"""Providers (and model lists) this process has checked already: a sweep's jobs check once."""


def check_provider(cfg: EngineConfig, models: dict[str, str] | None = None,
                   timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """One ``GET /models`` before anything is spent, for a provider outside this process.

    A server that cannot be reached, rejects the key, is not an OpenAI API root, or does not
    serve a model the study names, stops the study with one line naming the key (exit 2)
    instead of retrying every request for minutes. ``models``: config key -> model id to look
    for. A busy or failing server (429, 5xx) is not an error here: the run retries those.
    The key goes only into the Authorization header, never into a message.
    """
    if cfg.provider.kind == "sandbox" and not cfg.provider.base_url:
        return  # the in-process sandbox
    import httpx

    base = (cfg.provider.base_url or DEFAULT_BASE_URL).rstrip("/")
    done = (base, cfg.provider.api_key_env, cfg.provider.organization, tuple(sorted((models or {}).items())))
    if done in _CHECKED:
        return
    headers = {"Authorization": f"Bearer {api_key(cfg)}"}
    if cfg.provider.organization:
        headers["OpenAI-Organization"] = cfg.provider.organization
    timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
    hint = "is the server running, and does the URL end in /v1?"
    resp = None
    for attempt in range(3):
        try:
            resp = httpx.get(f"{base}/models", headers=headers, timeout=timeout, follow_redirects=True)
            break
        except httpx.TimeoutException:
            raise ProviderConfigError(f"no answer from {base} within {timeout_s:g} s",
                                      key="provider.base_url", hint=hint) from None
        except httpx.HTTPError as exc:  # refused, reset, unknown host, bad URL
            if attempt == 2:
                reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ProviderConfigError(f"cannot reach {base}: {reason}", key="provider.base_url",
                                          hint=hint) from None
            time.sleep(0.25 * (attempt + 1))
    assert resp is not None
    code = resp.status_code
    if code in (401, 403):
        raise ProviderConfigError(f"{base} rejected the API key in ${cfg.provider.api_key_env} (HTTP {code})",
                                  key="provider.api_key_env", hint="check the key and the organization")
    if code == 404:
        raise ProviderConfigError(f"{base}/models answered 404: not an OpenAI-compatible API root",
                                  key="provider.base_url", hint=hint)
    if code != 200 or not models:
        return
    try:
        served = {str(m["id"]) for m in resp.json()["data"]}
    except (ValueError, KeyError, TypeError):
        return
    for key, model in models.items():
        if served and model not in served:
            raise ProviderConfigError(
                f"model '{model}' is not served by {base} ({len(served)} models listed)", key=key)
    _CHECKED.add(done)


class RequestFailed(Exception):
    """A request failed. ``retryable`` says whether trying again may help."""

    def __init__(self, reason: str, retryable: bool, retry_after: float | None = None,
                 rate_limited: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        self.rate_limited = rate_limited


@dataclass(frozen=True)
class ChatResult:
    texts: list[str | None]
    top_logprobs: list[dict[str, float] | None]
    prompt_tokens: int
    completion_tokens: int
    headers: dict[str, str]
    latency_ms: float


def _retry_after(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value:
            try:
                return float(value) / scale
            except ValueError:
                continue
    return None


def classify(exc: BaseException) -> RequestFailed:
    """Map what the SDK raised to retryable or not, with a short reason for the error row.

    The reason goes into tables and the store, so any API key in it (an echoing proxy) is masked.
    """
    failure = _classify(exc)
    failure.reason = redact(failure.reason)
    failure.args = (failure.reason,)
    return failure


def _classify(exc: BaseException) -> RequestFailed:
    if isinstance(exc, openai.RateLimitError):
        return RequestFailed("429 rate limited", True, _retry_after(exc.response.headers), rate_limited=True)
    if isinstance(exc, openai.APITimeoutError):
        return RequestFailed("timeout", True)
    if isinstance(exc, openai.APIConnectionError):
        return RequestFailed(f"connection error: {exc.__cause__ or exc}", True)
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        msg = _error_message(exc)
        retry = code in (408, 409, 500, 502, 503, 504) or code >= 500
        return RequestFailed(f"{code} {msg}", retry, _retry_after(exc.response.headers))
    if isinstance(exc, (openai.APIResponseValidationError, ValueError, KeyError, TypeError, AttributeError)):
        return RequestFailed(f"malformed response: {type(exc).__name__}", True)
    raise exc


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return str(exc.message)[:300]


class Provider:
    """The async client plus the calls the engine makes."""

    def __init__(self, client: openai.AsyncOpenAI, namespace: str, base_url: str) -> None:
        self.client = client
        self.namespace = namespace
        self.base_url = base_url
        self.sandbox: Any = None
        """The in-process sandbox server, when there is one (its stats go into the manifest)."""

    async def chat(self, *, model: str, messages: list[dict[str, str]], n: int, temperature: float, seed: int,
                   max_tokens: int, top_logprobs: int, timeout: float) -> ChatResult:  # noqa: ASYNC109
        """One chat completion through the client's own request path (auth, base URL, timeout, errors).

        The body is plain JSON already and the few fields read here are read from the JSON: the
        SDK's typed ``create`` would walk its TypedDicts over every message and build a pydantic
        model of every response, twice the CPU of the request itself (tests/bench/bench_client_cpu.py).
        """
        body: dict[str, Any] = {"model": model, "messages": messages, "n": n, "temperature": temperature,
                                "seed": seed, "max_tokens": max_tokens}
        if top_logprobs:
            body.update(logprobs=True, top_logprobs=top_logprobs)
        start = time.perf_counter()
        try:
            response = await self.client.post("/chat/completions", body=body, cast_to=_HTTPResponse,
                                              options={"timeout": timeout})
            completion = json.loads(response.content)
            texts: list[str | None] = []
            tops: list[dict[str, float] | None] = []
            for choice in sorted(completion["choices"], key=lambda c: c["index"]):
                texts.append(choice["message"].get("content"))
                top = None
                logprobs = choice.get("logprobs")
                if top_logprobs and logprobs and logprobs.get("content"):
                    first = logprobs["content"][0]
                    top = ({t["token"]: t["logprob"] for t in first.get("top_logprobs") or ()}
                           or {first["token"]: first["logprob"]})
                tops.append(top)
            if len(texts) != n:
                raise ValueError(f"expected {n} choices, got {len(texts)}")
            usage = completion.get("usage") or {}
            return ChatResult(texts, tops, usage.get("prompt_tokens") or 0,
                              usage.get("completion_tokens") or 0, dict(response.headers),
                              (time.perf_counter() - start) * 1000)
        except Exception as exc:  # noqa: BLE001 - classify() re-raises what is not a request failure
            raise classify(exc) from exc

    async def close(self) -> None:
        await self.client.close()


def make_client(cfg: EngineConfig, base_url: str | None) -> openai.AsyncOpenAI:
    http_client = openai.DefaultAioHttpClient() if cfg.provider.transport == "aiohttp" else None
    return openai.AsyncOpenAI(
        api_key=api_key(cfg), base_url=base_url, organization=cfg.provider.organization, max_retries=0,
        timeout=cfg.scheduler.request_timeout_s, http_client=http_client)


def sandbox_state_dir(cfg: EngineConfig) -> Path:
    """Where the in-process sandbox keeps its files and jobs, so a resumed run finds them."""
    return Path(cfg.store.path).parent / "sandbox" / namespace_for(cfg).split(":", 1)[1][:16]


@asynccontextmanager
async def open_provider(cfg: EngineConfig) -> AsyncIterator[Provider]:
    """The provider for a run: starts the sandbox in-process when ``provider.kind`` is sandbox."""
    namespace = namespace_for(cfg)
    if cfg.provider.kind == "sandbox" and not cfg.provider.base_url:
        from engine.plan.compile import specs_dir_of
        from engine.sandbox.server import SandboxServer

        server = SandboxServer(cfg.sandbox, specs_dir=specs_dir_of(cfg), state_dir=sandbox_state_dir(cfg))
        async with server:
            client = make_client(cfg, server.base_url)
            provider = Provider(client, namespace, server.base_url)
            provider.sandbox = server
            try:
                yield provider
            finally:
                await provider.close()
        return
    base_url = cfg.provider.base_url
    client = make_client(cfg, base_url)
    provider = Provider(client, namespace, base_url or DEFAULT_BASE_URL)
    try:
        yield provider
    finally:
        await provider.close()


def config_without_secrets(cfg: EngineConfig) -> dict[str, Any]:
    """The resolved config for the manifest. Config never holds a key, only the variable's name."""
    data = dataclasses.asdict(cfg)
    text = json.dumps(data)
    key = os.environ.get(cfg.provider.api_key_env)
    if key and len(key) >= 8 and key in text:  # a key pasted into some config value by mistake
        data = json.loads(text.replace(key, "***"))
    return data


__all__ = ["Provider", "open_provider", "namespace_for", "RequestFailed", "ChatResult", "content_key"]
