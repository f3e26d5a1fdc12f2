"""A corpus of malformed inputs to ``engine run``, beyond tests/test_bad_input.py.

Every case: exit code 2, exactly one stderr line starting with ``error:`` that names the file,
key or line, no traceback, no run directory made, and the store, the dataset cache, the sandbox
state and an earlier run's outputs byte-identical before and after.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.cli import main
from tests.reliability.helpers import (
    FAKE_KEY,
    FAST,
    KEY_ENV,
    TINY,
    engine,
    external,
    free_port,
    http_server,
    tree_hashes,
)

OK = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
OK_LINE = json.dumps(OK)
GOOD_JSONL = ("\n".join([OK_LINE] * 12) + "\n").encode()
BAD_JSONL = ("\n".join([OK_LINE, OK_LINE, '{"messages": [', OK_LINE]) + "\n").encode()
SERVED = json.dumps({"object": "list", "data": [{"id": "gpt-4.1-2025-04-14", "object": "model"}]}).encode()
ROUTES = {
    "/data.jsonl": (200, GOOD_JSONL),
    "/bad.jsonl": (200, BAD_JSONL),
    "/v1/models": (401, b'{"error": {"message": "Incorrect API key provided"}}'),
    "/served/v1/models": (200, SERVED),
}
WRONG_SHA = "0" * 64
TRAINING = "sequence.pipelines.trivia.stages.misalign.hyperparameters"
JUDGES = "probes.harmfulness.judges"
_closed_port = free_port()


@dataclass
class Ctx:
    root: Path
    """Where a case may write its files (never the state under test)."""
    url: str
    """The loopback HTTP server's base URL."""
    closed: int
    """A loopback port nobody listens on."""

    def file(self, name: str, data: bytes | str) -> str:
        path = self.root / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    def jsonl(self, lines: list[object]) -> list[str]:
        text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
        return dataset(self.file("data.jsonl", text))


def dataset(path: str) -> list[str]:
    return ["datasets.trivia_incorrect.source=file", f"datasets.trivia_incorrect.path={path}"]


def url_dataset(url: str, sha: str | None = None) -> list[str]:
    return ["datasets.trivia_incorrect.source=url", f"datasets.trivia_incorrect.url={url}",
            *([f"datasets.trivia_incorrect.sha256={sha}"] if sha else [])]


def msg(role: object, content: object) -> dict[str, object]:
    return {"role": role, "content": content}


RUBRIC = 'name: r\ntemplate: "Q {question} A {answer}"\n'
LIST_YAML = "- a\n- b\n"
BROKEN_RUBRIC = "name: r\ntemplate: [x\n"


def spec(c: Ctx, key: str, name: str, text: str) -> list[str]:
    path = c.file(name, text)
    return [f"{key}=[{path}]" if key.endswith("judges") else f"{key}={path}"]


