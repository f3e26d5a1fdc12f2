"""Requests-per-minute and tokens-per-minute limits over a rolling one-minute window.

A request is admitted only if, counting it, the last 60 seconds hold at most ``rpm`` requests and
``tpm`` tokens (prompt estimate plus ``max_tokens`` times ``n``, as OpenAI counts). Responses carry
OpenAI's ``x-ratelimit-*`` headers; a refusal is a 429 with ``retry-after`` (seconds) and
``retry-after-ms``. ``reset`` is the time until the oldest counted request leaves the window,
i.e. until the remaining budget next grows.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0


def format_duration(seconds: float) -> str:
    """OpenAI's (Go-style) duration text: 20ms, 1s, 1.5s, 6m0s."""
    if seconds < 1.0:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60.0:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes)}m{round(rest, 3):g}s"


class RateLimiter:
    def __init__(self, rpm: int, tpm: int, clock: Callable[[], float] = time.monotonic):
        self.rpm, self.tpm = rpm, tpm
        self.clock = clock
        self.window: deque[tuple[float, int]] = deque()
        self.tokens = 0
        # an independent record of admission times, for the self-check
        self._served: deque[float] = deque(maxlen=rpm + 1) if rpm else deque(maxlen=1)
        self.violations = 0

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm)

    def _evict(self, now: float) -> None:
        edge = now - WINDOW_S
        w = self.window
        while w and w[0][0] <= edge:
            self.tokens -= w.popleft()[1]

    def admit(self, tokens: int) -> tuple[bool, float, dict[str, str]]:
        """(admitted, retry_after_s, headers) for a request costing ``tokens``."""
        now = self.clock()
        self._evict(now)
        w = self.window
        wait = 0.0
        if self.rpm and len(w) + 1 > self.rpm:
            wait = w[0][0] + WINDOW_S - now
        if self.tpm and self.tokens + tokens > self.tpm:
            if tokens > self.tpm:
                wait = max(wait, WINDOW_S)
            else:
                need, freed = self.tokens + tokens - self.tpm, 0
                for t, c in w:
                    freed += c
                    if freed >= need:
                        wait = max(wait, t + WINDOW_S - now)
                        break
        admitted = wait <= 0.0
        if admitted:
            w.append((now, tokens))
            self.tokens += tokens
            self._self_check(now)
        return admitted, max(wait, 0.0), self.headers(now)

    def _self_check(self, now: float) -> None:
        served = self._served
        served.append(now)
        if self.rpm and len(served) > self.rpm and served[0] > now - WINDOW_S:
            self.violations += 1
        if self.tpm and self.tokens > self.tpm:
            self.violations += 1

    def headers(self, now: float) -> dict[str, str]:
        w = self.window
        reset = format_duration(w[0][0] + WINDOW_S - now) if w else "0ms"
        h: dict[str, str] = {}
        if self.rpm:
            h["x-ratelimit-limit-requests"] = str(self.rpm)
            h["x-ratelimit-remaining-requests"] = str(max(0, self.rpm - len(w)))
            h["x-ratelimit-reset-requests"] = reset
        if self.tpm:
            h["x-ratelimit-limit-tokens"] = str(self.tpm)
            h["x-ratelimit-remaining-tokens"] = str(max(0, self.tpm - self.tokens))
            h["x-ratelimit-reset-tokens"] = reset
        return h

    @staticmethod
    def retry_headers(wait: float) -> dict[str, str]:
        return {
            "retry-after": str(max(1, math.ceil(wait))),
            "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
        }
