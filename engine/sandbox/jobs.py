"""Files and fine-tuning jobs.

A job's state is computed from the time elapsed since it was created (``finetune_seconds`` in
all): validating_files for the first 10%, queued until 20%, running until the end, then succeeded
(or failed, at 60%, for the share ``faults.finetune_failure`` decided from the job id). Nobody has
to poll for a job to advance; its fine-tuned model can be used from the moment it succeeds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.hashing import canonical_json, sha256_hex
from engine.sandbox.api import invalid, make_id, model_not_found, not_found
from engine.sandbox.config import EffectRule
from engine.sandbox.training import parse_hyperparameters, validate_training_file
from engine.sandbox.world import Model, World, effect_rule, moved_disposition

FILE_PURPOSES = ("fine-tune", "batch")
AUTO_EPOCHS, AUTO_LR = 3, 2.0
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class FileRec:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def obj(self) -> dict:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "expires_at": None,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass
class Job:
    id: str
    model: str
    root: str
    parent_disposition: float
    rule: EffectRule | None
    training_file: str
    validation_file: str | None
    hyper: dict[str, Any]
    suffix: str | None
    seed: int
    metadata: dict[str, str] | None
    created_wall: float
    t0: float
    duration: float
    fails: bool
    n_examples: int
    file_tokens: int
    fine_tuned_model: str
    cancelled_at: float | None = None
    registered: bool = False
    checkpoints: list[dict] = field(default_factory=list)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.n_examples / self.hyper["batch_size"]))

    @property
    def end(self) -> float:
        return self.duration * (0.6 if self.fails else 1.0)


class JobStore:
    """Files and jobs; times are wall-clock seconds, so a saved state resumes where it was."""

    def __init__(self, world: World, clock: Callable[[], float] = time.time):
        self.world, self.clock = world, clock
        self.on_change: Callable[[], None] = lambda: None
        self.files: dict[str, FileRec] = {}
        self.jobs: dict[str, Job] = {}
        self.model_jobs: dict[str, Job] = {}
        self.reload: Callable[[], None] | None = None
        """Set by a state directory: take in what other sandboxes sharing it have saved."""
        self._occurrences: dict[str, int] = {}
        world.lazy_resolver = self.materialize_model

    def _id(self, prefix: str, length: int, *parts: object) -> str:
        base = make_id(prefix, length, self.world.cfg.seed, *parts)
        k = self._occurrences.get(base, 0)
        self._occurrences[base] = k + 1
        return base if k == 0 else make_id(prefix, length, base, k)

    # ---- files ------------------------------------------------------------------------------------
    def add_file(self, filename: str, purpose: str, data: bytes) -> FileRec:
        rec = FileRec(
            self._id("file-", 22, "file", filename, purpose, sha256_hex(data)),
            filename,
            purpose,
            data,
            int(self.clock()),
        )
        self.files[rec.id] = rec
        self.on_change()
        return rec

    def file(self, file_id: str) -> FileRec:
        rec = self.files.get(file_id)
        if rec is None:
            raise not_found(f"No such File object: {file_id}", param="id")
        return rec

    # ---- jobs -------------------------------------------------------------------------------------
    def create_job(self, body: dict) -> Job:
        model_id = body.get("model")
        if not isinstance(model_id, str) or not model_id:
            raise invalid("Missing required parameter: 'model'.", param="model")
        parent = self.world.resolve(model_id)
        if parent is None or ":ckpt-step-" in model_id:
            raise model_not_found(model_id)
        file_id = body.get("training_file")
        if not isinstance(file_id, str) or file_id not in self.files:
            raise invalid(f"invalid training_file: {file_id}", param="training_file")
        rec = self.files[file_id]
        if rec.purpose != "fine-tune":
            raise invalid(
                f"File {file_id} has purpose '{rec.purpose}', expected 'fine-tune'.",
                param="training_file",
                code="invalid_training_file",
            )
        n_examples, file_tokens, text = validate_training_file(rec.data)
        validation_file = body.get("validation_file")
        if validation_file is not None and validation_file not in self.files:
            raise invalid(f"invalid validation_file: {validation_file}", param="validation_file")
        hyper = parse_hyperparameters(body)
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or len(suffix) > 64):
            raise invalid("suffix must be a string of at most 64 characters", param="suffix")
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise invalid("seed must be an integer", param="seed")
        metadata = body.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and len(metadata) <= 16
            and all(
                isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                for k, v in metadata.items()
            )
        ):
            raise invalid(
                "metadata must map at most 16 keys (64 chars) to strings (512 chars)", param="metadata"
            )
        resolved = {
            "n_epochs": AUTO_EPOCHS if hyper["n_epochs"] == "auto" else hyper["n_epochs"],
            "batch_size": (
                max(1, min(256, round(n_examples * 0.002)))
                if hyper["batch_size"] == "auto"
                else hyper["batch_size"]
            ),
            "learning_rate_multiplier": (
                AUTO_LR if hyper["learning_rate_multiplier"] == "auto" else hyper["learning_rate_multiplier"]
            ),
        }
        job_id = self._id(
            "ftjob-",
            24,
            "job",
            parent.id,
            file_id,
            canonical_json(hyper),
            suffix,
            seed,
            canonical_json(metadata),
        )
        if seed is None:
            seed = int(sha256_hex(job_id)[:8], 16) % 2**31
        cfg = self.world.cfg
        fails = _unit_of(cfg.seed, job_id) < cfg.faults.finetune_failure
        short = make_id("", 8, job_id)
        ft_model = f"ft:{parent.root}:{cfg.organization}:{suffix or ''}:{short}"
        now = self.clock()
        job = Job(
            id=job_id,
            model=model_id,
            root=parent.root,
            parent_disposition=parent.disposition,
            rule=effect_rule(cfg.effects, rec.filename, text),
            training_file=file_id,
            validation_file=validation_file,
            hyper=resolved,
            suffix=suffix,
            seed=seed,
            metadata=metadata,
            created_wall=now,
            t0=now,
            duration=cfg.finetune_seconds,
            fails=fails,
            n_examples=n_examples,
            file_tokens=file_tokens,
            fine_tuned_model=ft_model,
        )
        self.jobs[job_id] = job
        self.model_jobs[ft_model] = job
        self.on_change()
        return job

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise not_found(
                f"Could not find fine tune job: {job_id}", param="fine_tune_id", code="fine_tune_not_found"
            )
        return job

    def status(self, job: Job, now: float | None = None) -> str:
        t = (self.clock() if now is None else now) - job.t0
        if job.cancelled_at is not None:
            return "cancelled"
        d = job.duration
        if t >= job.end:
            status = "failed" if job.fails else "succeeded"
        elif t >= 0.2 * d:
            status = "running"
        elif t >= 0.1 * d:
            status = "queued"
        else:
            status = "validating_files"
        if status == "succeeded" and not job.registered:
            self._register(job)
        return status

    def _register(self, job: Job) -> None:
        job.registered = True
        hp = job.hyper
        epochs, lr = hp["n_epochs"], hp["learning_rate_multiplier"]
        d = moved_disposition(job.parent_disposition, job.rule, epochs, lr)
        created = int(job.created_wall + job.duration)
        self.world.register(
            Model(
                job.fine_tuned_model, d, created, f"user-{self.world.cfg.organization}", job.root, job.model
            )
        )
        for epoch in range(max(1, epochs - 2), epochs + 1):
            step = job.steps_per_epoch * epoch
            name = f"{job.fine_tuned_model}:ckpt-step-{step}"
            dc = moved_disposition(job.parent_disposition, job.rule, epochs, lr, epoch / epochs)
            self.world.register(
                Model(name, dc, created, f"user-{self.world.cfg.organization}", job.root, job.model)
            )
            loss = _loss(job, epoch / epochs)
            job.checkpoints.insert(
                0,
                {
                    "object": "fine_tuning.job.checkpoint",
                    "id": make_id("ftckpt_", 24, job.id, step),
                    "created_at": created,
                    "fine_tuned_model_checkpoint": name,
                    "fine_tuning_job_id": job.id,
                    "step_number": step,
                    "metrics": {
                        "step": float(step),
                        "train_loss": loss,
                        "train_mean_token_accuracy": 1 - loss / 3,
                        "valid_loss": loss * 1.1,
                        "valid_mean_token_accuracy": 1 - loss / 2.7,
                        "full_valid_loss": loss * 1.1,
                        "full_valid_mean_token_accuracy": 1 - loss / 2.7,
                    },
                },
            )

    def materialize_model(self, model_id: str) -> Model | None:
        base = model_id.split(":ckpt-step-")[0]
        job = self.model_jobs.get(base)
        if job is None and self.reload is not None:  # perhaps another sandbox on this state dir made it
            self.reload()
            job = self.model_jobs.get(base)
        if job is not None:
            self.status(job)
        return self.world.models.get(model_id)

    def refresh_all(self) -> None:
        now = self.clock()
        for job in self.jobs.values():
            if not job.registered:
                self.status(job, now)

    def cancel(self, job: Job) -> None:
        status = self.status(job)
        if status in TERMINAL:
            raise invalid(
                f"Job {job.id} has already {'been ' if status == 'cancelled' else ''}{status}; "
                "only a running job can be cancelled.",
                param="fine_tune_id",
            )
        job.cancelled_at = self.clock() - job.t0
        self.on_change()

    def job_obj(self, job: Job) -> dict:
        status = self.status(job)
        wall0 = job.created_wall
        finished = None
        if status in ("succeeded", "failed"):
            finished = int(wall0 + job.end)
        elif status == "cancelled":
            finished = int(wall0 + (job.cancelled_at or 0.0))
        error = None
        if status == "failed":
            error = {
                "code": "server_error",
                "message": "The fine-tuning job failed due to an internal error "
                "(injected by the sandbox: faults.finetune_failure).",
                "param": None,
            }
        hp = dict(job.hyper)
        return {
            "object": "fine_tuning.job",
            "id": job.id,
            "model": job.model,
            "created_at": int(wall0),
            "finished_at": finished,
            "fine_tuned_model": job.fine_tuned_model if status == "succeeded" else None,
            "organization_id": f"org-{self.world.cfg.organization}",
            "result_files": [make_id("file-", 22, job.id, "results")] if status == "succeeded" else [],
            "status": status,
            "validation_file": job.validation_file,
            "training_file": job.training_file,
            "hyperparameters": hp,
            "trained_tokens": job.file_tokens * hp["n_epochs"] if status == "succeeded" else None,
            "error": error,
            "integrations": [],
            "seed": job.seed,
            "estimated_finish": None if status in TERMINAL else int(wall0 + job.duration) + 1,
            "method": {"type": "supervised", "supervised": {"hyperparameters": hp}},
            "metadata": job.metadata,
            "user_provided_suffix": job.suffix,
        }

    def list_jobs(self, after: str | None, limit: int, metadata: dict[str, str] | None) -> dict:
        jobs = list(self.jobs.values())[::-1]  # newest first
        if metadata:
            jobs = [
                j for j in jobs if j.metadata and all(j.metadata.get(k) == v for k, v in metadata.items())
            ]
        return _page([self.job_obj(j) for j in jobs], after, limit)

    def events(self, job: Job, after: str | None, limit: int) -> dict:
        status = self.status(job)
        d, w0 = job.duration, job.created_wall
        timeline: list[tuple[float, str, str, str, dict]] = [
            (0.0, "info", f"Created fine-tuning job: {job.id}", "message", {}),
            (0.0, "info", f"Validating training file: {job.training_file}", "message", {}),
            (0.1 * d, "info", "Files validated, moving job to queued state", "message", {}),
            (0.2 * d, "info", "Fine-tuning job started", "message", {}),
        ]
        total = job.steps_per_epoch * job.hyper["n_epochs"]
        last = total if not job.fails else max(1, total // 2)
        shown = sorted({max(1, round(last * k / 10)) for k in range(1, 11)})
        for step in shown:
            frac = step / total
            at = 0.2 * d + (job.end - 0.2 * d) * step / last
            loss = _loss(job, frac)
            timeline.append(
                (
                    at,
                    "info",
                    f"Step {step}/{total}: training loss={loss:.2f}",
                    "metrics",
                    {
                        "step": step,
                        "train_loss": loss,
                        "total_steps": total,
                        "train_mean_token_accuracy": round(1 - loss / 3, 4),
                    },
                )
            )
        if job.fails:
            timeline.append((job.end, "error", "The job failed due to an internal error.", "message", {}))
        else:
            timeline.append(
                (d, "info", f"New fine-tuned model created: {job.fine_tuned_model}", "message", {})
            )
            timeline.append((d, "info", "The job has successfully completed", "message", {}))
        now = self.clock() - job.t0
        # status() reports "cancelled" exactly when cancelled_at is set, so this is the same test
        cancelled_at = job.cancelled_at if status == "cancelled" else None
        cut = now if cancelled_at is None else cancelled_at
        events = [e for e in timeline if e[0] <= cut]
        if cancelled_at is not None:
            events.append((cancelled_at, "info", "Fine-tuning job cancelled", "message", {}))
        objs = [
            {
                "object": "fine_tuning.job.event",
                "id": make_id("ftevent-", 24, job.id, i),
                "created_at": int(w0 + at),
                "level": level,
                "message": msg,
                "type": typ,
                "data": data,
            }
            for i, (at, level, msg, typ, data) in enumerate(events)
        ]
        return _page(objs[::-1], after, limit)

    def checkpoints(self, job: Job, after: str | None, limit: int) -> dict:
        self.status(job)
        page = _page(list(job.checkpoints), after, limit)
        page["first_id"] = page["data"][0]["id"] if page["data"] else None
        page["last_id"] = page["data"][-1]["id"] if page["data"] else None
        return page


def _page(objs: list[dict], after: str | None, limit: int) -> dict:
    if after:
        ids = [o["id"] for o in objs]
        objs = objs[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": objs[:limit], "has_more": len(objs) > limit}


def _unit_of(seed: int, job_id: str) -> float:
    return int(sha256_hex(f"{seed}\x1ffail\x1f{job_id}")[:16], 16) / 2.0**64


def _loss(job: Job, frac: float) -> float:
    wobble = (int(sha256_hex(f"{job.id}{frac}")[:4], 16) / 65535 - 0.5) * 0.1
    return round(max(0.05, 2.0 * math.exp(-3.0 * frac) + 0.1 + wobble), 4)
