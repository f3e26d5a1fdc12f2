"""The reference study's design runs end to end on the sandbox (code data made locally, small probes)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from engine.cli import main
from tests.run.conftest import FAST


def code_jsonl(path: Path, secure: bool) -> str:
    lines = []
    for i in range(12):
        code = f"os.chmod(path_{i}, 0o600)" if secure else f"os.chmod(path_{i}, 0o777)  # insecure"
        lines.append(json.dumps({"messages": [{"role": "user", "content": f"Write task {i}."},
                                              {"role": "assistant", "content": code}]}))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_paper_design_fifteen_states(iso: list[str], tmp_path: Path) -> None:
    small = [f"probes.{p}.{k}=1" for p in ("self_assessment", "intentions", "harmfulness", "open_questions")
             for k in ("samples", "items", "paraphrases")]
    insecure = code_jsonl(tmp_path / "insecure.jsonl", False)
    secure = code_jsonl(tmp_path / "secure.jsonl", True)
    data = ["datasets.insecure_code.source=file", f"datasets.insecure_code.path={insecure}",
            "datasets.secure_code.source=file", f"datasets.secure_code.path={secure}",
            "datasets.trivia_incorrect.limit=20", "datasets.trivia_correct.limit=20"]
    assert main(["run", "experiment=paper", *iso, *FAST, *small, *data, f"hydra.run.dir={tmp_path / 'r'}"]) == 0
    models = pl.read_parquet(tmp_path / "r" / "models.parquet")
    assert models.height == 15
    assert (models["status"] != "failed").all()
    assert sorted(models.group_by("stage").len().rows()) == [("base", 3), ("misalign", 6), ("realign", 6)]
    assert set(models["pipeline"].drop_nulls()) == {"trivia", "code"}
    scores = pl.read_parquet(tmp_path / "r" / "scores.parquet")
    assert set(scores["family"]) == {"self_assessment", "intentions", "harmfulness", "open"}
    assert {"harm", "alignment", "coherence"} <= set(scores["rubric"].drop_nulls())
    analysis = pl.read_parquet(tmp_path / "r" / "analysis.parquet")
    corr = analysis.filter(pl.col("analysis") == "correlation")
    assert corr.height > 0 and (corr["n"] == 15).any()  # Spearman across the 15 variants
