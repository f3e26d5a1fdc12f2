"""``engine diff A B`` on real runs of the sandbox, and its pure parts on small frames.

Three tiny studies are run once for the module: ``base`` (seed 0, awareness 1), ``seed1`` (the
same config with seed 1) and ``aware0`` (the same config in a world with awareness 0). The
misaligning fine-tune is made strong, and the self-report prior is set to the base disposition
so the base state reports the same thing in both worlds: the only true difference between
``aware0`` and ``base`` is the fine-tuned states' self-assessment.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from engine.cli import main
from engine.diff import Settings, diff_runs
from engine.diff.config import HIDDEN, diff_config, flatten, is_secret
from engine.diff.frame import DIFF
from engine.diff.results import MANN_WHITNEY, WILCOXON, diff_results
from tests.helpers import one_line_error
from tests.run.conftest import FAST, SMALL

STRONG = [
    "models.nano.hyperparameters.learning_rate_multiplier=2.0", "sandbox.self_report_prior=0.05",
    "probes.self_assessment.samples=6", "probes.self_assessment.paraphrases=2",
]
MISALIGNED = "nano/trivia/misalign"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diff-runs")
    variants = {"base": [], "seed1": ["seed=1"], "aware0": ["sandbox.awareness=0"]}
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name, extra in variants.items():
            iso = [f"store.path={root / 'store.sqlite'}", f"store.cache_dir={root / 'cache'}"]
            run_dir = root / name / "run"
            assert main(["run", *iso, *FAST, *SMALL, *STRONG, *extra, f"hydra.run.dir={run_dir}"]) == 0
            out[name] = run_dir
    return out


# ---- two seeds of one config: no result difference ----------------------------------------------


def test_two_seeds_differ_only_in_seed_and_not_in_results(runs: dict[str, Path]) -> None:
    d = diff_runs(runs["base"], runs["seed1"], Settings(bootstrap=500))
    assert [(c.key, c.change, c.a, c.b) for c in d.config] == [("seed", "changed", "0", "1")]

    assert d.plan.source == "recompiled"
    totals = d.plan.totals()
    assert totals["finetune"] == {"shared": 0, "only_a": 2, "only_b": 2}
    assert totals["state"] == {"shared": 1, "only_a": 2, "only_b": 2}  # the base model is the same node
    assert totals["group"]["shared"] == 0 and totals["group"]["only_a"] == totals["group"]["only_b"] > 0
    assert set(d.plan.labels("finetune", "only_a")) == {MISALIGNED, f"{MISALIGNED}>realign"}

    r = d.results
    assert r.height > 0 and set(r["test"]) == {WILCOXON}  # same prompts: paired tests
    assert set(r["state"]) == {"nano", MISALIGNED, f"{MISALIGNED}>realign"}
    assert set(r["probe_set"]) == {"self_assessment", "intentions", "harmfulness"}
    assert not r["significant"].any(), r.filter(pl.col("significant"))
    assert (r["p_adjusted"] >= r["p_value"] - 1e-12).all()
    # the states do differ from each other in this world; the seeds do not
    sa = r.filter((pl.col("probe_set") == "self_assessment") & (pl.col("dimension") == "all"))
    by_state = dict(zip(sa["state"], sa["value_a"], strict=True))
    assert by_state[MISALIGNED] > by_state["nano"] + 0.3

    one = d.one_sided
    assert one.filter(pl.col("kind").is_in(["state", "cell"])).height == 0
    samples = one.filter(pl.col("kind") == "samples")
    assert d.samples_shared == 0  # the seed enters every sample key
    assert samples.filter(pl.col("side") == "only_a")["count"].sum() == d.a["samples"]


# ---- awareness 0 vs 1: the self-assessment difference -------------------------------------------


def test_awareness_finds_the_self_assessment_difference(runs: dict[str, Path]) -> None:
    d = diff_runs(runs["aware0"], runs["base"], Settings(bootstrap=500))
    assert [(c.key, c.a, c.b) for c in d.config] == [("sandbox.awareness", "0.0", "1.0")]
    totals = d.plan.totals()
    for kind in ("state", "finetune", "group"):  # the world is not part of any plan key
        assert totals[kind]["only_a"] == totals[kind]["only_b"] == 0 and totals[kind]["shared"] > 0

    r = d.results
    sa = r.filter((pl.col("probe_set") == "self_assessment") & (pl.col("dimension") == "all"))
    mis = sa.filter(pl.col("state") == MISALIGNED).row(0, named=True)
    assert mis["significant"] and mis["difference"] > 0.25 and mis["ci_low"] > 0
    assert mis["value_b"] > mis["value_a"]
    base = r.filter((pl.col("state") == "nano") & (pl.col("probe_set") == "self_assessment"))
    assert base.height > 1 and not base["significant"].any()
    # behaviour does not depend on awareness
    assert not r.filter(pl.col("probe_set") != "self_assessment")["significant"].any()
    assert d.samples_shared == d.a["samples"] == d.b["samples"]


# ---- output: terminal report, diff.parquet, --json -----------------------------------------------


def test_cli_report_and_parquet(runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["diff", str(runs["aware0"]), str(runs["base"]), "--bootstrap", "300"]) == 0
    out = capsys.readouterr().out
    for section in ("Config: 1 changed", "Plan (recompiled", "Results: B − A", "One-sided rows:"):
        assert section in out, section
    assert "sandbox.awareness  0.0 → 1.0" in out
    starred = [line for line in out.splitlines() if line.startswith("  *")]
    assert starred and all("self_assessment" in line for line in starred)
    assert any(MISALIGNED in line and " all " in line for line in starred)
    path = tmp_path / "diff.parquet"
    assert f"wrote {path.name}" in out and path.exists()
    assert not list(tmp_path.glob(".diff.parquet.*"))  # the temporary file was renamed

    table = pq.read_table(path)
    assert table.schema.names == DIFF.names
    assert table.schema.remove_metadata().equals(DIFF)
    meta = table.schema.metadata
    assert json.loads(meta[b"run_a"])["path"] == str(runs["aware0"])
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    assert set(df["section"]) == {"config", "plan", "results"}  # same sample keys: nothing one-sided
    results = df.filter(pl.col("section") == "results")
    assert results["value_a"].null_count() == 0 and results["p_adjusted"].null_count() == 0
    assert results.filter(pl.col("significant"))["state"].to_list()
    cfg = df.filter(pl.col("section") == "config").row(0, named=True)
    assert (cfg["key"], cfg["change"], cfg["a"], cfg["b"]) == ("sandbox.awareness", "changed", "0.0", "1.0")
    plan = df.filter(pl.col("section") == "plan")
    assert set(plan["change"]) == {"shared"} and plan["count"].min() >= 1


def test_cli_json_and_out(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["diff", str(runs["base"]), str(runs["seed1"]), "--json", "--out", str(out_dir),
                 "--bootstrap", "200"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["config"] == [{"key": "seed", "change": "changed", "a": "0", "b": "1"}]
    assert body["plan"]["totals"]["finetune"]["shared"] == 0 and body["significant"] == 0
    assert body["results"] and {"value_a", "ci_low", "p_adjusted"} <= set(body["results"][0])
    assert body["out"] == str(out_dir / "diff.parquet")
    df = pl.read_parquet(out_dir / "diff.parquet")
    assert set(df["section"]) == {"config", "plan", "results", "one_sided"}
    one = df.filter(pl.col("section") == "one_sided")
    assert set(one["key"]) == {"samples"} and set(one["change"]) == {"only_a", "only_b"}
    assert one["count"].sum() == body["a"]["samples"] + body["b"]["samples"]


def test_plan_falls_back_to_table_keys(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "edited"
    shutil.copytree(runs["seed1"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["plan_key"] = "0" * 64  # as if specs had changed since the run
    (copy / "manifest.json").write_text(json.dumps(manifest))
    d = diff_runs(runs["base"], copy, Settings(bootstrap=200))
    assert d.plan.source == "tables" and d.plan.kinds == ("state", "group")
    assert any("B: plan not recompiled" in n for n in d.plan.notes)
    assert d.plan.totals()["state"] == {"shared": 1, "only_a": 2, "only_b": 2}


# ---- bad input: one line, exit 2, the file named -------------------------------------------------


def test_errors_name_the_file(runs: dict[str, Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    good = str(runs["base"])
    missing = tmp_path / "nope"
    assert main(["diff", good, str(missing)]) == 2
    one_line_error(capsys, str(missing), "does not exist")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["diff", str(empty), good]) == 2
    one_line_error(capsys, str(empty / "manifest.json"))

    sweep = tmp_path / "sweep"
    shutil.copytree(runs["base"], sweep / "0")
    assert main(["diff", str(sweep), good]) == 2
    one_line_error(capsys, str(sweep / "manifest.json"), "sweep directory", str(sweep / "0"))

    no_scores = tmp_path / "no_scores"
    shutil.copytree(runs["base"], no_scores)
    (no_scores / "scores.parquet").unlink()
    assert main(["diff", good, str(no_scores)]) == 2
    one_line_error(capsys, str(no_scores / "scores.parquet"))

    bad_manifest = tmp_path / "bad_manifest"
    shutil.copytree(runs["base"], bad_manifest)
    (bad_manifest / "manifest.json").write_text("{not json")
    assert main(["diff", good, str(bad_manifest)]) == 2
    one_line_error(capsys, str(bad_manifest / "manifest.json"))

    assert main(["diff", good]) == 2
    one_line_error(capsys, "usage: engine diff")

    assert main(["diff", good, good, "--out", str(runs["base"] / "models.parquet" / "x.parquet")]) == 2
    one_line_error(capsys, "x.parquet")


# ---- pure parts ------------------------------------------------------------------------------------


def test_config_flatten_and_diff() -> None:
    a = {"seed": 0, "models": {"nano": {"lr": 1, "id": "x"}}, "order": ["a", "b"],
         "effects": [{"match": "m", "target": 0.5}], "provider": {"api_key_env": "K", "api_key": "sk-1"}}
    b = {"seed": 0, "models": {"nano": {"lr": 1.0}, "mini": {"lr": 2}}, "order": ["b", "a"],
         "effects": [{"match": "m", "target": 0.7}], "provider": {"api_key_env": "K2", "api_key": "sk-2"}}
    assert flatten(a)["effects[0].target"] == 0.5 and flatten(a)["order"] == ["a", "b"]
    changes = {c.key: c for c in diff_config(a, b)}
    assert set(changes) == {"models.nano.id", "models.mini.lr", "order", "effects[0].target",
                            "provider.api_key_env", "provider.api_key"}  # lr 1 == 1.0
    assert changes["models.nano.id"].change == "removed" and changes["models.mini.lr"].change == "added"
    assert changes["order"].a == '["a", "b"]'
    assert (changes["provider.api_key"].a, changes["provider.api_key"].b) == (HIDDEN, HIDDEN)
    assert changes["provider.api_key_env"].b == '"K2"'
    assert is_secret("x.secret_token") and not is_secret("probes.x.max_tokens") and not is_secret("seed")


def _scores(state: str, items: list[str], values: list[float], dimension: str = "good") -> pl.DataFrame:
    return pl.DataFrame({
        "sample_key": [f"{state}{i}{v}" for i, v in zip(items, values, strict=True)], "state": state,
        "probe_set": "self_assessment", "family": "self_assessment", "item_id": items, "dimension": dimension,
        "format": "numeric", "paraphrase": 0, "variant": 0, "level": "sample", "rubric": None,
        "score": values,
    }, schema_overrides={"rubric": pl.String()})


def test_unpaired_cells_use_mann_whitney_and_one_sided_cells() -> None:
    a = pl.concat([_scores("s", [f"i{j}" for j in range(8)], [0.1] * 4 + [0.2] * 4),
                   _scores("t", ["i0"], [0.5])])
    b = pl.concat([_scores("s", [f"k{j}" for j in range(8)], [0.8] * 4 + [0.9] * 4),
                   _scores("u", ["i0"], [0.5], dimension="honest")])
    results, cells = diff_results(a, b, Settings(bootstrap=200))
    row = results.row(0, named=True)
    assert results.height == 1 and row["test"] == MANN_WHITNEY and row["n_pairs"] == 0
    assert row["difference"] == pytest.approx(0.7) and row["effect_size"] == pytest.approx(1.0)
    assert row["significant"] and row["ci_low"] > 0.6
    assert sorted(cells.select("state", "side").rows()) == [("t", "only_a"), ("u", "only_b")]


def test_identical_runs_have_no_difference() -> None:
    a = _scores("s", ["i0", "i1", "i2"], [0.1, 0.4, 0.9])
    results, cells = diff_results(a, a, Settings(bootstrap=200))
    row: dict[str, Any] = results.row(0, named=True)
    assert row["test"] == WILCOXON and row["difference"] == 0 and row["p_value"] == 1.0
    assert not row["significant"] and cells.height == 0
