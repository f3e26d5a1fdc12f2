"""Content hashes as identities: sha256 over canonical JSON.

Never Python's ``hash()`` (salted per process) nor a DataFrame hash (unstable across versions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot hash object of type {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def content_key(kind: str, payload: Any) -> str:
    """Key of a plan node: the node kind plus everything that changes its result."""
    return sha256_hex(canonical_json({"kind": kind, "payload": payload}))


def short(key: str, n: int = 12) -> str:
    return key[:n]
