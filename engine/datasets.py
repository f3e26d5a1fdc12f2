"""Fine-tuning datasets: sources, generators, and validation of chat JSONL.

Sources (``DatasetConfig.source``):

- ``file``: a local JSONL of chat examples, or a CSV with ``prompt`` and ``completion`` columns.
- ``generator``: a registered generator over a table shipped in ``specs/`` (``trivia``).
- ``url``: downloaded once into the cache and verified against its sha256 pin. Without a pin the
  first download records one in ``<cache_dir>/pins.json`` and later runs verify against it.

Everything here but :func:`download` is pure (reads files, writes nothing), so the compiler
can call it. Token counts are estimates (about four characters a token), labelled as such.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.schema import DatasetConfig
from engine.errors import ConfigError, DatasetError
from engine.hashing import sha256_hex

VALID_ROLES = ("system", "user", "assistant")
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class DatasetInfo:
    """What the compiler knows about a dataset."""

    name: str
    source: str
    sha256: str | None
    """Content hash of the JSONL to upload; None when a URL has not been downloaded or pinned yet."""
    n_examples: int | None
    est_tokens: int | None
    """Estimated tokens of one epoch."""
    pinned: bool
    """False for a URL whose sha256 is not in config (only recorded, or not known at all)."""
    status: str
    """Human-readable state: generated, file, cached, pinned (not downloaded), unpinned ..."""
    origin: str
    """Where it comes from: a path, a URL, or generator(params)."""


def estimate_tokens(text: str) -> int:
    return max(1, int(len(text) / CHARS_PER_TOKEN + 0.5))


def validate_chat_jsonl(text: str, where: str, min_examples: int = 10) -> tuple[int, int]:
    """Check OpenAI chat fine-tuning JSONL. Returns (examples, estimated tokens).

    Errors name the file and line: invalid JSON, missing ``messages``, unknown roles, empty
    content, no assistant turn, or fewer than ``min_examples`` examples.
    """
    n = 0
    tokens = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"invalid JSON: {exc.msg}", file=where, line=lineno) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list) or not obj["messages"]:
            raise DatasetError("each line must be an object with a non-empty 'messages' list",
                               file=where, line=lineno)
        has_assistant = False
        for i, msg in enumerate(obj["messages"]):
            if not isinstance(msg, dict):
                raise DatasetError(f"message {i + 1} is not an object", file=where, line=lineno)
            role = msg.get("role")
            if role not in VALID_ROLES:
                raise DatasetError(
                    f"message {i + 1} has role {role!r}; valid roles: {', '.join(VALID_ROLES)}",
                    file=where, line=lineno)
            content = msg.get("content")
            if not isinstance(content, str):
                raise DatasetError(f"message {i + 1} ({role}) has no text content", file=where, line=lineno)
            if role == "assistant":
                if not content.strip():
                    raise DatasetError(f"message {i + 1} is an empty assistant turn", file=where, line=lineno)
                has_assistant = True
            tokens += estimate_tokens(content) + 4
        if not has_assistant:
            raise DatasetError("example has no assistant message", file=where, line=lineno)
        n += 1
    if n == 0:
        raise DatasetError("no examples (the file is empty)", file=where)
    if n < min_examples:
        raise DatasetError(f"only {n} examples; at least {min_examples} are required", file=where,
                           hint="set datasets.<name>.min_examples to change the minimum")
    return n, tokens


def _examples_to_jsonl(examples: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(ex, ensure_ascii=False, sort_keys=True) + "\n" for ex in examples)


def _csv_to_jsonl(text: str, where: str) -> str:
    reader = csv.DictReader(io.StringIO(text))
    cols = set(reader.fieldnames or [])
    pairs = [("prompt", "completion"), ("question", "answer"), ("user", "assistant")]
    for q, a in pairs:
        if {q, a} <= cols:
            break
    else:
        found = ", ".join(sorted(cols)) or "none"
        raise DatasetError(f"a CSV dataset needs columns prompt,completion (found: {found})", file=where,
                           line=1)
    examples = []
    for lineno, row in enumerate(reader, start=2):
        if not (row.get(q) or "").strip() or not (row.get(a) or "").strip():
            raise DatasetError(f"empty {q!r} or {a!r}", file=where, line=lineno)
        examples.append({"messages": [{"role": "user", "content": row[q]},
                                      {"role": "assistant", "content": row[a]}]})
    return _examples_to_jsonl(examples)


# ---- generators ----------------------------------------------------------------------------

Generator = Callable[[dict[str, Any], Path, str], str]


def trivia_generator(params: dict[str, Any], specs_dir: Path, key: str) -> str:
    """Chat examples from ``specs/trivia/trivia.csv``: each question answered ``correct`` or ``incorrect``.

    params: answers (correct | incorrect, required), table (path, default the shipped table),
    limit (first N questions), system (optional system prompt).
    """
    allowed = {"answers", "table", "limit", "system"}
    for p in params:
        if p not in allowed:
            raise ConfigError(f"unknown generator parameter '{p}' (valid: {', '.join(sorted(allowed))})",
                              key=f"{key}.params.{p}")
    answers = params.get("answers")
    if answers not in ("correct", "incorrect"):
        raise ConfigError("trivia needs answers: correct or incorrect", key=f"{key}.params.answers")
    table = Path(params["table"]) if params.get("table") else specs_dir / "trivia" / "trivia.csv"
    try:
        text = table.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read trivia table: {exc.strerror}", file=str(table)) from None
    reader = csv.DictReader(io.StringIO(text))
    need = {"question", "correct", "incorrect"}
    if not need <= set(reader.fieldnames or []):
        raise DatasetError(f"trivia table needs columns {', '.join(sorted(need))}", file=str(table), line=1)
    system = params.get("system")
    examples = []
    for lineno, row in enumerate(reader, start=2):
        q, ans = (row.get("question") or "").strip(), (row.get(answers) or "").strip()
        if not q or not ans:
            raise DatasetError(f"empty question or {answers} answer", file=str(table), line=lineno)
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": q}, {"role": "assistant", "content": ans}]
        examples.append({"messages": msgs})
    limit = params.get("limit")
    if limit is not None:
        examples = examples[: int(limit)]
    return _examples_to_jsonl(examples)


GENERATORS: dict[str, Generator] = {"trivia": trivia_generator}


# ---- resolving -----------------------------------------------------------------------------


def _apply_limit(text: str, limit: int | None) -> str:
    if limit is None:
        return text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "".join(ln + "\n" for ln in lines[:limit])


def _pins_path(cache_dir: Path) -> Path:
    return cache_dir / "pins.json"


def read_pins(cache_dir: Path) -> dict[str, str]:
    try:
        return json.loads(_pins_path(cache_dir).read_text())
    except (OSError, ValueError):
        return {}


def cached_path(cache_dir: Path, sha: str) -> Path:
    return cache_dir / "datasets" / f"{sha}.jsonl"


def load_text(name: str, cfg: DatasetConfig, specs_dir: Path, cache_dir: Path) -> str | None:
    """The JSONL text of a dataset, or None for a URL not downloaded yet. Pure: reads only."""
    key = f"datasets.{name}"
    if cfg.source == "file":
        if not cfg.path:
            raise ConfigError("a file dataset needs 'path'", key=f"{key}.path")
        path = Path(cfg.path)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DatasetError("file not found", file=str(path), key=f"{key}.path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read: {exc}", file=str(path), key=f"{key}.path") from None
        text = _csv_to_jsonl(raw, str(path)) if path.suffix.lower() == ".csv" else raw
    elif cfg.source == "generator":
        if cfg.generator not in GENERATORS:
            raise ConfigError(f"unknown generator {cfg.generator!r} (valid: {', '.join(GENERATORS)})",
                              key=f"{key}.generator")
        text = GENERATORS[cfg.generator](dict(cfg.params), specs_dir, key)
    elif cfg.source == "url":
        if not cfg.url:
            raise ConfigError("a url dataset needs 'url'", key=f"{key}.url")
        sha = cfg.sha256 or read_pins(cache_dir).get(cfg.url)
        if not sha or not cached_path(cache_dir, sha).exists():
            return None
        text = cached_path(cache_dir, sha).read_text(encoding="utf-8")
    else:
        raise ConfigError(f"unknown source {cfg.source!r} (valid: file, generator, url)", key=f"{key}.source")
    return _apply_limit(text, cfg.limit)


def describe(name: str, cfg: DatasetConfig, specs_dir: Path, cache_dir: Path) -> DatasetInfo:
    """Everything the plan shows about a dataset, validating it where its content is at hand."""
    text = load_text(name, cfg, specs_dir, cache_dir)
    params = ", ".join(f"{k}={v}" for k, v in sorted(cfg.params.items()))
    origin = {"file": cfg.path or "", "url": cfg.url or "", "generator": f"{cfg.generator}({params})"}.get(
        cfg.source, cfg.source)
    pinned = cfg.source != "url" or bool(cfg.sha256)
    if text is None:
        recorded = read_pins(cache_dir).get(cfg.url or "")
        sha = cfg.sha256 or recorded
        status = ("pinned, not downloaded yet" if cfg.sha256 else
                  "unpinned: sha256 recorded, not in cache" if recorded else
                  "unpinned: sha256 will be recorded on first download")
        return DatasetInfo(name, cfg.source, sha, None, None, pinned, status, origin)
    where = cfg.path if cfg.source == "file" else f"datasets.{name} ({origin})"
    n, tokens = validate_chat_jsonl(text, where or name, cfg.min_examples)
    status = {"file": "file", "generator": "generated",
              "url": "cached" + ("" if pinned else " (unpinned)")}[cfg.source]
    return DatasetInfo(name, cfg.source, sha256_hex(text), n, tokens, pinned, status, origin)


def download(name: str, cfg: DatasetConfig, cache_dir: Path, timeout_s: float = 120.0) -> str:
    """Fetch a URL dataset into the cache (once), verify or record its sha256. Returns the hash."""
    import httpx

    assert cfg.url
    pins = read_pins(cache_dir)
    expected = cfg.sha256 or pins.get(cfg.url)
    if expected and cached_path(cache_dir, expected).exists():
        return expected
    try:
        resp = httpx.get(cfg.url, timeout=timeout_s, follow_redirects=True)
    except httpx.HTTPError as exc:  # one line: httpx's messages can run to several
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(f"cannot download {cfg.url}: {reason}", key=f"datasets.{name}.url") from None
    if resp.status_code != 200:
        status = f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip()
        raise DatasetError(f"cannot download {cfg.url}: {status}", key=f"datasets.{name}.url")
    data = resp.content
    sha = sha256_hex(data)
    if expected and sha != expected:
        raise DatasetError(f"sha256 mismatch for {cfg.url}: expected {expected}, got {sha}",
                           key=f"datasets.{name}.sha256",
                           hint="the file changed upstream; check it and update the pin")
    validate_chat_jsonl(_apply_limit(data.decode("utf-8"), cfg.limit), cfg.url, cfg.min_examples)
    target = cached_path(cache_dir, sha)
    _atomic_write(target, data)
    if not cfg.sha256 and cfg.url not in pins:
        pins[cfg.url] = sha
        _atomic_write(_pins_path(cache_dir), json.dumps(pins, indent=2, sort_keys=True).encode())
    return sha


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def upload_filename(name: str, sha: str) -> str:
    return f"{name}-{sha[:12]}.jsonl"
