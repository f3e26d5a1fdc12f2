"""Keeping files, jobs and batches on disk, so a sandbox restarted on the same state directory
(a resumed run) finds what it had: uploaded files, jobs (whose states go on from their wall-clock
start), their fine-tuned models and batches.

    <state_dir>/state.json        everything but file contents (rewritten atomically on change)
    <state_dir>/files/<file id>   file contents
    <state_dir>/.lock             held while state.json is read or rewritten

Several sandboxes may share one state directory (two runs started at once, each with its own
in-process sandbox): each save happens under the lock and first takes in what the others saved,
so none drops another's files or jobs, and every sandbox can serve every saved model.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.sandbox.batches import Batch, BatchStore
from engine.sandbox.config import EffectRule
from engine.sandbox.jobs import FileRec, Job, JobStore

VERSION = 1
_JOB_RUNTIME = ("registered", "checkpoints")


class StateDir:
    def __init__(self, root: Path, jobs: JobStore, batches: BatchStore):
        self.root, self.jobs, self.batches = root, jobs, batches
        self.blobs = root / "files"
        self._saved_blobs: set[str] = set()

    def attach(self) -> None:
        """Load what is there, then save after every change."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.load()
        self.jobs.on_change = self.save
        self.jobs.reload = self.load

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any] | None:
        path = self.root / "state.json"
        if not path.is_file():
            return None
        state = json.loads(path.read_text(encoding="utf-8"))
        return state if state.get("version") == VERSION else None

    def load(self) -> None:
        with self._locked():
            state = self._read()
            if state is not None:
                self._absorb(state)

    def _absorb(self, state: dict[str, Any]) -> None:
        """Take in what is saved and not yet known here (what this sandbox knows wins)."""
        js = self.jobs
        for base, k in state["occurrences"].items():
            js._occurrences[base] = max(k, js._occurrences.get(base, 0))
        for f in state["files"]:
            blob = self.blobs / f["id"]
            if f["id"] not in js.files and blob.is_file():
                js.files[f["id"]] = FileRec(
                    f["id"], f["filename"], f["purpose"], blob.read_bytes(), f["created_at"]
                )
                self._saved_blobs.add(f["id"])
        for raw in state["jobs"]:
            if raw["id"] in js.jobs:
                continue
            raw = dict(raw)
            rule = raw.pop("rule")
            job = Job(**raw, rule=EffectRule(**rule) if rule else None)
            js.jobs[job.id] = job
            js.model_jobs[job.fine_tuned_model] = job
        for raw in state["batches"]:
            if raw["id"] not in self.batches.batches:
                batch = Batch(**raw)
                self.batches.batches[batch.id] = batch

    def save(self) -> None:
        with self._locked():
            state = self._read()
            if state is not None:
                self._absorb(state)
            self._save()

    def _save(self) -> None:
        js = self.jobs
        for rec in js.files.values():
            if rec.id not in self._saved_blobs:
                _write(self.blobs / rec.id, rec.data)
                self._saved_blobs.add(rec.id)
        jobs = []
        for job in js.jobs.values():
            raw = dataclasses.asdict(job)
            for key in _JOB_RUNTIME:
                raw.pop(key)
            jobs.append(raw)
        state = {
            "version": VERSION,
            "occurrences": js._occurrences,
            "files": [
                {"id": f.id, "filename": f.filename, "purpose": f.purpose, "created_at": f.created_at}
                for f in js.files.values()
            ],
            "jobs": jobs,
            "batches": [dataclasses.asdict(b) for b in self.batches.batches.values()],
        }
        _write(self.root / "state.json", json.dumps(state).encode("utf-8"))


def _write(path: Path, data: bytes) -> None:
    """Atomically, with a temporary name of its own (several sandboxes may write at once)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
