"""The Batch API: chat completions from an uploaded JSONL, answered into an output file.

Requests are answered when the batch is created (the world is deterministic, so when does not
matter); the batch then shows validating -> in_progress -> finalizing -> completed over
``batch_seconds``, and its output (and error) file appears when it completes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.sandbox.api import invalid, make_id, not_found
from engine.sandbox.chat import run_chat
from engine.sandbox.jobs import JobStore

ENDPOINTS = ("/v1/chat/completions",)


@dataclass
class Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict | None
    created_wall: float
    t0: float
    duration: float
    model: str | None
    output: list[str] = field(default_factory=list)
    errors_out: list[str] = field(default_factory=list)
    validation_errors: list[dict] = field(default_factory=list)
    usage: dict = field(default_factory=dict)
    cancelled_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None


class BatchStore:
    def __init__(
        self,
        store: JobStore,
        clock: Callable[[], float] = time.time,
    ):
        self.store, self.clock = store, clock
        self.batches: dict[str, Batch] = {}

    def create(self, body: dict) -> Batch:
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str) or file_id not in self.store.files:
            raise invalid(f"Invalid 'input_file_id': {file_id}", param="input_file_id")
        endpoint = body.get("endpoint")
        if endpoint not in ENDPOINTS:
            raise invalid(
                f"Invalid 'endpoint': the sandbox batches {', '.join(ENDPOINTS)} only.", param="endpoint"
            )
        window = body.get("completion_window")
        if window != "24h":
            raise invalid("Invalid 'completion_window': must be '24h'.", param="completion_window")
        metadata = body.get("metadata")
        rec = self.store.files[file_id]
        world = self.store.world
        now = self.clock()
        batch = Batch(
            id=self.store._id("batch_", 24, "batch", file_id, endpoint),
            input_file_id=file_id,
            endpoint=endpoint,
            completion_window=window,
            metadata=metadata,
            created_wall=now,
            t0=now,
            duration=world.cfg.batch_seconds,
            model=None,
        )
        if rec.purpose != "batch":
            batch.validation_errors.append(
                {
                    "code": "invalid_file",
                    "message": "the input file's purpose must be 'batch'",
                    "param": "input_file_id",
                    "line": None,
                }
            )
        lines = rec.data.decode("utf-8", errors="replace").splitlines()
        tokens = [0, 0]
        for lineno, line in enumerate(lines, 1):
            if batch.validation_errors or not line.strip():
                continue
            try:
                req = json.loads(line)
            except json.JSONDecodeError:
                req = None
            if not (
                isinstance(req, dict)
                and isinstance(req.get("custom_id"), str)
                and req.get("method") == "POST"
                and req.get("url") == endpoint
                and isinstance(req.get("body"), dict)
            ):
                batch.validation_errors.append(
                    {
                        "code": "invalid_request",
                        "line": lineno,
                        "param": None,
                        "message": "each line needs custom_id, method POST, url equal to "
                        "the batch's endpoint, and a body object",
                    }
                )
                continue
            batch.model = batch.model or req["body"].get("model")
            status, out, ptoks, ctoks = run_chat(world, req["body"])
            tokens[0] += ptoks
            tokens[1] += ctoks
            line_out = {
                "id": make_id("batch_req_", 24, batch.id, lineno),
                "custom_id": req["custom_id"],
                "response": {
                    "status_code": status,
                    "request_id": make_id("req_", 24, batch.id, lineno),
                    "body": out,
                },
                "error": None,
            }
            (batch.output if status == 200 else batch.errors_out).append(json.dumps(line_out))
        batch.usage = {
            "input_tokens": tokens[0],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tokens[1],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens[0] + tokens[1],
        }
        self.batches[batch.id] = batch
        self.store.on_change()
        return batch

    def get(self, batch_id: str) -> Batch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise not_found(f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    def status(self, b: Batch) -> str:
        if b.cancelled_at is not None:
            return "cancelled"
        t, d = self.clock() - b.t0, b.duration
        if b.validation_errors:
            return "failed" if t >= 0.1 * d else "validating"
        if t >= d:
            if b.output_file_id is None:
                b.output_file_id = self.store.add_file(
                    f"{b.id}_output.jsonl", "batch_output", _jsonl(b.output)
                ).id
                if b.errors_out:
                    b.error_file_id = self.store.add_file(
                        f"{b.id}_error.jsonl", "batch_output", _jsonl(b.errors_out)
                    ).id
            return "completed"
        return "finalizing" if t >= 0.9 * d else "in_progress" if t >= 0.1 * d else "validating"

    def cancel(self, b: Batch) -> None:
        if self.status(b) in ("validating", "in_progress", "finalizing"):
            b.cancelled_at = self.clock() - b.t0
            self.store.on_change()

    def obj(self, b: Batch) -> dict:
        status = self.status(b)
        w0, d = b.created_wall, b.duration
        done = status == "completed"
        total = len(b.output) + len(b.errors_out)

        def at(frac: float, reached: bool) -> int | None:
            return int(w0 + frac * d) if reached else None

        return {
            "id": b.id,
            "object": "batch",
            "endpoint": b.endpoint,
            "model": b.model,
            "errors": {"object": "list", "data": b.validation_errors} if b.validation_errors else None,
            "input_file_id": b.input_file_id,
            "completion_window": b.completion_window,
            "status": status,
            "output_file_id": b.output_file_id if done else None,
            "error_file_id": b.error_file_id if done else None,
            "created_at": int(w0),
            "in_progress_at": at(0.1, status in ("in_progress", "finalizing", "completed")),
            "expires_at": int(w0) + 86400,
            "finalizing_at": at(0.9, status in ("finalizing", "completed")),
            "completed_at": at(1.0, done),
            "failed_at": at(0.1, status == "failed"),
            "expired_at": None,
            "cancelling_at": at(0, False) if b.cancelled_at is None else int(w0 + b.cancelled_at),
            "cancelled_at": None if b.cancelled_at is None else int(w0 + b.cancelled_at),
            "request_counts": {
                "total": total,
                "completed": len(b.output) if done else 0,
                "failed": len(b.errors_out) if done else 0,
            },
            "usage": b.usage if done else None,
            "metadata": b.metadata,
        }


def _jsonl(lines: list[str]) -> bytes:
    return ("\n".join(lines) + ("\n" if lines else "")).encode()
