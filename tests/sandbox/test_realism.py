"""Realism knobs: rate limits with OpenAI's headers, injected faults, latency that never blocks."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import openai
import pytest

from engine.sandbox.config import FaultsConfig, LatencyConfig
from engine.sandbox.faults import Faults, Latency
from engine.sandbox.limits import RateLimiter, format_duration

from .helpers import async_client, sync_client

MSG = [{"role": "user", "content": "Hello"}]


def test_format_duration() -> None:
    assert format_duration(0.02) == "20ms"
    assert format_duration(1.0) == "1s"
    assert format_duration(1.5) == "1.5s"
    assert format_duration(360.0) == "6m0s"
    assert format_duration(61.25) == "1m1.25s"


def test_rate_limiter_rolling_window() -> None:
    now = [0.0]
    lim = RateLimiter(rpm=3, tpm=0, clock=lambda: now[0])
    for _ in range(3):
        ok, _, h = lim.admit(10)
        assert ok
        now[0] += 10
    assert h["x-ratelimit-remaining-requests"] == "0"
    ok, wait, h = lim.admit(10)
    assert not ok and wait == pytest.approx(30.0)  # the first request leaves the window at t=60
    assert h["x-ratelimit-reset-requests"] == "30s"
    now[0] = 60.0
    assert lim.admit(10)[0]
    assert lim.violations == 0
    tok = RateLimiter(rpm=0, tpm=100, clock=lambda: now[0])
    assert tok.admit(60)[0] and not tok.admit(60)[0] and tok.admit(40)[0]
    ok, wait, h = tok.admit(1)
    assert not ok and h["x-ratelimit-remaining-tokens"] == "0" and "x-ratelimit-limit-requests" not in h
    assert tok.retry_headers(0.0123) == {"retry-after": "1", "retry-after-ms": "13"}


def test_rpm_limit_returns_429_with_retry_after(make_server) -> None:  # noqa: ANN001
    s = make_server(limits={"rpm": 5, "tpm": 0})
    c = sync_client(s)
    ok, limited = 0, []
    for _ in range(8):
        try:
            raw = c.chat.completions.with_raw_response.create(model="gpt-4.1", messages=MSG, max_tokens=5)
            assert raw.headers["x-ratelimit-limit-requests"] == "5"
            assert int(raw.headers["x-ratelimit-remaining-requests"]) == 4 - ok
            assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
            ok += 1
        except openai.RateLimitError as exc:
            limited.append(exc)
    assert ok == 5 and len(limited) == 3
    err = limited[0]
    assert err.status_code == 429 and err.code == "rate_limit_exceeded" and err.type == "requests"
    retry = int(err.response.headers["retry-after"])
    assert 50 <= retry <= 60 and int(err.response.headers["retry-after-ms"]) > 50_000
    stats = s.stats()
    assert stats["responses_429"] == {"rate_limit": 3, "injected": 0}
    assert stats["chat_completions"] == 5 and stats["limit_violations"] == 0
    c.close()


def test_concurrent_requests_never_exceed_limits(make_server) -> None:  # noqa: ANN001
    s = make_server(limits={"rpm": 40, "tpm": 0})

    async def go() -> Counter[int]:
        async with async_client(s) as c:

            async def one(i: int) -> int:
                try:
                    await c.chat.completions.create(model="gpt-4.1", messages=MSG, seed=i)
                    return 200
                except openai.RateLimitError:
                    return 429

            return Counter(await asyncio.gather(*(one(i) for i in range(100))))

    counts = asyncio.run(go())
    assert counts == Counter({200: 40, 429: 60})
    assert s.stats()["limit_violations"] == 0


def test_tpm_limit_counts_prompt_and_max_tokens(make_server) -> None:  # noqa: ANN001
    s = make_server(limits={"rpm": 0, "tpm": 100})
    c = sync_client(s)
    # each request counts ~5 prompt tokens + 2 x 20 completion tokens = ~45
    results = []
    for _ in range(3):
        try:
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4.1", messages=MSG, max_tokens=20, n=2
            )
            results.append(int(raw.headers["x-ratelimit-remaining-tokens"]))
        except openai.RateLimitError as exc:
            assert exc.type == "tokens" and "retry-after" in exc.response.headers
            results.append(-1)
    assert results[0] > results[1] >= 0 and results[2] == -1
    c.close()


def test_faults_at_configured_rates(make_server) -> None:  # noqa: ANN001
    rates = {"rate_429": 0.1, "rate_500": 0.1, "rate_503": 0.05, "drop": 0.05, "malformed": 0.05}
    s = make_server(faults=rates)
    n = 800
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=s.base_url, timeout=5) as h:
        for i in range(n):
            try:
                r = h.post("/chat/completions", json={"model": "gpt-4.1", "messages": MSG, "seed": i})
            except httpx.TransportError:
                seen["drop"] += 1
                continue
            if r.status_code == 200:
                try:
                    r.json()
                    seen["ok"] += 1
                except ValueError:
                    seen["malformed"] += 1
            else:
                body = r.json()["error"]
                assert set(body) == {"message", "type", "param", "code"}
                key = {429: "rate_429", 500: "rate_500", 503: "rate_503"}[r.status_code]
                if r.status_code == 429:
                    assert "retry-after" in r.headers and "retry-after-ms" in r.headers
                seen[key] += 1
    for kind, rate in rates.items():
        sd = (rate * (1 - rate) / n) ** 0.5
        assert abs(seen[kind] / n - rate) < 4 * sd, (kind, seen)
    stats = s.stats()
    assert stats["faults"]["drop"] == seen["drop"] and stats["responses_429"]["injected"] == seen["rate_429"]
    assert stats["chat_completions"] == seen["ok"]


def test_faults_are_deterministic_and_seen_by_the_sdk(make_server) -> None:  # noqa: ANN001
    f = Faults(FaultsConfig(rate_500=0.3, drop=0.2), seed=1)
    assert [f.decide(i) for i in range(50)] == [
        Faults(FaultsConfig(rate_500=0.3, drop=0.2), 1).decide(i) for i in range(50)
    ]
    s = make_server(faults={"drop": 1.0})
    c = sync_client(s)
    with pytest.raises(openai.APIConnectionError):
        c.chat.completions.create(model="gpt-4.1", messages=MSG)
    s2 = make_server(faults={"rate_503": 1.0})
    with pytest.raises(openai.InternalServerError) as exc:
        sync_client(s2).chat.completions.create(model="gpt-4.1", messages=MSG)
    assert exc.value.status_code == 503
    s3 = make_server(faults={"malformed": 1.0})
    with pytest.raises(Exception):  # noqa: B017 - the SDK's own choice of error for a broken body
        sync_client(s3).chat.completions.create(model="gpt-4.1", messages=MSG)
    s4 = make_server(faults={"rate_500": 1.0})
    with pytest.raises(openai.InternalServerError):
        sync_client(s4).files.create(file=("x.jsonl", b"{}"), purpose="batch")
    c.close()


def test_slow_fault_exceeds_client_timeout(make_server) -> None:  # noqa: ANN001
    s = make_server(faults={"slow": 1.0, "slow_s": 0.5})
    c = sync_client(s, timeout=0.15)
    with pytest.raises(openai.APITimeoutError):
        c.chat.completions.create(model="gpt-4.1", messages=MSG)
    c.close()


def test_latency_is_asynchronous(make_server) -> None:  # noqa: ANN001
    s = make_server(latency={"dist": "fixed", "mean_ms": 150})

    async def go() -> tuple[float, list[float]]:
        async with async_client(s) as c:

            async def one(i: int) -> float:
                t0 = time.monotonic()
                await c.chat.completions.create(model="gpt-4.1", messages=MSG, seed=i)
                return time.monotonic() - t0

            t = time.monotonic()
            each = await asyncio.gather(*(one(i) for i in range(30)))
            return time.monotonic() - t, list(each)

    total, each = asyncio.run(go())
    assert min(each) >= 0.14
    assert total < 1.5  # 30 x 150 ms served side by side, not one after another (4.5 s)


def test_latency_distributions() -> None:
    for dist in ("fixed", "uniform", "lognormal"):
        lat = Latency(LatencyConfig(dist=dist, mean_ms=100, spread=0.5), seed=0)
        xs = [lat.sample(i) for i in range(4000)]
        assert sum(xs) / len(xs) == pytest.approx(0.1, rel=0.05)
        assert all(x >= 0 for x in xs)
        if dist == "uniform":
            assert min(xs) >= 0.05 - 1e-9 and max(xs) <= 0.15 + 1e-9
    assert Latency(LatencyConfig(mean_ms=0), 0).sample(1) == 0.0
