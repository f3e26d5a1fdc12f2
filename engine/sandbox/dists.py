"""Answer distributions: what a simulated model may say to one prompt, and with what probability.

A :class:`Dist` is built once per (prompt, disposition) and cached; a request only draws from it.
The ``top_logprobs`` a response reports are this distribution's own log-probabilities (the
model's distribution at temperature 1, as OpenAI reports them whatever the temperature); the
answer is drawn from it at temperature 1, from its tempered version at other temperatures, and is
its mode at temperature 0.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Sequence

_PIECE = re.compile(r"\s*\S+")


def pieces(text: str) -> list[str]:
    """Word pieces standing in for tokens (a leading space belongs to the piece, like BPE)."""
    return _PIECE.findall(text) or [text]


def _top_entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


class Dist:
    """A categorical distribution over answer texts."""

    __slots__ = (
        "texts",
        "probs",
        "logprobs",
        "cum",
        "mode",
        "one_token",
        "top",
        "_first",
        "_first_lp",
        "_rest_lp",
    )

    def __init__(self, texts: Sequence[str], weights: Sequence[float], one_token: bool):
        merged: dict[str, float] = {}
        for t, w in zip(texts, weights, strict=True):
            if w > 0:
                merged[t] = merged.get(t, 0.0) + w
        total = sum(merged.values())
        self.texts = tuple(merged)
        self.probs = tuple(w / total for w in merged.values())
        self.logprobs = tuple(math.log(p) for p in self.probs)
        acc, cum = 0.0, []
        for p in self.probs:
            acc += p
            cum.append(acc)
        self.cum = cum
        self.mode = max(range(len(self.probs)), key=self.probs.__getitem__)
        self.one_token = one_token
        order = sorted(range(len(self.texts)), key=lambda i: -self.probs[i])
        if one_token:
            self.top = [_top_entry(self.texts[i], self.logprobs[i]) for i in order]
        else:
            # first-token marginal: the honest distribution of the first piece
            first: dict[str, float] = {}
            for t, p in zip(self.texts, self.probs, strict=True):
                f = pieces(t)[0]
                first[f] = first.get(f, 0.0) + p
            self._first = first
            self._first_lp = {f: math.log(p) for f, p in first.items()}
            self._rest_lp = [
                lp - self._first_lp[pieces(t)[0]] for t, lp in zip(self.texts, self.logprobs, strict=True)
            ]
            self.top = [_top_entry(f, self._first_lp[f]) for f in sorted(first, key=lambda f: -first[f])]

    def pick(self, u: float, temperature: float) -> int:
        """Index of the answer for a uniform draw ``u`` in [0, 1)."""
        if temperature <= 0.0 or len(self.probs) == 1:
            return self.mode
        if temperature == 1.0:
            i = bisect_right(self.cum, u * self.cum[-1])
            return min(i, len(self.cum) - 1)
        top = max(self.logprobs)
        weights = [math.exp((lp - top) / temperature) for lp in self.logprobs]
        target = u * sum(weights)
        acc = 0.0
        for i, w in enumerate(weights):
            acc += w
            if target < acc:
                return i
        return len(weights) - 1

    def logprobs_content(self, index: int, k: int, parts: list[str]) -> list[dict]:
        """The ``logprobs.content`` list of a chosen answer (its first ``len(parts)`` pieces)."""
        if self.one_token:
            entry = _top_entry(self.texts[index], self.logprobs[index])
            entry["top_logprobs"] = self.top[:k]
            return [entry]
        out = []
        for j, piece in enumerate(parts):
            if j == 0:
                entry = _top_entry(piece, self._first_lp[piece])
                entry["top_logprobs"] = self.top[:k]
            else:
                lp = self._rest_lp[index] if j == 1 else 0.0
                entry = _top_entry(piece, lp)
                entry["top_logprobs"] = [_top_entry(piece, lp)][:k]
            out.append(entry)
        return out


def binomial(k_max: int, p: float) -> list[float]:
    """P(k) of Binomial(k_max, p): a rating whose mean fraction k/k_max is exactly p."""
    return [math.comb(k_max, k) * p**k * (1 - p) ** (k_max - k) for k in range(k_max + 1)]


def scale_grid(lo: int, hi: int) -> list[int]:
    """The values a model answers on a scale: every integer on short scales, else 11 round steps."""
    span = hi - lo
    if span <= 10:
        return list(range(lo, hi + 1))
    return sorted({lo + round(span * k / 10) for k in range(11)})


def kernel(lo: int, hi: int, target: float) -> tuple[list[str], list[float]]:
    """A judge's rating distribution: a narrow bell over scale values around ``target``."""
    span = hi - lo
    step = 1 if span <= 10 else max(1, round(span / 20))
    values = list(range(lo, hi + 1, step))
    if values[-1] != hi:
        values.append(hi)
    sigma = max(0.5, 0.06 * span)
    weights = [math.exp(-((v - target) ** 2) / (2 * sigma * sigma)) for v in values]
    floor = max(weights) * 1e-3
    kept = [(str(v), w) for v, w in zip(values, weights, strict=True) if w >= floor]
    return [t for t, _ in kept], [w for _, w in kept]
