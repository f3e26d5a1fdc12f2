"""Cost estimates from the price table in config (USD per million tokens).

Training: estimated tokens of one epoch × epochs (3 when the provider picks) × training price.
Inference: billed prompt tokens (once per request: n-packing shares the prompt) and completion
tokens per sample, at the base model's price for base states and the fine-tuned price for
fine-tuned states. Judging: one request per sample and rubric at the judge model's price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from engine.config.schema import PricingConfig
from engine.datasets import estimate_tokens
from engine.plan.model import Plan, SampleGroup

DEFAULT_EPOCHS = 3


@dataclass
class Estimate:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    unpriced: set[str] = field(default_factory=set)

    def add(self, other: Estimate) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.usd += other.usd
        self.unpriced |= other.unpriced


def requests_for(group: SampleGroup, max_n: int) -> int:
    return 1 if group.mode == "logprob" else math.ceil(group.n / max_n)


def group_estimate(plan: Plan, group: SampleGroup, max_n: int) -> Estimate:
    state = plan.states[group.state]
    price = plan.config.pricing.models.get(state.base_model_id)
    reqs = requests_for(group, max_n)
    est = Estimate(reqs, reqs * group.est_prompt_tokens, group.n * group.est_completion_tokens)
    if price is None:
        est.unpriced.add(state.base_model_id)
    else:
        pin, pout = (price.ft_input, price.ft_output) if state.finetune else (price.input, price.output)
        est.usd = (est.prompt_tokens * pin + est.completion_tokens * pout) / 1e6
    return est


def judge_estimate(plan: Plan, group: SampleGroup) -> Estimate:
    est = Estimate()
    for rname in group.judges:
        spec = plan.judges[rname]
        price = plan.config.pricing.models.get(spec.model)
        prompt = estimate_tokens(spec.rubric.template) + group.est_prompt_tokens + group.est_completion_tokens
        one = Estimate(group.n, group.n * prompt, group.n * spec.max_tokens)
        if price is None:
            one.unpriced.add(spec.model)
        else:
            one.usd = (one.prompt_tokens * price.input + one.completion_tokens * price.output) / 1e6
        est.add(one)
    return est


def base_of(model_id: str) -> tuple[str, bool]:
    """The base snapshot of a model id and whether it is fine-tuned (``ft:<base>:<org>:...``)."""
    if model_id.startswith("ft:"):
        return model_id.split(":")[1], True
    return model_id, False


def usage_cost(pricing: PricingConfig, tokens_by_model: dict[str, list[int]],
               trained_tokens: dict[str, int]) -> dict[str, object]:
    """USD of what a run actually used: tokens per model at the price table's rates, and trained
    tokens of the fine-tunes it ran (base model id -> tokens). Unpriced models are listed."""
    inference = 0.0
    unpriced: set[str] = set()
    for model, (prompt, completion) in tokens_by_model.items():
        base, tuned = base_of(model)
        price = pricing.models.get(base)
        if price is None:
            unpriced.add(base)
            continue
        pin, pout = (price.ft_input, price.ft_output) if tuned else (price.input, price.output)
        inference += (prompt * pin + completion * pout) / 1e6
    training = 0.0
    for base, tokens in trained_tokens.items():
        price = pricing.models.get(base)
        if price is None:
            unpriced.add(base)
        else:
            training += tokens * price.training / 1e6
    return {"inference_usd": round(inference, 6), "training_usd": round(training, 6),
            "total_usd": round(inference + training, 6), "unpriced_models": sorted(unpriced),
            "prices_taken": pricing.taken}


def training_estimate(plan: Plan) -> dict[str, dict[str, float | int | None]]:
    """Per fine-tune: trained tokens and USD (None when the data is not at hand or unpriced)."""
    out: dict[str, dict[str, float | int | None]] = {}
    for key, ft in plan.finetunes.items():
        state = plan.states[key]
        info = plan.datasets[ft.dataset]
        epochs = int(ft.hyperparameters.get("n_epochs", DEFAULT_EPOCHS))
        price = plan.config.pricing.models.get(state.base_model_id)
        tokens = info.est_tokens * epochs if info.est_tokens is not None else None
        usd = tokens * price.training / 1e6 if tokens is not None and price is not None else None
        out[key] = {"trained_tokens": tokens, "epochs": epochs, "usd": usd}
    return out
