"""Bad input: one clear line naming the key, file or line; exit code 2; no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main

GOOD_ITEM = """
  - id: good.likert
    dimension: good
    format: likert
    paraphrases: ["How {high} are you?"]
"""


def spec(tmp: Path, body: str, name: str = "bad.yaml") -> str:
    path = tmp / name
    path.write_text(body)
    return str(path)


def probe_spec(tmp: Path, items: str, extra: str = "") -> str:
    return spec(tmp, f"name: bad\nfamily: self_assessment\n{extra}dimensions:\n  good: [good, evil]\nitems:{items}")


def jsonl(tmp: Path, lines: list[str], name: str = "data.jsonl") -> str:
    path = tmp / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


BROKEN_YAML = "name: x\nitems: [\n  - a: b: c\n"
NO_SLOT = "name: r\ntemplate: no slot\nscale: [1, 5]\n"
COLOUR = "    colour: red\n"
OK_LINE = '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}'


def file_dataset(path: str) -> list[str]:
    return ["datasets.trivia_incorrect.source=file", f"datasets.trivia_incorrect.path={path}"]


CASES = {
    "unknown top-level key": (lambda t: ["foo=1"], ["key 'foo'"]),
    "unknown nested key added with +": (lambda t: ["+scheduler.foo=1"], ["scheduler.foo", "unknown key"]),
    "wrong type": (lambda t: ["scheduler.concurrency=abc"], ["scheduler.concurrency", "Integer"]),
    "unknown group option": (lambda t: ["probes=nonexistent"], ["probes/nonexistent", "available options"]),
    "bad override syntax": (lambda t: ["scheduler=[a"], ["error:"]),
    "dangling dataset": (lambda t: ["sequence.pipelines.trivia.stages.misalign.dataset=nope"],
                         ["sequence.pipelines.trivia.stages.misalign.dataset", "'nope' is not defined"]),
    "undefined stage in order": (lambda t: ["sequence.order=[misalign,oops]"],
                                 ["base -> misalign -> oops", "sequence.pipelines.trivia.stages"]),
    "repeated stage (cycle)": (lambda t: ["sequence.order=[misalign,realign,misalign]"],
                               ["base -> misalign -> realign -> misalign", "sequence.order"]),
    "unknown provider": (lambda t: ["provider.kind=bogus"], ["provider.kind", "sandbox, openai"]),
    "zero concurrency": (lambda t: ["scheduler.concurrency=0"], ["scheduler.concurrency", "at least 1"]),
    "bad base_url": (lambda t: ["provider.base_url=ftp://x"], ["provider.base_url", "http"]),
    "unknown judge mode": (lambda t: ["judge.mode=bogus"], ["judge.mode"]),
    "ci out of range": (lambda t: ["analysis.ci=2"], ["analysis.ci"]),
    "missing probe spec": (lambda t: ["probes.intentions.spec=nope"], ["probes.intentions.spec", "available"]),
    "missing judge rubric": (lambda t: ["probes.harmfulness.judges=[nope]"], ["probes.harmfulness.judges", "nope"]),
    "probe spec YAML syntax": (lambda t: ["probes.intentions.spec=" + spec(t, BROKEN_YAML)],
                               ["bad.yaml:", "invalid YAML"]),
    "probe spec unknown format": (lambda t: [f"probes.intentions.spec={probe_spec(t, GOOD_ITEM.replace('likert', 'bogus'))}"],
                                  ["bad.yaml:8", "unknown format 'bogus'"]),
    "probe spec unknown item key": (lambda t: [f"probes.intentions.spec={probe_spec(t, GOOD_ITEM + COLOUR)}"],
                                    ["bad.yaml:10", "unknown item key 'colour'"]),
    "probe spec undeclared dimension": (lambda t: [f"probes.intentions.spec={probe_spec(t, GOOD_ITEM.replace('dimension: good', 'dimension: kind'))}"],
                                        ["bad.yaml:7", "dimension 'kind'"]),
    "probe spec bad placeholder": (lambda t: [f"probes.intentions.spec={probe_spec(t, GOOD_ITEM.replace('{high}', '{colour}'))}"],
                                   ["bad.yaml:9", "placeholder"]),
    "probe spec duplicate id": (lambda t: [f"probes.intentions.spec={probe_spec(t, GOOD_ITEM + GOOD_ITEM)}"],
                                ["bad.yaml:11", "duplicate item id"]),
    "open items without judges": (lambda t: [f"probes.intentions.spec={probe_spec(t, GOOD_ITEM.replace('likert', 'open'))}"],
                                  ["bad.yaml", "judge"]),
    "dataset file missing": (lambda t: file_dataset(str(t / "nope.jsonl")), ["nope.jsonl", "file not found"]),
    "dataset invalid JSON": (lambda t: file_dataset(jsonl(t, [OK_LINE, OK_LINE, "{not json"])),
                             ["data.jsonl:3", "invalid JSON"]),
    "dataset wrong role": (lambda t: file_dataset(jsonl(t, [OK_LINE, OK_LINE.replace('"user"', '"robot"')])),
                           ["data.jsonl:2", "role 'robot'"]),
    "dataset empty assistant": (lambda t: file_dataset(jsonl(t, [OK_LINE.replace('"a"}', '""}')])),
                                ["data.jsonl:1", "empty assistant"]),
    "dataset too few examples": (lambda t: file_dataset(jsonl(t, [OK_LINE] * 3)), ["data.jsonl", "only 3 examples"]),
    "dataset empty file": (lambda t: file_dataset(jsonl(t, [""])), ["data.jsonl", "empty"]),
    "dataset CSV without columns": (lambda t: file_dataset(spec(t, "a,b\n1,2\n", "d.csv")), ["d.csv:1", "prompt,completion"]),
    "generator unknown param": (lambda t: ["+datasets.trivia_incorrect.params.colour=red"],
                                ["datasets.trivia_incorrect.params.colour"]),
    "url dataset without url": (lambda t: ["datasets.trivia_incorrect.source=url"], ["datasets.trivia_incorrect.url"]),
    "unknown dataset source": (lambda t: ["datasets.trivia_incorrect.source=ftp"], ["datasets.trivia_incorrect.source"]),
    "rubric without answer slot": (lambda t: ["probes.harmfulness.judges=[" + spec(t, NO_SLOT, "r.yaml") + "]"],
                                   ["r.yaml:2", "{answer}"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case: str, tmp_path: Path, iso: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    make, expected = CASES[case]
    code = main(["plan", *iso, *make(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], lines[0]


def test_bad_family(tmp_path: Path, iso: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    path = spec(tmp_path, "name: x\nfamily: feelings\nitems: []\n")
    assert main(["plan", *iso, f"probes.intentions.spec={path}"]) == 2
    assert "bad.yaml:2" in capsys.readouterr().err


def test_unknown_option(iso: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--bogus", *iso]) == 2
    assert "--bogus" in capsys.readouterr().err


def test_missing_api_key_is_a_clear_error(iso: list[str], capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGINE_TEST_MISSING_KEY", raising=False)
    code = main(["run", *iso, "provider=openai", "provider.api_key_env=ENGINE_TEST_MISSING_KEY",
                 "provider.base_url=http://127.0.0.1:9/v1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "ENGINE_TEST_MISSING_KEY" in err and "Traceback" not in err


def test_subprocess_exit_code_and_no_traceback(tmp_path: Path) -> None:
    """The real console entry point, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "engine", "plan", "scheduler.concurrency=abc"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "scheduler.concurrency" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hydra_inspection_flags_pass_through(iso: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--cfg", "job", "seed=3", *iso]) == 0
    out = capsys.readouterr().out
    assert "seed: 3" in out and "name: demo" in out
    assert main(["run", "--cfg", "bogus", *iso]) == 2
    assert "--cfg needs one of job, hydra, all" in capsys.readouterr().err
