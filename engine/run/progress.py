"""Progress of a run: counters, and a display that is live on a terminal and plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import anyio

log = logging.getLogger("engine.run")


@dataclass
class Counters:
    samples_total: int = 0
    samples_done: int = 0
    samples_cached: int = 0
    sample_errors: int = 0
    judge_total: int = 0
    judge_done: int = 0
    judge_cached: int = 0
    judge_errors: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_by_model: dict[str, list[int]] = field(default_factory=dict)
    """Model id -> [prompt, completion] tokens billed in this run (answers from the store cost nothing)."""
    finetunes_total: int = 0
    finetune_status: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        done = self.samples_done + self.judge_done
        total = self.samples_total + self.judge_total
        fresh = max(0, done - self.samples_cached - self.judge_cached)
        rate = fresh / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 and total > done else None
        ft = Counter(self.finetune_status.values())
        ft_text = ", ".join(f"{n} {s}" for s, n in sorted(ft.items())) or "none"
        return (f"[{elapsed:6.1f}s] fine-tunes {self.finetunes_total} ({ft_text}) | samples "
                f"{self.samples_done:,}/{self.samples_total:,} | judged {self.judge_done:,}/{self.judge_total:,} | "
                f"cached {self.samples_cached + self.judge_cached:,} | {rate:,.0f}/s | "
                f"errors {self.sample_errors + self.judge_errors} | retries {self.retries} | 429s {self.rate_limited}"
                f"{f' | ETA {eta:,.0f}s' if eta is not None else ''}")


def choose_mode(setting: str) -> str:
    if setting != "auto":
        return setting
    return "live" if sys.stderr.isatty() else "log"


async def report(counters: Counters, mode: str, interval: float | None = None) -> None:
    """Runs until cancelled. live: one rewritten line on stderr; log: a log line every few seconds."""
    if mode == "off":
        await anyio.sleep_forever()
    period = interval or (0.5 if mode == "live" else 5.0)
    try:
        while True:
            await anyio.sleep(period)
            if mode == "live":
                sys.stderr.write("\r\033[K" + counters.line())
                sys.stderr.flush()
            else:
                log.info(counters.line())
    finally:
        if mode == "live":
            sys.stderr.write("\r\033[K" + counters.line() + "\n")
            sys.stderr.flush()
