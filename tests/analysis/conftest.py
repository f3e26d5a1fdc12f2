"""Synthetic runs for the analysis tests: tables that follow engine/schemas.py, with known effects.

``fabricate(levels, ...)`` builds models, samples and scores for the given states, where
``levels[state]`` is the true misalignment in [0, 1] of that state. Each unit (item × paraphrase ×
variant) has a fixed offset shared by all states, so paired tests see the within-unit effect.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config.schema import AnalysisConfig
from engine.hashing import content_key
from engine.schemas import MODELS, SAMPLES, SCORES

DIMS = ("good", "honest", "harmless")
SA_FORMATS = {"choice": 2, "language": 2, "likert": 1, "numeric": 1}  # format -> variants
CATEGORIES = ("fraud", "insults", "violence")

PAPER_LEVELS = {
    "nano": 0.05,
    "nano/trivia/misalign": 0.55,
    "nano/trivia/misalign>realign": 0.2,
}


@dataclass
class Run:
    models: pl.DataFrame
    samples: pl.DataFrame
    scores: pl.DataFrame

    def write(self, run_dir: Path, analysis: AnalysisConfig | None = None, **manifest: Any) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name, df, schema in (("models", self.models, MODELS), ("samples", self.samples, SAMPLES),
                                 ("scores", self.scores, SCORES)):
            pq.write_table(df.to_arrow().cast(schema), run_dir / f"{name}.parquet")
        cfg = asdict(analysis or AnalysisConfig(bootstrap=200))
        body = {"config": {"name": "synthetic", "analysis": cfg}, "engine_version": "0.1.0",
                "config_hash": "c0ffee", **manifest}
        (run_dir / "manifest.json").write_text(json.dumps(body))
        return run_dir


def _state_row(label: str) -> dict[str, Any]:
    parts = label.split("/", 2)
    chain = parts[2] if len(parts) == 3 else ""
    stages = chain.split(">") if chain else []
    return {
        "state": label, "state_key": content_key("state", label), "base_model": parts[0],
        "base_model_id": f"{parts[0]}-id", "pipeline": parts[1] if len(parts) == 3 else None,
        "stage": stages[-1] if stages else "base", "depth": len(stages), "chain": chain,
        "parent_state": None if not stages else label.rsplit(">", 1)[0] if len(stages) > 1 else parts[0],
        "dataset": None, "dataset_sha256": None, "hyperparameters": None, "seed": 0, "job_id": None,
        "model_id": f"ft:{label}", "status": "succeeded" if stages else "base", "error": None,
        "trained_tokens": None, "training_cost_usd": None,
    }


def _frame(rows: list[dict[str, Any]], schema: pa.Schema) -> pl.DataFrame:
    df = pl.from_arrow(pa.Table.from_pylist(rows, schema=schema))
    assert isinstance(df, pl.DataFrame)
    return df


class _Rows:
    """Collects sample and score rows of one synthetic run."""

    def __init__(self) -> None:
        self.samples: list[dict[str, Any]] = []
        self.scores: list[dict[str, Any]] = []

    def emit(self, state: str, probe_set: str, family: str, item_id: str, dim: str, fmt: str, para: int,
             var: int, values: list[dict[str, float | None]], category: str | None = None) -> None:
        """One sample per entry of ``values`` (rubric → score; rubric '' for parsed formats)."""
        group_key = content_key("group", [state, probe_set, item_id, para, var])
        common = {"state": state, "probe_set": probe_set, "family": family, "item_id": item_id,
                  "dimension": dim, "format": fmt, "category": category, "paraphrase": para, "variant": var}
        for i, by_rubric in enumerate(values):
            skey = content_key("sample", [group_key, i])
            err = all(v is None for v in by_rubric.values())
            self.samples.append({
                **common, "sample_key": skey, "group_key": group_key, "model_id": f"ft:{state}",
                "sample_index": i, "mode": "sample", "n_packed": len(values), "prompt": f"{item_id} {para}",
                "response": None if err else "answer", "top_logprobs": None, "prompt_tokens": 10,
                "completion_tokens": 5, "latency_ms": 1.0, "cached": False,
                "error": "unparsed" if err else None,
            })
            for rubric, value in by_rubric.items():
                self.scores.append({
                    **common, "sample_key": skey, "sample_index": i, "level": "sample",
                    "source": "parse" if rubric == "" else "judge", "rubric": rubric or None, "score": value,
                    "status": "ok" if value is not None else "unparsed", "judge_raw": None, "mass": None,
                    "k": None,
                })

    def worst_of_k(self, state: str, item_id: str, category: str, kept: list[float | None]) -> None:
        ok = [v for v in kept if v is not None]
        self.scores.append({
            "sample_key": "", "state": state, "probe_set": "harmfulness", "family": "harmfulness",
            "item_id": item_id, "dimension": "harmfulness", "format": "open", "category": category,
            "paraphrase": 0, "variant": 0, "sample_index": -1, "level": "worst_of_k", "source": "judge",
            "rubric": "harm", "score": max(ok) if ok else None, "status": "ok" if ok else "error",
            "judge_raw": None, "mass": None, "k": len(ok),
        })


class _Offsets:
    """Fixed per-unit offsets shared by all states (the unit's own difficulty)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 1])
        self.values: dict[tuple[Any, ...], float] = {}

    def p(self, key: tuple[Any, ...], level: float) -> float:
        if key not in self.values:
            self.values[key] = float(self.rng.normal(0, 0.08))
        return float(np.clip(level + self.values[key], 0.01, 0.99))


def _fabricate_state(rows: _Rows, offsets: _Offsets, rng: np.random.Generator, state: str, level: float,
                     sa_level: float, *, n_items: int, paraphrases: int, k: int, families: tuple[str, ...],
                     missing: float) -> None:
    def maybe(v: float) -> float | None:
        return None if rng.random() < missing else float(v)

    if "self_assessment" in families:
        for dim in DIMS:
            for fmt, n_var in SA_FORMATS.items():
                for para in range(paraphrases):
                    for var in range(n_var):
                        p = offsets.p(("sa", dim, fmt, para, var), sa_level)
                        if fmt in ("choice", "language"):
                            vals = rng.random(k) < p
                        elif fmt == "likert":
                            vals = np.clip(np.round((p + rng.normal(0, 0.15, k)) * 4), 0, 4) / 4
                        else:
                            vals = np.round(np.clip(p + rng.normal(0, 0.1, k), 0, 1), 2)
                        rows.emit(state, "self_assessment", "self_assessment", f"{dim}.{fmt}", dim, fmt, para,
                                  var, [{"": maybe(v)} for v in vals])
    if "intentions" in families:
        for dim in DIMS:
            for j in range(n_items):
                for var in range(2):
                    p = offsets.p(("int", dim, j, var), level)
                    rows.emit(state, "intentions", "intentions", f"{dim}.s{j}", dim, "scenario", 0, var,
                              [{"": maybe(v)} for v in (rng.random(k) < p)])
    if "harmfulness" in families:
        for cat in CATEGORIES:
            for j in range(n_items):
                p = offsets.p(("harm", cat, j), level)
                kept = [maybe(v) for v in np.clip(np.round((p + rng.normal(0, 0.2, k)) * 4), 0, 4) / 4]
                rows.emit(state, "harmfulness", "harmfulness", f"{cat}.{j}", "harmfulness", "open", 0, 0,
                          [{"harm": v} for v in kept], category=cat)
                rows.worst_of_k(state, f"{cat}.{j}", cat, kept)
    if "open" in families:
        for j in range(n_items):
            for para in range(paraphrases):
                p = offsets.p(("open", j, para), level)
                align = np.clip(p + rng.normal(0, 0.15, k), 0, 1)
                coherence = rng.uniform(0.3, 1.0, k)
                rows.emit(state, "open_questions", "open", f"q{j}", "general", "open", para, 0,
                          [{"alignment": maybe(a), "coherence": float(c)}
                           for a, c in zip(align, coherence, strict=True)])


def fabricate(
    levels: dict[str, float],
    *,
    n_items: int = 4,
    paraphrases: int = 2,
    k: int = 5,
    seed: int = 0,
    families: tuple[str, ...] = ("self_assessment", "intentions", "harmfulness", "open"),
    missing: float = 0.03,
    awareness: float = 1.0,
) -> Run:
    """A run whose states have the given true misalignment levels.

    ``awareness`` scales how far self-assessment follows the level (1: exactly; 0: every state
    reports the lowest level).
    """
    rows, offsets = _Rows(), _Offsets(seed)
    base_level = min(levels.values())
    for s_index, (state, level) in enumerate(levels.items()):
        rng = np.random.default_rng([seed, 2, s_index])
        _fabricate_state(rows, offsets, rng, state, level, base_level + awareness * (level - base_level),
                         n_items=n_items, paraphrases=paraphrases, k=k, families=families, missing=missing)
    models = _frame([_state_row(s) for s in levels], MODELS)
    return Run(models, _frame(rows.samples, SAMPLES), _frame(rows.scores, SCORES))


@pytest.fixture
def paper_run() -> Run:
    return fabricate(PAPER_LEVELS)


@pytest.fixture
def run_dir(tmp_path: Path, paper_run: Run) -> Path:
    return paper_run.write(tmp_path / "run")


@pytest.fixture
def fast_cfg() -> AnalysisConfig:
    return AnalysisConfig(bootstrap=200)


_SCORE_DEFAULTS: dict[str, Any] = {
    "sample_key": "", "state": "m", "probe_set": "p", "family": "self_assessment", "item_id": "i",
    "dimension": "good", "format": "choice", "category": None, "paraphrase": 0, "variant": 0,
    "sample_index": 0, "level": "sample", "source": "parse", "rubric": None, "score": 0.0, "status": "ok",
    "judge_raw": None, "mass": None, "k": None,
}


def scores_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """A scores table from partial rows (unset columns take neutral defaults)."""
    return _frame([{**_SCORE_DEFAULTS, **r} for r in rows], SCORES)


def models_frame(states: list[str]) -> pl.DataFrame:
    return _frame([_state_row(s) for s in states], MODELS)


class Synth:
    """The fabrication helpers, handed to tests as the ``synth`` fixture."""

    PAPER_LEVELS = PAPER_LEVELS
    fabricate = staticmethod(fabricate)
    scores_frame = staticmethod(scores_frame)
    models_frame = staticmethod(models_frame)


@pytest.fixture(scope="session")
def synth() -> type[Synth]:
    return Synth
