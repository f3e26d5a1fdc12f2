"""Keeping files, jobs and batches on disk, so a sandbox restarted on the same state directory
(a resumed run) finds what it had: uploaded files, jobs (whose states go on from their wall-clock
start), their fine-tuned models and batches.

    <state_dir>/state.json        everything but file contents (rewritten atomically on change)
    <state_dir>/files/<file id>   file contents
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

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

    def load(self) -> None:
        path = self.root / "state.json"
        if not path.is_file():
            return
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("version") != VERSION:
            return
        js = self.jobs
        js._occurrences.update(state["occurrences"])
        for f in state["files"]:
            blob = self.blobs / f["id"]
            if blob.is_file():
                js.files[f["id"]] = FileRec(
                    f["id"], f["filename"], f["purpose"], blob.read_bytes(), f["created_at"]
                )
                self._saved_blobs.add(f["id"])
        for raw in state["jobs"]:
            rule = raw.pop("rule")
            job = Job(**raw, rule=EffectRule(**rule) if rule else None)
            js.jobs[job.id] = job
            js.model_jobs[job.fine_tuned_model] = job
        for raw in state["batches"]:
            batch = Batch(**raw)
            self.batches.batches[batch.id] = batch

    def save(self) -> None:
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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
