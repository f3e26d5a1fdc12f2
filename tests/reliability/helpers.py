"""Helpers shared by the reliability tests and the chaos scripts (tests/chaos/).

Everything listens on 127.0.0.1 only, on ports the OS picks.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
FAKE_KEY = "sk-test-SECRET-DO-NOT-LEAK-0123456789abcdef"
"""A recognisable fake API key: the scans look for it (and for its distinctive middle)."""
KEY_ENV = "ENGINE_TEST_FAKE_KEY"

FAST = [
    "sandbox.finetune_seconds=0.2", "scheduler.poll_interval_s=0.05", "scheduler.poll_max_s=0.2",
    "scheduler.progress=off", "analysis.report=false", "analysis.bootstrap=200",
    "scheduler.backoff_base_s=0.01", "scheduler.backoff_max_s=0.05",
]
TINY = [
    "datasets.trivia_incorrect.limit=20", "datasets.trivia_correct.limit=20",
    "probes.self_assessment.samples=2", "probes.self_assessment.paraphrases=1",
    "probes.intentions.samples=2", "probes.intentions.items=1",
    "probes.harmfulness.samples=2", "probes.harmfulness.items=2",
]
"""A study of three model states and a few dozen requests: seconds on the sandbox."""


def free_port() -> int:
    """A loopback port that was free a moment ago (and nobody listens on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m engine ARGS`` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)


def external(base_url: str) -> list[str]:
    """Overrides that point the engine at an OpenAI-compatible server, with the fake key."""
    return ["provider=openai", f"provider.base_url={base_url}", f"provider.api_key_env={KEY_ENV}"]


class Sandbox:
    """``engine sandbox`` as a separate process: its state and counters outlive any run."""

    def __init__(self, state_dir: Path, overrides: Sequence[str] = (), log: Path | None = None) -> None:
        self.state_dir = state_dir
        self.overrides = list(overrides)
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self, timeout: float = 60) -> Sandbox:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "sandbox", "--port", "0", "--state", str(self.state_dir),
             *self.overrides], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
            if m:
                self.base_url = m.group(1)
                break
            if not line and self.proc.poll() is not None:
                break
        if not self.base_url:
            self.stop()
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        # drain its output so it never blocks on a full pipe
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        sink = self.log.open("a") if self.log else None
        for line in self.proc.stdout:
            if sink:
                sink.write(line)
                sink.flush()

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.base_url + "/sandbox/stats", timeout=10).json()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


Route = tuple[int, bytes] | Callable[[BaseHTTPRequestHandler], tuple[int, bytes]]


class _Files(BaseHTTPRequestHandler):
    routes: dict[str, Route] = {}

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        route = self.routes.get(self.path.split("?")[0], (404, b'{"error": {"message": "not found"}}'))
        status, body = route(self) if callable(route) else route
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if body[:1] in (b"{", b"[") else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 - the stdlib's names

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def http_server(routes: dict[str, Route]) -> Iterator[str]:
    """A stdlib HTTP server on 127.0.0.1: path -> (status, body), or a function of the request
    handler giving them. Yields its base URL."""
    handler = type("Handler", (_Files,), {"routes": dict(routes)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tree_hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the roots (a store's -wal counts; an empty or absent one is equal)."""
    out: dict[str, str] = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in paths:
            data = p.read_bytes()
            if p.name.endswith(("-wal", "-shm")) and not data:
                continue
            if p.name.endswith("-shm"):
                continue  # the shared-memory index: rebuilt by any reader, not content
            out[str(p)] = hashlib.sha256(data).hexdigest()
    return out


def integrity(db: Path) -> str:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def count_rows(db: Path, table: str = "responses") -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.Error:
        return 0
