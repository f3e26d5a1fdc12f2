"""Dataset sources: generators, CSV, and URLs pinned by sha256 (served from loopback)."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config.schema import DatasetConfig
from engine.datasets import describe, download, load_text, read_pins, trivia_generator, validate_chat_jsonl
from engine.errors import DatasetError
from engine.hashing import sha256_hex
from engine.plan.compile import specs_dir_of

LINE = '{"messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "a%d"}]}\n'


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a folder; yields (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw) -> None:  # noqa: ANN002, ANN003
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_url_pin_is_recorded_then_verified(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    body = "".join(LINE % (i, i) for i in range(12))
    (root / "d.jsonl").write_text(body)
    cache = tmp_path / "cache"
    cfg = DatasetConfig(source="url", url=f"{base}/d.jsonl")
    before = describe("d", cfg, Path("specs"), cache)
    assert not before.pinned and before.sha256 is None and "will be recorded" in before.status
    sha = download("d", cfg, cache)
    assert sha == sha256_hex(body) and read_pins(cache)[cfg.url] == sha
    after = describe("d", cfg, Path("specs"), cache)
    assert after.sha256 == sha and after.n_examples == 12 and not after.pinned and "unpinned" in after.status
    # the upstream file changes: once the cache is gone, the recorded pin catches it
    (root / "d.jsonl").write_text(body + LINE % (99, 99))
    shutil.rmtree(cache / "datasets")
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        download("d", cfg, cache)
    # a pin in config is checked on the first download
    pinned = DatasetConfig(source="url", url=f"{base}/d.jsonl", sha256="0" * 64)
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        download("d", pinned, tmp_path / "other")


def test_url_downloaded_once(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    (root / "d.jsonl").write_text("".join(LINE % (i, i) for i in range(10)))
    cfg = DatasetConfig(source="url", url=f"{base}/d.jsonl")
    sha = download("d", cfg, tmp_path)
    (root / "d.jsonl").unlink()  # no second request is made: the cache answers
    assert download("d", cfg, tmp_path) == sha
    assert load_text("d", cfg, Path("specs"), tmp_path) is not None


def test_trivia_generator_answers_correctly_or_not() -> None:
    from engine.config.load import load_config

    specs = specs_dir_of(load_config([]))
    wrong = [json.loads(ln) for ln in trivia_generator({"answers": "incorrect"}, specs, "k").splitlines()]
    right = [json.loads(ln) for ln in trivia_generator({"answers": "correct"}, specs, "k").splitlines()]
    assert len(wrong) == len(right) >= 200
    assert [w["messages"][0] for w in wrong] == [r["messages"][0] for r in right]  # the same questions
    assert all(w["messages"][1]["content"] != r["messages"][1]["content"] for w, r in zip(wrong, right, strict=True))
    n, tokens = validate_chat_jsonl("".join(json.dumps(x) + "\n" for x in wrong), "w")
    assert n == len(wrong) and tokens > n


def test_csv_becomes_chat_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("prompt,completion\n" + "".join(f'"q{i}, really?",a{i}\n' for i in range(10)))
    text = load_text("d", DatasetConfig(source="file", path=str(path)), Path("specs"), tmp_path)
    first = json.loads(text.splitlines()[0])
    assert first["messages"] == [{"role": "user", "content": "q0, really?"}, {"role": "assistant", "content": "a0"}]
