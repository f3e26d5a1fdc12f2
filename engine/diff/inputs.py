"""Reading the two sides of a diff: a run directory (or a sweep job directory, the same thing).

Every problem a user can cause (no such directory, a sweep directory instead of one of its jobs,
a missing manifest or table) is a UserError naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from engine.analysis.tables import read_table
from engine.errors import UserError
from engine.schemas import MODELS, SAMPLES, SCORES

MANIFEST = "manifest.json"
MODEL_COLUMNS = ["state", "state_key", "depth"]
SAMPLE_COLUMNS = ["sample_key", "group_key", "state", "probe_set"]
SCORE_COLUMNS = ["sample_key", "state", "probe_set", "family", "item_id", "dimension", "format", "paraphrase",
                 "variant", "level", "rubric", "score"]


@dataclass(frozen=True)
class RunData:
    """What a diff reads of one run."""

    path: Path
    manifest: dict[str, Any]
    models: pl.DataFrame
    samples: pl.DataFrame
    scores: pl.DataFrame

    @property
    def config(self) -> dict[str, Any]:
        cfg = self.manifest.get("config")
        return cfg if isinstance(cfg, dict) else {}

    def describe(self) -> dict[str, Any]:
        """One-line facts about the run for the report header and the Parquet metadata."""
        return {"path": str(self.path), "name": self.config.get("name"),
                "config_hash": self.manifest.get("config_hash"), "plan_key": self.manifest.get("plan_key"),
                "status": self.manifest.get("status"), "states": self.models.height,
                "samples": self.samples.height}


def check_dir(path: Path) -> Path:
    if not path.exists():
        raise UserError("run directory does not exist", file=str(path))
    if not path.is_dir():
        raise UserError("not a directory", file=str(path),
                        hint="pass a run directory or a sweep job directory")
    if not (path / MANIFEST).exists():
        jobs = sorted((p.name for p in path.iterdir() if p.is_dir() and (p / MANIFEST).exists()),
                      key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
        hint = (f"this looks like a sweep directory; pass two of its jobs, e.g. {path / jobs[0]}"
                if jobs else "pass the directory a run wrote")
        raise UserError("missing run manifest", file=str(path / MANIFEST), hint=hint)
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"not a readable JSON manifest ({exc})", file=str(file)) from None
    if not isinstance(data, dict):
        raise UserError("the manifest must be a JSON object", file=str(file))
    if not isinstance(data.get("config"), dict):
        raise UserError("the manifest has no 'config' object", file=str(file))
    return data


def load_run(path: Path) -> RunData:
    """Read the manifest and the models, samples and scores tables of a run directory."""
    path = check_dir(Path(path))
    manifest = read_manifest(path)
    models = read_table(path / "models.parquet", MODELS, MODEL_COLUMNS, "models")
    samples = read_table(path / "samples.parquet", SAMPLES, SAMPLE_COLUMNS, "samples")
    scores = read_table(path / "scores.parquet", SCORES, SCORE_COLUMNS, "scores")
    return RunData(path, manifest, models, samples, scores)
