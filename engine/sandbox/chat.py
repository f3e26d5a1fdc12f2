"""POST /v1/chat/completions: check a request as OpenAI does, answer it from the world."""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.sandbox.api import APIError, invalid, model_not_found
from engine.sandbox.world import Model, World, estimate_tokens

DEFAULT_MAX_TOKENS_ESTIMATE = 256
"""Completion tokens a request without max_tokens is counted for against the TPM limit."""
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass
class ChatRequest:
    model: Model
    messages: list
    n: int
    temperature: float
    seed: int | None
    max_tokens: int | None
    top_logprobs: int | None
    prompt_tokens: int

    @property
    def limit_tokens(self) -> int:
        """What the request counts against a TPM limit: prompt estimate + max_tokens x n."""
        return self.prompt_tokens + (self.max_tokens or DEFAULT_MAX_TOKENS_ESTIMATE) * self.n


def _int(body: dict, key: str, lo: int, hi: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(
            f"Invalid type for '{key}': expected an integer, but got {type(value).__name__} instead.",
            param=key,
            code="invalid_type",
        )
    if value < lo:
        raise invalid(
            f"Invalid '{key}': integer below minimum value. Expected a value >= {lo}, but got "
            f"{value} instead.",
            param=key,
            code="integer_below_min_value",
        )
    if hi is not None and value > hi:
        raise invalid(
            f"Invalid '{key}': integer above maximum value. Expected a value <= {hi}, but got "
            f"{value} instead.",
            param=key,
            code="integer_above_max_value",
        )
    return value


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def parse_chat(world: World, body: object) -> ChatRequest:
    if not isinstance(body, dict):
        raise invalid(
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload."
        )
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise invalid("you must provide a model parameter")
    messages = body.get("messages")
    if messages is None:
        raise invalid(
            "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
        )
    if not isinstance(messages, list):
        raise invalid(
            "Invalid type for 'messages': expected an array.", param="messages", code="invalid_type"
        )
    if not messages:
        raise invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
            "empty array instead.",
            param="messages",
            code="empty_array",
        )
    prompt_tokens = 3
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            raise invalid(
                f"Invalid value for 'messages[{i}].role': expected one of {', '.join(sorted(_ROLES))}.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
        prompt_tokens += estimate_tokens(_content_text(msg.get("content"))) + 4
    if body.get("stream"):
        raise invalid(
            "The sandbox does not stream; send stream=false.", param="stream", code="unsupported_value"
        )
    n = _int(body, "n", 1, 128) or 1
    temperature = body.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
        raise invalid(
            "Invalid type for 'temperature': expected a decimal.", param="temperature", code="invalid_type"
        )
    if not 0 <= temperature <= 2:
        raise invalid(
            f"Invalid 'temperature': decimal out of range. Expected a value between 0 and 2, but got "
            f"{temperature} instead.",
            param="temperature",
            code="decimal_out_of_range",
        )
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise invalid("Invalid type for 'seed': expected an integer.", param="seed", code="invalid_type")
    max_tokens = _int(body, "max_completion_tokens", 1, None)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1, None)
    logprobs = body.get("logprobs")
    top = _int(body, "top_logprobs", 0, 20)
    if top is not None and not logprobs:
        raise invalid(
            "Invalid value for 'top_logprobs': logprobs must be set to true when top_logprobs is given.",
            param="top_logprobs",
            code="invalid_value",
        )
    top_logprobs = (top or 0) if logprobs else None
    model = world.resolve(model_id)
    if model is None:
        raise model_not_found(model_id)
    return ChatRequest(model, messages, n, float(temperature), seed, max_tokens, top_logprobs, prompt_tokens)


def complete(world: World, req: ChatRequest) -> tuple[dict, int]:
    """(response body, completion tokens)."""
    answers, digest = world.complete(
        req.model, req.messages, req.temperature, req.seed, req.n, req.max_tokens, req.top_logprobs
    )
    choices = []
    completion_tokens = 0
    for j, a in enumerate(answers):
        completion_tokens += a.tokens
        choices.append(
            {
                "index": j,
                "message": {"role": "assistant", "content": a.text, "refusal": None, "annotations": []},
                "logprobs": None if a.logprobs is None else {"content": a.logprobs, "refusal": None},
                "finish_reason": a.finish_reason,
            }
        )
    body = {
        "id": "chatcmpl-" + digest,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.model.id,
        "choices": choices,
        "usage": {
            "prompt_tokens": req.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": req.prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_sandbox",
    }
    return body, completion_tokens


def run_chat(world: World, body: object) -> tuple[int, dict, int, int]:
    """A whole request without limits or faults (batches): (status, body, prompt, completion tokens)."""
    try:
        req = parse_chat(world, body)
        out, ctoks = complete(world, req)
        return 200, out, req.prompt_tokens, ctoks
    except APIError as err:
        return err.status, err.body(), 0, 0
