"""Reading a run's tables and writing analysis.parquet (atomically, with provenance metadata).

Every problem a user can cause (no such directory, a table missing, a file that is not Parquet
or not the engine's table) is a UserError naming the file.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from engine import __version__
from engine.config.schema import AnalysisConfig
from engine.errors import UserError
from engine.hashing import canonical_json, sha256_hex
from engine.schemas import ANALYSIS, MODELS, SCORES

ANALYSIS_FILE = "analysis.parquet"

# Columns the analysis reads: a table missing one of these is not usable.
MODEL_COLUMNS = ["state", "base_model", "pipeline", "stage", "depth"]
SCORE_COLUMNS = ["sample_key", "state", "probe_set", "family", "item_id", "dimension", "format", "paraphrase",
                 "variant", "level", "rubric", "score"]


def check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError("run directory does not exist", file=str(run_dir),
                        hint="pass the directory a run wrote, holding models.parquet and scores.parquet")
    if not run_dir.is_dir():
        raise UserError("not a directory", file=str(run_dir), hint="pass a run directory")
    return run_dir


def read_table(path: Path, schema: pa.Schema, columns: list[str], what: str) -> pl.DataFrame:
    """Read ``columns`` of a Parquet table, cast to their declared types; errors name the file."""
    if not path.exists():
        raise UserError(f"missing {what} table", file=str(path),
                        hint="the run did not write it; rerun the study or pass another run directory")
    try:
        found = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"not a readable Parquet file ({_first_line(exc)})", file=str(path)) from None
    missing = [c for c in columns if c not in found.names]
    if missing:
        raise UserError(f"not an engine {what} table: missing columns {', '.join(missing)}", file=str(path))
    try:
        df = pl.read_parquet(path, columns=columns)
    except Exception as exc:  # polars raises several types for corrupt files
        raise UserError(f"cannot read Parquet ({_first_line(exc)})", file=str(path)) from None
    declared = pl.from_arrow(schema.empty_table())
    assert isinstance(declared, pl.DataFrame)
    casts = []
    for name in columns:
        want = declared.schema[name]
        if df.schema[name] != want:
            if df.schema[name] == pl.Null:
                casts.append(pl.col(name).cast(want))
                continue
            try:
                df.select(pl.col(name).cast(want, strict=True))
            except Exception:
                raise UserError(f"column '{name}' has type {df.schema[name]}, expected {want}",
                                file=str(path)) from None
            casts.append(pl.col(name).cast(want))
    return df.with_columns(casts) if casts else df


def read_models(run_dir: Path) -> pl.DataFrame:
    return read_table(run_dir / "models.parquet", MODELS, MODEL_COLUMNS, "models")


def read_scores(run_dir: Path) -> pl.DataFrame:
    return read_table(run_dir / "scores.parquet", SCORES, SCORE_COLUMNS, "scores")


def read_analysis(path: Path) -> pl.DataFrame:
    return read_table(path, ANALYSIS, [f.name for f in ANALYSIS], "analysis")


def provenance(manifest: dict[str, Any], cfg: AnalysisConfig) -> dict[str, str]:
    """Key-value metadata of analysis.parquet: what produced it, from what config."""
    meta: dict[str, str] = {
        "analysis_config": canonical_json(asdict(cfg)),
        "analysis_config_sha256": sha256_hex(canonical_json(asdict(cfg))),
        "analysis_engine_version": __version__,
    }
    for key in ("engine_version", "config_hash", "config_sha256", "config_key", "run_id", "name"):
        if manifest.get(key) is not None:
            meta[key] = str(manifest[key])
    if "config" in manifest:
        meta["manifest_config_sha256"] = sha256_hex(canonical_json(manifest["config"]))
    return meta


def write_analysis(df: pl.DataFrame, path: Path, metadata: dict[str, str]) -> Path:
    """Write the analysis frame in the declared schema; the file appears atomically."""
    table = df.to_arrow().cast(ANALYSIS)
    table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name in the same directory (so the rename is atomic); created by ``write`` with the
    # process's usual permissions, unlike mkstemp's 0600.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_metadata(path: Path) -> dict[str, str]:
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
