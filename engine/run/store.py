"""The store: an embedded SQLite database (WAL) shared between runs.

It holds the response cache (one row per sample or judge request, keyed by the plan's content
keys), the registry of uploaded files and fine-tuning jobs, and run records. Every row is
namespaced by the provider's identity, so a different provider (or a different sandbox world)
never answers from another's cache.

Writes go through one writer (the run's writer task) in batched transactions; reads use their
own connection. Two runs sharing a store at once are safe: SQLite serialises the writers (with a
busy timeout) and every insert is idempotent (``INSERT OR IGNORE`` on content keys), so neither
corrupts the store nor records a request twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UserError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS responses (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    model_id TEXT,
    response TEXT,
    top_logprobs TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_ms REAL,
    n_packed INTEGER,
    created REAL NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    namespace TEXT NOT NULL, upload_key TEXT NOT NULL, file_id TEXT NOT NULL, filename TEXT,
    sha256 TEXT, created REAL NOT NULL, PRIMARY KEY (namespace, upload_key));
CREATE TABLE IF NOT EXISTS jobs (
    namespace TEXT NOT NULL, finetune_key TEXT NOT NULL, job_id TEXT NOT NULL, status TEXT NOT NULL,
    model_id TEXT, error TEXT, trained_tokens INTEGER, created REAL NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (namespace, finetune_key));
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, run_dir TEXT, config_hash TEXT, plan_key TEXT, started REAL, finished REAL,
    status TEXT, counts TEXT);
"""


@dataclass(frozen=True)
class CachedResponse:
    key: str
    model_id: str | None
    response: str | None
    top_logprobs: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    n_packed: int | None


@dataclass(frozen=True)
class JobRecord:
    finetune_key: str
    job_id: str
    status: str
    model_id: str | None
    error: str | None
    trained_tokens: int | None


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """Open (creating if needed) the store; user-facing errors for unusable paths."""
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("PRAGMA busy_timeout=30000")
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except (sqlite3.DatabaseError, OSError) as exc:
        raise UserError(f"cannot open the store: {exc}", file=str(path), key="store.path") from None
    if version and int(version[0]) != SCHEMA_VERSION:
        raise UserError(f"store schema version {version[0]} is not {SCHEMA_VERSION}", file=str(path),
                        key="store.path", hint="use another store.path")
    return conn


class Store:
    """Typed access to the store. Use one instance per thread (the writer owns its own)."""

    def __init__(self, path: Path, namespace: str, readonly: bool = False) -> None:
        self.path = path
        self.namespace = namespace
        self.conn = connect(path, readonly)

    def close(self) -> None:
        self.conn.close()

    # ---- reads ----
    def lookup(self, keys: Sequence[str]) -> dict[str, CachedResponse]:
        out: dict[str, CachedResponse] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "SELECT key, model_id, response, top_logprobs, prompt_tokens, completion_tokens, latency_ms, n_packed "
                f"FROM responses WHERE namespace=? AND key IN ({marks})", (self.namespace, *chunk)).fetchall()
            for r in rows:
                out[r[0]] = CachedResponse(*r)
        return out

    def file_id(self, upload_key: str) -> str | None:
        row = self.conn.execute("SELECT file_id FROM files WHERE namespace=? AND upload_key=?",
                                (self.namespace, upload_key)).fetchone()
        return row[0] if row else None

    def job(self, finetune_key: str) -> JobRecord | None:
        row = self.conn.execute(
            "SELECT finetune_key, job_id, status, model_id, error, trained_tokens FROM jobs "
            "WHERE namespace=? AND finetune_key=?", (self.namespace, finetune_key)).fetchone()
        return JobRecord(*row) if row else None

    # ---- writes (one writer) ----
    def put_responses(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows of (key, kind, model_id, response, top_logprobs, prompt_tokens, completion_tokens,
        latency_ms, n_packed); a key already stored is left as it is."""
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(self.namespace, *r, now) for r in rows])

    def put_file(self, upload_key: str, file_id: str, filename: str, sha256: str | None) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?)",
                              (self.namespace, upload_key, file_id, filename, sha256, time.time()))

    def put_job(self, rec: JobRecord) -> None:
        now = time.time()
        with self.conn:
            self.conn.execute(
                "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(namespace, finetune_key) DO UPDATE SET "
                "job_id=excluded.job_id, status=excluded.status, model_id=excluded.model_id, error=excluded.error, "
                "trained_tokens=excluded.trained_tokens, updated=excluded.updated",
                (self.namespace, rec.finetune_key, rec.job_id, rec.status, rec.model_id, rec.error,
                 rec.trained_tokens, now, now))

    def start_run(self, run_id: str, run_dir: str, config_hash: str, plan_key: str) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?)",
                              (run_id, run_dir, config_hash, plan_key, time.time(), None, "running", None))

    def finish_run(self, run_id: str, status: str, counts: dict[str, Any]) -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET finished=?, status=?, counts=? WHERE run_id=?",
                              (time.time(), status, json.dumps(counts), run_id))


def reuse_summary(plan: Any) -> dict[str, Any] | None:
    """For ``engine plan``: how much of the plan the store already holds (read-only)."""
    from engine.run.provider import namespace_for

    path = Path(plan.config.store.path)
    if not path.exists():
        return None
    store = Store(path, namespace_for(plan.config), readonly=True)
    try:
        owner = {g.sample_key(i): (plan.states[g.state].label, g.probe_set) for g in plan.groups for i in range(g.n)}
        held = store.lookup(list(owner))
        done = [plan.states[k].label for k in plan.finetunes if (j := store.job(k)) and j.status == "succeeded"]
    except sqlite3.DatabaseError:
        return None
    finally:
        store.close()
    cells: dict[str, int] = {}
    for key in held:
        state, probe_set = owner[key]
        cells[f"{state}|{probe_set}"] = cells.get(f"{state}|{probe_set}", 0) + 1
    return {"store": str(path), "cached_samples": len(held), "done_finetunes": len(done),
            "finetunes_held": done, "samples_held": cells}
