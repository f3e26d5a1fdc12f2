"""Percentile bootstrap of means, vectorised over resamples, seeded reproducibly.

Resampling unit: the *unit* (item × paraphrase × variant; see frames.UNIT_KEYS), never the single
sample: samples of one prompt are repeated draws that share the prompt's effect, so resampling
them would pretend they are independent and give intervals that are too narrow.

Estimates that pool several strata (e.g. a self-assessment dimension = mean over its formats)
use a *stratified* bootstrap: units are resampled within each stratum, and the pooled replicate
is the same weighted mean of stratum replicates as the estimate is of stratum means.
"""

from __future__ import annotations

import numpy as np

from engine.hashing import canonical_json, sha256_hex

_MAX_CELLS = 4_000_000
"""Resample index matrices above this many cells are drawn in chunks to bound memory."""


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A generator fixed by the seed and the keys of what it resamples.

    Each group gets its own stream, so a group's interval does not change when other groups are
    added to or removed from a run. The keys are hashed with sha256, never Python's ``hash()``.
    """
    digest = sha256_hex(canonical_json([str(k) if k is not None else None for k in keys]))
    return np.random.default_rng([int(seed), int(digest[:16], 16)])


def bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement, same size) of ``values``; shape (n_boot,)."""
    v = np.asarray(values, dtype=float)
    n = v.size
    if n == 0 or n_boot <= 0:
        return np.full(max(n_boot, 0), np.nan)
    if n == 1:
        return np.full(n_boot, v[0])
    out = np.empty(n_boot)
    step = max(1, _MAX_CELLS // n)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = v[idx].mean(axis=1)
    return out


def percentile_ci(replicates: np.ndarray, ci: float) -> tuple[float, float]:
    """The central ``ci`` percentile interval of bootstrap replicates (NaN if there are none)."""
    reps = np.asarray(replicates, dtype=float)
    reps = reps[~np.isnan(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - ci) / 2.0
    lo, hi = np.quantile(reps, [tail, 1.0 - tail])
    return float(lo), float(hi)


def mean_ci(
    values: np.ndarray, n_boot: int, ci: float, rng: np.random.Generator
) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high) of ``values`` by percentile bootstrap."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = percentile_ci(bootstrap_means(v, n_boot, rng), ci)
    return float(v.mean()), lo, hi
