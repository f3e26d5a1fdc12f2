"""What OpenAI checks when a fine-tuning job is created: the training file and the hyperparameters."""

from __future__ import annotations

import json
from typing import Any

from engine.sandbox.api import APIError, invalid
from engine.sandbox.world import estimate_tokens

TRAINING_ROLES = ("system", "user", "assistant")
MIN_EXAMPLES = 10


def validate_training_file(data: bytes) -> tuple[int, int, str]:
    """(examples, tokens, text) of a chat fine-tuning JSONL, or a 400 naming the first bad line."""

    def bad(msg: str) -> APIError:
        return invalid(f"Invalid training file: {msg}", param="training_file", code="invalid_training_file")

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("the file is not UTF-8 text") from None
    n = tokens = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except json.JSONDecodeError:
            raise bad(f"line {lineno} is not valid JSON") from None
        messages = example.get("messages") if isinstance(example, dict) else None
        if not isinstance(messages, list) or not messages:
            raise bad(f"line {lineno} has no 'messages' list")
        has_answer = False
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or msg.get("role") not in TRAINING_ROLES:
                raise bad(f"line {lineno}, message {i + 1}: role must be one of {', '.join(TRAINING_ROLES)}")
            content = msg.get("content")
            if not isinstance(content, str):
                raise bad(f"line {lineno}, message {i + 1}: content must be a string")
            if msg["role"] == "assistant" and content.strip():
                has_answer = True
            tokens += estimate_tokens(content) + 4
        if not has_answer:
            raise bad(f"line {lineno} has no assistant message with content")
        n += 1
    if n < MIN_EXAMPLES:
        raise bad(f"the file has {n} example(s), but at least {MIN_EXAMPLES} are required")
    return n, tokens, text


def parse_hyperparameters(body: dict) -> dict[str, Any]:
    hp = body.get("hyperparameters") or {}
    method = body.get("method")
    if method is not None:
        if not isinstance(method, dict) or method.get("type", "supervised") != "supervised":
            raise invalid("The sandbox supports only method type 'supervised'.", param="method.type")
        sup = method.get("supervised") or {}
        mhp = sup.get("hyperparameters") if isinstance(sup, dict) else None
        if mhp is not None and not isinstance(mhp, dict):
            raise invalid(
                "method.supervised.hyperparameters must be an object",
                param="method.supervised.hyperparameters",
            )
        hp = {**(hp if isinstance(hp, dict) else {}), **(mhp or {})}
    if not isinstance(hp, dict):
        raise invalid("hyperparameters must be an object", param="hyperparameters")
    out: dict[str, Any] = {}
    for key, kind, lo, hi in (
        ("n_epochs", int, 1, 50),
        ("batch_size", int, 1, 256),
        ("learning_rate_multiplier", float, 0.0, 1e9),
    ):
        value = hp.get(key, "auto")
        if value is None:
            value = "auto"
        ok = value == "auto" or (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (kind is float or float(value).is_integer())
            and lo <= value <= hi
            and (key != "learning_rate_multiplier" or value > 0)
        )
        if not ok:
            raise invalid(
                f"Invalid value for hyperparameters.{key}: {value!r}", param=f"hyperparameters.{key}"
            )
        out[key] = value if value == "auto" else kind(value)
    return out