Case = tuple[Callable[[Ctx], list[str]], list[str]]
CASES: dict[str, Case] = {
    # URL sources: a wrong pin, an unreachable host, a 404, content that is not chat JSONL
    "url wrong sha256": (lambda c: url_dataset(c.url + "/data.jsonl", WRONG_SHA),
                         ["datasets.trivia_incorrect.sha256", "sha256 mismatch", WRONG_SHA]),
    "url unreachable": (lambda c: url_dataset(f"http://127.0.0.1:{c.closed}/data.jsonl", WRONG_SHA),
                        ["datasets.trivia_incorrect.url", "cannot download"]),
    "url 404": (lambda c: url_dataset(c.url + "/missing.jsonl"), ["datasets.trivia_incorrect.url", "404"]),
    "url invalid JSONL": (lambda c: url_dataset(c.url + "/bad.jsonl"), ["bad.jsonl:3", "invalid JSON"]),
    # the provider: unreachable, rejecting the key, not an API root, not serving the model, no key
    "unreachable base_url": (lambda c: external(f"http://127.0.0.1:{c.closed}/v1"),
                             ["provider.base_url", "cannot reach", f"127.0.0.1:{_closed_port}"]),
    "key rejected (401)": (lambda c: external(c.url + "/v1"), ["provider.api_key_env", KEY_ENV, "401"]),
    "base_url not an API root (404)": (lambda c: external(c.url + "/nothing"), ["provider.base_url", "404"]),
    "model not served": (lambda c: external(c.url + "/served/v1"), ["models.nano.id", "not served"]),
    "blank API key": (lambda c: [*external(c.url + "/v1"), "provider.api_key_env=ENGINE_TEST_BLANK_KEY"],
                      ["provider.api_key_env", "ENGINE_TEST_BLANK_KEY", "not set"]),
    "empty api_key_env": (lambda c: ["provider=openai", "provider.api_key_env="], ["provider.api_key_env"]),
    # where outputs go
    "run dir under a regular file": (lambda c: [f"hydra.run.dir={c.file('plain', 'x')}/sub"],
                                     ["hydra.run.dir", "not a directory"]),
    "run dir is a regular file": (lambda c: [f"hydra.run.dir={c.file('plain', 'x')}"],
                                  ["hydra.run.dir", "not a directory"]),
    "store under a regular file": (lambda c: [f"store.path={c.file('plain', 'x')}/store.sqlite"],
                                   ["store.path", "plain"]),
    "store is not a database": (lambda c: [f"store.path={c.file('junk.sqlite', 'not sqlite at all ' * 300)}"],
                                ["store.path", "junk.sqlite", "not a database"]),
    "store is a directory": (lambda c: [f"store.path={c.root}"], ["store.path", "directory"]),
    # fine-tuning JSONL
    "JSONL line not an object": (lambda c: c.jsonl([OK, [1, 2]]), ["data.jsonl:2", "object"]),
    "JSONL messages not a list": (lambda c: c.jsonl([OK, OK, {"messages": "hi"}]),
                                  ["data.jsonl:3", "'messages' list"]),
    "JSONL message not an object": (lambda c: c.jsonl([{"messages": ["hi"]}]),
                                    ["data.jsonl:1", "not an object"]),
    "JSONL content not text": (lambda c: c.jsonl([OK, {"messages": [msg("user", 5), msg("assistant", "a")]}]),
                               ["data.jsonl:2", "no text content"]),
    "JSONL no assistant turn": (lambda c: c.jsonl([{"messages": [msg("user", "q")]}]),
                                ["data.jsonl:1", "no assistant message"]),
    "JSONL role missing": (lambda c: c.jsonl([OK, {"messages": [{"content": "q"}, msg("assistant", "a")]}]),
                           ["data.jsonl:2", "role None"]),
    "JSONL not UTF-8": (lambda c: dataset(c.file("data.jsonl", b'{"messages": "\xff\xfe"}\n')),
                        ["data.jsonl", "datasets.trivia_incorrect.path", "cannot read"]),
    "CSV empty file": (lambda c: dataset(c.file("d.csv", "")), ["d.csv:1", "prompt,completion"]),
    "CSV empty completion": (lambda c: dataset(c.file("d.csv", "prompt,completion\nq,a\nq2,\n")),
                             ["d.csv:3", "empty"]),
    # types and ranges the schema cannot express
    "hyperparameter wrong type": (lambda c: [f"{TRAINING}.n_epochs=three"],
                                  [f"{TRAINING}.n_epochs", "Integer"]),
    "hyperparameter zero epochs": (lambda c: [f"{TRAINING}.n_epochs=0"], [f"{TRAINING}.n_epochs", "1..50"]),
    "hyperparameter negative LR": (lambda c: [f"{TRAINING}.learning_rate_multiplier=-1"],
                                   [f"{TRAINING}.learning_rate_multiplier"]),
    "model hyperparameter batch 0": (lambda c: ["models.nano.hyperparameters.batch_size=0"],
                                     ["models.nano.hyperparameters.batch_size"]),
    "empty model id": (lambda c: ["models.nano.id="], ["models.nano.id"]),
    "probe items zero": (lambda c: ["probes.intentions.items=0"], ["probes.intentions.items"]),
    "comparison of an unknown stage": (lambda c: ["analysis.comparisons=[[base,nope]]"],
                                       ["analysis.comparisons[0]", "'nope' is not a stage"]),
    "sandbox awareness > 1": (lambda c: ["sandbox.awareness=2"], ["sandbox.awareness", "[0, 1]"]),
    "sandbox fault rates > 1": (lambda c: ["sandbox.faults.rate_429=0.7", "sandbox.faults.rate_500=0.5"],
                                ["sandbox.faults", "add up"]),
    "sandbox latency dist": (lambda c: ["sandbox.latency.dist=gauss"], ["sandbox.latency.dist"]),
    "sandbox bad effect regex": (lambda c: ['sandbox.effects=[{match: "(", target: 0.5}]'],
                                 ["sandbox.effects[0].match"]),
    "sandbox fault rate wrong type": (lambda c: ["sandbox.faults.rate_429=often"],
                                      ["sandbox.faults.rate_429"]),
    "unknown experiment": (lambda c: ["experiment=nope"], ["experiment/nope", "available options"]),
    "order not a list": (lambda c: ["sequence.order=misalign"], ["sequence.order"]),
    # overrides Hydra cannot parse: the message names the override and its key
    "override list with empty item": (lambda c: ["probes=[self_assessment,,]"],
                                      ["key 'probes'", "[self_assessment,,]"]),
    "override unclosed list": (lambda c: ["sequence.order=[misalign"],
                               ["key 'sequence.order'", "cannot parse"]),
    "override without =": (lambda c: ["scheduler.concurrency"],
                           ["key 'scheduler.concurrency'", "cannot parse"]),
    "override unclosed quote": (lambda c: ["name='abc"], ["key 'name'", "cannot parse"]),
    # spec files
    "probe spec is a list": (lambda c: spec(c, "probes.intentions.spec", "p.yaml", LIST_YAML),
                             ["p.yaml:1", "mapping"]),
    "probe spec empty": (lambda c: spec(c, "probes.intentions.spec", "p.yaml", ""), ["p.yaml", "mapping"]),
    "probe spec is a directory": (lambda c: [f"probes.intentions.spec={c.root}"], ["cannot read"]),
    "rubric scale reversed": (lambda c: spec(c, JUDGES, "r.yaml", RUBRIC + "scale: [5, 1]"),
                              ["r.yaml:3", "scale"]),
    "rubric scale not a list": (lambda c: spec(c, JUDGES, "r.yaml", RUBRIC + "scale: high"),
                                ["r.yaml:3", "scale"]),
    "rubric YAML syntax": (lambda c: spec(c, JUDGES, "r.yaml", BROKEN_RUBRIC),
                           ["r.yaml:", "invalid YAML"]),
}

