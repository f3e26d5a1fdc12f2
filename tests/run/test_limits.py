"""Rate limits hold; Ctrl-C stops cleanly with what was finished recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from engine.cli import main
from engine.run.limiter import RateLimiter, parse_reset
from tests.run.conftest import FAST, SMALL
from tests.run.test_resume import stored_responses


@pytest.mark.parametrize(("text", "seconds"), [("6m0s", 360), ("1s", 1), ("20ms", 0.02), ("0.5s", 0.5),
                                               ("1h2m3s", 3723), ("2", 2), ("", None), ("soon", None)])
def test_parse_reset(text: str, seconds: float | None) -> None:
    assert parse_reset(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_limiter_never_exceeds_rpm_in_any_minute_window() -> None:
    """A simulated clock: 2,000 acquisitions against RPM 600 stay within 600 in every 60 s window."""
    now = [0.0]
    times: list[float] = []

    async def fake_sleep(dt: float) -> None:
        now[0] += dt

    async def go() -> None:
        limiter = RateLimiter(rpm=600, clock=lambda: now[0], sleep=fake_sleep)
        for _ in range(2000):
            await limiter.acquire(10)
            times.append(now[0])

    anyio.run(go)
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - 60:
            j += 1
        assert i - j + 1 <= 600
    rate = len(times) / times[-1] * 60
    assert rate > 600 * 0.9  # and it uses most of the budget


def test_limiter_learns_from_headers_and_backs_off() -> None:
    limiter = RateLimiter(clock=lambda: 100.0)
    assert limiter.requests.unlimited
    limiter.observe({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0",
                     "x-ratelimit-reset-requests": "2s"})
    assert limiter.requests.per_minute == 500 and limiter.paused_until == pytest.approx(102.0)
    limiter.on_rate_limited(5.0)
    assert limiter.paused_until == pytest.approx(105.0) and limiter.factor < 1


def test_study_against_a_rate_limited_provider(run_args: list[str], tmp_path: Path) -> None:
    args = [*run_args, "sandbox.limits.rpm=3000", "scheduler.concurrency=64", "scheduler.max_n=1"]
    assert main(["run", *args, f"hydra.run.dir={tmp_path / 'r'}"]) == 0
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    stats = manifest["sandbox_stats"]
    assert stats["limit_violations"] == 0
    assert manifest["counts"]["sample_errors"] == 0
    # the limiter learned the limit from the headers: few requests were refused ...
    requests = manifest["counts"]["requests"]
    assert stats["responses_429"]["rate_limit"] <= 0.05 * requests
    # ... and it paced the run to the advertised 3,000/min (50/s), less one burst of the concurrency
    assert requests > 300
    assert manifest["duration_s"] >= 0.8 * (requests - 64 - 60) / 50


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "engine", "run", *FAST, *SMALL, "sandbox.latency.mean_ms=50",
           "scheduler.concurrency=2", f"store.path={tmp_path / 'store.sqlite'}",
           f"store.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while stored_responses(tmp_path / "store.sqlite") < 20 and time.monotonic() < deadline:
        assert proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    import polars as pl

    samples = pl.read_parquet(tmp_path / "run" / "samples.parquet")  # published, readable
    assert samples.height >= 20
    assert stored_responses(tmp_path / "store.sqlite") >= samples.filter(pl.col("error").is_null()).height


def test_scattered_429s_do_not_starve_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rpm=6000, clock=lambda: now[0])
    for _ in range(10):  # a burst of 429s from requests in flight together: one slow-down
        limiter.on_rate_limited(None)
    assert limiter.factor == pytest.approx(0.7)
    for _ in range(100):  # 10% scattered 429s over time: the factor recovers between them
        now[0] += 0.1
        if _ % 10 == 0:
            limiter.on_rate_limited(None)
        else:
            limiter.observe({})
    assert limiter.factor > 0.9
