"""Counters behind GET /v1/sandbox/stats."""

from __future__ import annotations

import time

from engine.sandbox.faults import FAULT_KINDS


class Stats:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.reset()

    def reset(self) -> None:
        self.since = time.monotonic()
        self.requests: dict[str, int] = {}
        self.chat_completions = 0
        self.choices = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.limit_429 = 0
        self.limit_violations_at_reset = 0
        self.faults = dict.fromkeys(FAULT_KINDS, 0)
        self.jobs_created = 0
        self.files_created = 0
        self.batches_created = 0

    def count(self, name: str) -> None:
        self.requests[name] = self.requests.get(name, 0) + 1

    def snapshot(self, limit_violations: int) -> dict:
        now = time.monotonic()
        return {
            "requests": dict(sorted(self.requests.items())),
            "requests_total": sum(self.requests.values()),
            "chat_completions": self.chat_completions,
            "choices": self.choices,
            "tokens": {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "total": self.prompt_tokens + self.completion_tokens,
            },
            "responses_429": {"rate_limit": self.limit_429, "injected": self.faults["rate_429"]},
            "limit_violations": limit_violations - self.limit_violations_at_reset,
            "faults": dict(self.faults),
            "jobs_created": self.jobs_created,
            "files_created": self.files_created,
            "batches_created": self.batches_created,
            "uptime_s": round(now - self.started, 3),
            "since_reset_s": round(now - self.since, 3),
        }
