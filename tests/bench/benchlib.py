"""Shared pieces of the benchmark scripts in tests/bench/ (run by hand, never collected by pytest).

- :class:`SandboxProcess`: ``python -m engine sandbox`` in its own process on a free loopback
  port, so its CPU never counts as the client's; waits until ``GET /v1/models`` answers.
- :func:`engine_overrides`: point the engine at it (``provider=openai``, a throwaway key variable,
  a store in a temporary directory, no progress line, no analysis).
- :class:`Figure` and :func:`report`: print each figure beside its target with PASS/MISS and append
  one JSON line to tests/bench/results.jsonl (git-ignored).
- :func:`fail`: stop loudly (exit 2) when something cannot be measured.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results.jsonl"
KEY_ENV = "BENCH_KEY"
"""The engine reads its API key from this variable (any value works against the sandbox)."""
MODEL = "gpt-4.1-nano-2025-04-14"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class BenchError(Exception):
    """Something the benchmark needs could not be measured."""


def fail(message: str) -> None:
    print(f"cannot measure: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by another process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / clock_ticks()


class SandboxProcess:
    """``python -m engine sandbox --port 0 [world overrides]`` in a child process.

        with SandboxProcess(["latency.mean_ms=100", "limits.rpm=30000"]) as sb:
            sb.base_url, sb.stats(), sb.cpu_s()
    """

    def __init__(self, overrides: Sequence[str] = (), start_timeout_s: float = 30.0) -> None:
        self.overrides = list(overrides)
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> SandboxProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "sandbox", "--port", "0", *self.overrides],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + self.start_timeout_s
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"(http://[\d.]+:\d+/v1)", line)
        if not m:
            rest = line + (self.proc.stdout.read() if self.proc.poll() is not None else "")
            self.__exit__()
            raise BenchError(f"the sandbox did not start: {rest.strip() or 'no output'}")
        self.base_url = m.group(1)
        while True:
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise BenchError(f"the sandbox at {self.base_url} does not answer GET /v1/models")
            time.sleep(0.05)
        return self

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        return self.get("/sandbox/stats")

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid) if self.proc else float("nan")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None


def engine_overrides(base_url: str, workdir: Path, *extra: str) -> list[str]:
    """Overrides that point the engine at a sandbox process, with its own store, quietly."""
    os.environ.setdefault(KEY_ENV, "bench-key-not-secret")
    return ["provider=openai", f"provider.base_url={base_url}", f"provider.api_key_env={KEY_ENV}",
            f"store.path={workdir / 'store.sqlite'}", f"store.cache_dir={workdir / 'cache'}",
            "scheduler.progress=off", "analysis.enabled=false", *extra]


def quiet_logs() -> None:
    import logging

    for name in ("httpx", "openai", "aiohttp", "engine"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class Figure:
    name: str
    value: float | None
    target: float | None = None
    better: str = "high"
    """high: PASS when value >= target; low: PASS when value <= target."""
    unit: str = ""
    fmt: str = "{:,.3f}"

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        if self.value is None or self.value != self.value:
            return "MISS"
        ok = self.value >= self.target if self.better == "high" else self.value <= self.target
        return "PASS" if ok else "MISS"

    def text(self) -> tuple[str, str, str, str]:
        value = "n/a" if self.value is None else self.fmt.format(self.value) + (f" {self.unit}" if self.unit else "")
        if self.target is None:
            target = ""
        else:
            target = ("≥ " if self.better == "high" else "≤ ") + self.fmt.format(self.target)
            target += f" {self.unit}" if self.unit else ""
        return self.name, value, target, self.verdict


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "engine"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out + ("+dirty" if out and dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def report(bench: str, figures: list[Figure], details: dict[str, Any], title: str = "") -> bool:
    """Print the figures as a table beside their targets and append one JSON line; True if all pass."""
    rows = [f.text() for f in figures]
    header = ("figure", "value", "target", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print()
    print(title or bench)
    print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print(("  " + "  ".join("-" * w for w in widths)).rstrip())
    for r in rows:
        print("  " + "  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].ljust(widths[2]), r[3]]).rstrip())
    line = {
        "bench": bench, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": commit(),
        "figures": {f.name: {"value": f.value, "target": f.target, "better": f.better, "verdict": f.verdict,
                             "unit": f.unit} for f in figures},
        **details, "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    with open(RESULTS, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, default=str) + "\n")
    print(f"  (appended to {RESULTS.relative_to(ROOT)})")
    return all(f.verdict != "MISS" for f in figures)
