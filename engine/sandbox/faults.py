"""Injected faults and latency, decided deterministically from a request counter and the world seed."""

from __future__ import annotations

import hashlib
import math
from statistics import NormalDist

from engine.sandbox.config import FaultsConfig, LatencyConfig

FAULT_KINDS = ("rate_429", "rate_500", "rate_503", "drop", "malformed", "slow")
_NORMAL = NormalDist()


def _unit(seed: int, tag: str, counter: int) -> float:
    digest = hashlib.sha256(b"%d\x1f%s\x1f%d" % (seed, tag.encode(), counter)).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Faults:
    """Which fault, if any, the ``counter``-th faultable request gets."""

    def __init__(self, cfg: FaultsConfig, seed: int):
        self.seed = seed
        self.slow_s = cfg.slow_s
        self.bounds: list[tuple[float, str]] = []
        acc = 0.0
        for kind in FAULT_KINDS:
            rate = getattr(cfg, kind)
            if rate > 0:
                acc += rate
                self.bounds.append((acc, kind))

    def decide(self, counter: int) -> str | None:
        if not self.bounds:
            return None
        u = _unit(self.seed, "fault", counter)
        for bound, kind in self.bounds:
            if u < bound:
                return kind
        return None


class Latency:
    """Seconds to wait before answering the ``counter``-th chat request."""

    def __init__(self, cfg: LatencyConfig, seed: int):
        self.dist, self.mean, self.spread, self.seed = cfg.dist, cfg.mean_ms / 1000.0, cfg.spread, seed

    def sample(self, counter: int) -> float:
        if self.mean <= 0:
            return 0.0
        if self.dist == "fixed":
            return self.mean
        u = min(max(_unit(self.seed, "latency", counter), 1e-12), 1 - 1e-12)
        if self.dist == "uniform":
            return max(0.0, self.mean * (1.0 + self.spread * (2.0 * u - 1.0)))
        sigma = self.spread  # lognormal with this mean
        return self.mean * math.exp(sigma * _NORMAL.inv_cdf(u) - sigma * sigma / 2.0)
