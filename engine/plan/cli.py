"""``engine plan [--json] [overrides]``: what a study will run and cost, with no network call."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from engine.config.load import load_config
from engine.plan.compile import compile_plan
from engine.plan.model import Plan
from engine.plan.render import plan_to_dict, render_text


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    if any(a.startswith("-") for a in args):
        bad = next(a for a in args if a.startswith("-"))
        from engine.errors import ConfigError

        raise ConfigError(f"unknown option {bad!r}; usage: engine plan [--json] [key=value ...]")
    cfg = load_config(args)
    plan = compile_plan(cfg)
    reuse = _store_reuse(plan)
    if as_json:
        json.dump(plan_to_dict(plan, reuse), sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    else:
        print(render_text(plan, reuse))
    return 0


def _store_reuse(plan: Plan) -> dict[str, Any] | None:
    """What the store already holds for this plan (read-only; None when there is no store yet)."""
    try:
        from engine.run.store import reuse_summary
    except ImportError:
        return None
    return reuse_summary(plan)
