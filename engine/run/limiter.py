"""Rate limiting for one provider endpoint: RPM and TPM budgets that learn from headers.

A token bucket per budget, refilled at a little under the advertised rate so that no rolling
minute exceeds the limit; ``x-ratelimit-*`` headers set or tighten the budgets; a 429 pauses
every request until its ``retry-after`` and slows the rate down (multiplicative decrease), which
recovers slowly with successes (additive increase).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping

import anyio

SAFETY = 0.97
"""Fraction of the advertised rate actually used."""
BURST_FRACTION = 0.02
"""Bucket capacity as a fraction of the per-minute limit: small, so a minute never overshoots."""

DECREASE_INTERVAL_S = 1.0
"""429s closer together than this slow the rate down once."""
RECOVERY = 0.02
"""Additive recovery of the rate factor per successful response."""

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def parse_reset(value: str | None) -> float | None:
    """OpenAI's reset durations ('6m0s', '1s', '20ms', '0.5s') in seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    m = _DURATION.match(value)
    if not m or not any(m.groups()):
        return None
    h, mi, s, ms = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


class Bucket:
    def __init__(self, per_minute: float, now: float) -> None:
        self.per_minute = per_minute
        self.capacity = max(1.0, per_minute * BURST_FRACTION)
        self.level = self.capacity
        self.updated = now

    @property
    def unlimited(self) -> bool:
        return self.per_minute <= 0

    def set_limit(self, per_minute: float, now: float) -> None:
        was_unlimited = self.unlimited
        self.refill(now)
        self.per_minute = per_minute
        self.capacity = max(1.0, per_minute * BURST_FRACTION)
        self.level = self.capacity if was_unlimited else min(self.level, self.capacity)

    def refill(self, now: float, factor: float = 1.0) -> None:
        if not self.unlimited:
            rate = self.per_minute / 60.0 * SAFETY * factor
            self.level = min(self.capacity, self.level + (now - self.updated) * rate)
        self.updated = now

    def wait_time(self, amount: float, factor: float) -> float:
        if self.unlimited:
            return 0.0
        amount = min(amount, self.capacity)
        if self.level >= amount - 1e-9:  # float dust must not turn into an endless series of tiny waits
            return 0.0
        rate = self.per_minute / 60.0 * SAFETY * factor
        return (amount - self.level) / rate


class RateLimiter:
    """Shared by every request to one endpoint (and, in a sweep, by every job)."""

    def __init__(self, rpm: int = 0, tpm: int = 0, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        self.clock = clock or anyio.current_time
        self.sleep = sleep or anyio.sleep
        now = self.clock()
        self.requests = Bucket(rpm, now)
        self.tokens = Bucket(tpm, now)
        self.factor = 1.0
        self.paused_until = 0.0
        self.n_429 = 0
        self.last_decrease = float("-inf")
        self._lock = anyio.Lock()

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of ``tokens`` tokens fits both budgets, then take it."""
        async with self._lock:  # FIFO: requests leave in the order they arrived
            while True:
                now = self.clock()
                if now < self.paused_until:
                    await self.sleep(self.paused_until - now)
                    continue
                self.requests.refill(now, self.factor)
                self.tokens.refill(now, self.factor)
                wait = max(self.requests.wait_time(1, self.factor), self.tokens.wait_time(tokens, self.factor))
                if wait <= 0:
                    if not self.requests.unlimited:
                        self.requests.level -= 1
                    if not self.tokens.unlimited:
                        self.tokens.level -= min(tokens, self.tokens.capacity)
                    return
                await self.sleep(max(wait, 1e-6))

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn limits from ``x-ratelimit-*`` response headers."""
        now = self.clock()
        for bucket, kind in ((self.requests, "requests"), (self.tokens, "tokens")):
            limit = headers.get(f"x-ratelimit-limit-{kind}")
            if limit is None:
                continue
            try:
                value = float(limit)
            except ValueError:
                continue
            if value > 0 and (bucket.unlimited or value < bucket.per_minute):
                bucket.set_limit(value, now)
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is not None and remaining.strip() in ("0", "0.0"):
                reset = parse_reset(headers.get(f"x-ratelimit-reset-{kind}"))
                if reset:
                    self.paused_until = max(self.paused_until, now + reset)
        if self.factor < 1.0:
            self.factor = min(1.0, self.factor + RECOVERY)

    def on_rate_limited(self, retry_after: float | None) -> None:
        """A 429: everyone waits ``retry_after`` and the rate drops.

        A burst of 429s from requests that were in flight together counts as one signal: the
        rate drops at most once per ``DECREASE_INTERVAL_S``, so scattered 429s (a provider's
        hiccups) do not starve a run while a real overload still halves it within seconds.
        """
        self.n_429 += 1
        now = self.clock()
        if now - self.last_decrease >= DECREASE_INTERVAL_S:
            self.factor = max(0.1, self.factor * 0.7)
            self.last_decrease = now
        if retry_after:
            self.paused_until = max(self.paused_until, now + retry_after)
