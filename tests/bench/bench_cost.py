"""Benchmark: the cost levers, from the plan alone (run by hand, not by pytest; no network).

    .venv/bin/python tests/bench/bench_cost.py [--quick] [--studies demo,paper]

For the demo and paper studies, compiles the plan four ways: one sample per request or up to 16
packed into one request with ``n`` (``scheduler.max_n``), and the probes' sampling mode or their
logprob mode (``probes.<set>.logprobs``: one call with ``max_tokens=1`` reads the whole answer
distribution of a one-token question). Prints requests and billed prompt tokens (sampling and
judging, as ``engine plan`` counts them: the prompt is billed once per request) and the estimated
cost, each beside the baseline (max_n=1, sampling), and appends one JSON line to
tests/bench/results.jsonl. There is no target: these figures say what each lever saves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import BenchError, Figure, fail, report  # noqa: E402

STUDIES = {"demo": ["experiment=demo"], "paper": ["experiment=paper"]}
VARIANTS = [("max_n=1, sampling", 1, False), ("max_n=16, sampling", 16, False),
            ("max_n=1, logprob", 1, True), ("max_n=16, logprob", 16, True)]


def measure(overrides: list[str], max_n: int, logprobs: bool) -> dict[str, float]:
    from engine.config.load import load_config
    from engine.plan.compile import compile_plan
    from engine.plan.cost import Estimate, group_estimate, judge_estimate

    probe_sets = load_config(overrides).probes
    extra = [f"scheduler.max_n={max_n}"] + [f"probes.{p}.logprobs={str(logprobs).lower()}" for p in probe_sets]
    plan = compile_plan(load_config([*overrides, *extra]))
    sample, judge = Estimate(), Estimate()
    for g in plan.groups:
        sample.add(group_estimate(plan, g, max_n))
        judge.add(judge_estimate(plan, g))
    return {"samples": plan.n_samples, "sample_requests": sample.requests, "judge_requests": judge.requests,
            "requests": sample.requests + judge.requests, "prompt_tokens": sample.prompt_tokens + judge.prompt_tokens,
            "completion_tokens": sample.completion_tokens + judge.completion_tokens, "usd": sample.usd + judge.usd}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the demo study only")
    ap.add_argument("--studies", default="demo,paper", help="comma-separated: demo, paper")
    args = ap.parse_args()
    names = ["demo"] if args.quick else [s.strip() for s in args.studies.split(",") if s.strip()]
    unknown = [n for n in names if n not in STUDIES]
    if unknown or not names:
        fail(f"unknown study {', '.join(unknown) or '(none)'}; choose from {', '.join(STUDIES)}")
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for name in names:
            results[name] = {label: measure(STUDIES[name], n, lp) for label, n, lp in VARIANTS}
    except BenchError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a study that does not compile cannot be measured
        fail(f"{type(exc).__name__}: {exc}")
    figures: list[Figure] = []
    for name, by_variant in results.items():
        base = by_variant[VARIANTS[0][0]]
        if not base["requests"] or not base["prompt_tokens"]:
            fail(f"the {name} study plans no requests")
        print(f"\n{name}: {'variant':<20} {'samples':>9} {'requests':>9} {'(judge)':>8} {'billed prompt tok':>18} "
              f"{'completion tok':>15} {'est $':>9}")
        for label, r in by_variant.items():
            print(f"{'':<{len(name) + 2}}{label:<20} {r['samples']:>9,} {r['requests']:>9,} {r['judge_requests']:>8,} "
                  f"{r['prompt_tokens']:>18,} {r['completion_tokens']:>15,} {r['usd']:>9.2f}")
        for label, r in by_variant.items():
            figures.append(Figure(f"{name} {label}: requests", float(r["requests"]), None, fmt="{:,.0f}"))
            figures.append(Figure(f"{name} {label}: billed prompt tokens", float(r["prompt_tokens"]), None,
                                  fmt="{:,.0f}"))
            if label != VARIANTS[0][0]:
                figures.append(Figure(f"{name} {label}: requests ÷ baseline", r["requests"] / base["requests"], None))
                figures.append(Figure(f"{name} {label}: prompt tokens ÷ baseline",
                                      r["prompt_tokens"] / base["prompt_tokens"], None))
    report("cost_levers", figures, {"studies": results},
           title="Cost levers (baseline: max_n=1, sampling; judge requests included, one per judged sample)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
