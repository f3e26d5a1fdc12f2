"""Config diff: each run's resolved config flattened to dotted keys; changed, added, removed.

Mappings are flattened (``models.nano.hyperparameters.learning_rate_multiplier``). A list of
scalars is one value (``sequence.order``); a list holding mappings is flattened by index
(``sandbox.effects[0].target``). Values of keys that look like secrets are never shown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

HIDDEN = "***"
_SECRET = re.compile(r"key|secret|password|token$", re.IGNORECASE)
_NOT_SECRET = {"api_key_env"}

CHANGED, ADDED, REMOVED = "changed", "added", "removed"


@dataclass(frozen=True)
class ConfigChange:
    key: str
    change: str
    """changed (in both, different) | added (only in B) | removed (only in A)."""
    a: str | None
    """The value in A as JSON (None when absent; HIDDEN for secrets)."""
    b: str | None


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf values of a nested config by dotted key (see the module docstring)."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        if not node and prefix:
            out[prefix] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(node, list) and any(isinstance(v, dict) for v in node):
        for i, value in enumerate(node):
            out.update(flatten(value, f"{prefix}[{i}]"))
    else:
        out[prefix] = node
    return out


def is_secret(key: str) -> bool:
    """A key whose value must never be printed: its last part names a key, secret or password."""
    last = re.split(r"[.\[]", key)[-1]
    return last not in _NOT_SECRET and bool(_SECRET.search(last))


def show(key: str, value: Any) -> str:
    return HIDDEN if is_secret(key) else json.dumps(value, sort_keys=True, default=str)


def diff_config(a: dict[str, Any], b: dict[str, Any]) -> list[ConfigChange]:
    """Keys whose values differ, in key order."""
    fa, fb = flatten(a), flatten(b)
    out = []
    for key in sorted(fa.keys() | fb.keys()):
        if key in fa and key in fb:
            if not _equal(fa[key], fb[key]):
                out.append(ConfigChange(key, CHANGED, show(key, fa[key]), show(key, fb[key])))
        elif key in fa:
            out.append(ConfigChange(key, REMOVED, show(key, fa[key]), None))
        else:
            out.append(ConfigChange(key, ADDED, None, show(key, fb[key])))
    return out


def _equal(x: Any, y: Any) -> bool:
    """1 and 1.0 are the same setting (JSON and YAML disagree on them); True and 1 are not."""
    if isinstance(x, bool) != isinstance(y, bool):
        return False
    return bool(x == y)
