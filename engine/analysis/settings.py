"""The AnalysisConfig of a run: from manifest.json's config.analysis, checked.

A run records its resolved config in manifest.json; ``engine analyze`` re-reads the analysis
settings from there so a recomputation uses what the run was configured with. No manifest (or no
analysis section): the schema's defaults.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from engine.analysis.correction import METHODS
from engine.config.schema import AnalysisConfig
from engine.errors import ConfigError, UserError

MANIFEST = "manifest.json"


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """manifest.json as a dict ({} if the run has none)."""
    path = run_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"not a readable JSON manifest: {exc}", file=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("the manifest must be a JSON object", file=str(path))
    return data


def config_from_manifest(manifest: dict[str, Any], file: str | None = None) -> AnalysisConfig:
    """AnalysisConfig from ``manifest['config']['analysis']``; unknown keys are ignored."""
    section = (manifest.get("config") or {}).get("analysis") or {}
    if not isinstance(section, dict):
        raise ConfigError("must be a mapping", file=file, key="analysis")
    names = {f.name for f in dataclasses.fields(AnalysisConfig)}
    try:
        cfg = AnalysisConfig(**{k: v for k, v in section.items() if k in names})
    except TypeError as exc:
        raise ConfigError(str(exc), file=file, key="analysis") from None
    return check_config(cfg, file)


def check_config(cfg: AnalysisConfig, file: str | None = None) -> AnalysisConfig:
    """Reject settings the statistics cannot use; each error names its key."""

    def bad(key: str, message: str) -> ConfigError:
        return ConfigError(message, file=file, key=f"analysis.{key}")

    if not isinstance(cfg.bootstrap, int) or isinstance(cfg.bootstrap, bool) or cfg.bootstrap < 0:
        raise bad("bootstrap", f"must be an integer ≥ 0, got {cfg.bootstrap!r}")
    for key in ("ci", "alpha"):
        value = getattr(cfg, key)
        if not isinstance(value, (int, float)) or not 0 < value < 1:
            raise bad(key, f"must be a number strictly between 0 and 1, got {value!r}")
    for key in ("misaligned_threshold", "coherence_min"):
        value = getattr(cfg, key)
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise bad(key, f"must be a number in [0, 1] (scores are in [0, 1]), got {value!r}")
    if cfg.correction not in METHODS:
        raise bad("correction", f"unknown correction '{cfg.correction}' (one of {', '.join(METHODS)})")
    comparisons = cfg.comparisons
    def is_pair(c: object) -> bool:
        return isinstance(c, (list, tuple)) and len(c) == 2 and all(isinstance(s, str) for s in c)

    if not isinstance(comparisons, (list, tuple)) or not all(is_pair(c) for c in comparisons):
        raise bad("comparisons", f"must be a list of [stage_a, stage_b] pairs, got {comparisons!r}")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise bad("seed", f"must be an integer, got {cfg.seed!r}")
    return cfg


def load_analysis_config(run_dir: Path) -> AnalysisConfig:
    return config_from_manifest(read_manifest(run_dir), str(run_dir / MANIFEST))