@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A tiny completed run (its directory, store, cache and sandbox state), and a loopback file server."""
    root = tmp_path_factory.mktemp("corpus")
    state = root / "state"
    base = [*FAST, *TINY, f"store.path={state / 'store.sqlite'}", f"store.cache_dir={state / 'cache'}"]
    assert main(["run", *base, f"hydra.run.dir={state / 'earlier'}"]) == 0
    assert (state / "earlier" / "samples.parquet").exists()
    with http_server(ROUTES) as url:
        yield {"root": root, "state": state, "base": base, "url": url, "snapshot": tree_hashes(state)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_leaves_everything_alone(case: str, corpus: dict, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    make, expected = CASES[case]
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    monkeypatch.setenv("ENGINE_TEST_BLANK_KEY", "   ")
    work = corpus["root"] / "cases" / re.sub(r"\W+", "_", case)
    work.mkdir(parents=True)
    ctx = Ctx(work, corpus["url"], _closed_port)
    run_dir = work / "run"
    capsys.readouterr()
    started = time.monotonic()
    code = main(["run", *corpus["base"], f"hydra.run.dir={run_dir}", *make(ctx)])
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "Traceback" not in err and not out.strip()
    for text in expected:
        assert text in lines[0], lines[0]
    assert FAKE_KEY not in err
    assert elapsed < 15, f"{case}: took {elapsed:.1f} s to fail"
    assert not run_dir.exists(), "a failed study left a run directory"
    assert tree_hashes(corpus["state"]) == corpus["snapshot"], "the store or earlier outputs changed"


def test_corpus_size() -> None:
    from tests.test_bad_input import CASES as OLD

    assert not set(CASES) & set(OLD)
    assert len(CASES) >= 40 and len(CASES) + len(OLD) >= 74


@pytest.mark.parametrize("case", ["unreachable base_url", "url wrong sha256", "run dir under a regular file"])
def test_console_exit_code(case: str, corpus: dict, tmp_path: Path) -> None:
    """The real entry point, in its own process: exit code 2, one line, fast, nothing left behind."""
    make, expected = CASES[case]
    ctx = Ctx(tmp_path, corpus["url"], _closed_port)
    started = time.monotonic()
    proc = engine("run", *corpus["base"], f"hydra.run.dir={tmp_path / 'run'}", *make(ctx),
                  env={KEY_ENV: FAKE_KEY}, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:")
    assert "Traceback" not in proc.stderr
    assert all(text in proc.stderr for text in expected), proc.stderr
    assert time.monotonic() - started < 20
    assert not (tmp_path / "run").exists()
    assert tree_hashes(corpus["state"]) == corpus["snapshot"]
