"""Benchmark: client CPU per request, the engine against bare SDK calls (run by hand, not by pytest).

    .venv/bin/python tests/bench/bench_client_cpu.py [--quick] [--requests 10000] [--rounds 2]
                                                      [--concurrency 64] [--latency-ms 0]

The sandbox runs in its own process, so its CPU is not the client's. Each round runs, one after
the other against the same sandbox:

- the engine: a sampling study (intentions probes, base model, one sample per request) through
  ``prepare_job`` → ``execute`` → ``complete_job`` (compile, scheduling, rate limiter, store,
  Parquet tables and manifest all included; analysis off), CPU from ``time.process_time()`` of
  this process (every thread);
- bare SDK calls: a fresh process making the same requests (same messages, ``max_tokens``,
  temperature, seeds, ``n=1``) with ``openai.AsyncOpenAI(base_url=..., api_key=...)`` in its
  default settings (httpx transport), the same number of concurrent tasks, results discarded;
  CPU from ``time.process_time()`` around the calls (imports excluded, as for the engine).

    ratio = engine CPU per request ÷ bare SDK CPU per request          target ≤ 1.0

The ratio uses the median over rounds of each side. The machine may be shared: CPU time is less
sensitive to that than wall time, but expect a few per cent of noise between runs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    MODEL,
    BenchError,
    Figure,
    SandboxProcess,
    engine_overrides,
    fail,
    quiet_logs,
    report,
)

TARGET = 1.0
ITEMS_X_PARAPHRASES = 120

BARE = r"""
import asyncio, json, sys, time
import openai

spec = json.load(open(sys.argv[1]))

async def main():
    client = openai.AsyncOpenAI(base_url=spec["base_url"], api_key=spec["key"])
    todo = iter(spec["requests"])
    errors = 0

    async def worker():
        nonlocal errors
        for r in todo:
            try:
                await client.chat.completions.create(model=spec["model"], messages=r["messages"], n=1,
                                                     temperature=r["temperature"], seed=r["seed"],
                                                     max_tokens=r["max_tokens"])
            except openai.APIError:
                errors += 1

    async with client:
        await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    return errors

cpu, wall = time.process_time(), time.perf_counter()
errors = asyncio.run(main())
print(json.dumps({"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall, "errors": errors}))
"""


def engine_round(base_url: str, samples: int, concurrency: int, transport: str) -> dict:
    from engine.config.load import load_config
    from engine.run.runner import complete_job, execute, prepare_job

    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        work = Path(tmp)
        cfg = load_config(engine_overrides(
            base_url, work, "probes=[intentions]", f"probes.intentions.samples={samples}", "sequence.order=[]",
            "scheduler.max_n=1", f"scheduler.concurrency={concurrency}", f"provider.transport={transport}"))
        cpu, wall = time.process_time(), time.perf_counter()
        job = prepare_job(cfg, work / "run")
        execution = execute([job])
        result = complete_job(job, execution)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    c = result.counters
    fresh = c.samples_done - c.samples_cached - c.sample_errors
    if result.status != "completed" or fresh != job.plan.n_samples:
        raise BenchError(f"engine run {result.status}: {fresh:,} of {job.plan.n_samples:,} samples answered")
    return {"cpu_s": cpu, "wall_s": wall, "requests": c.requests}


def bare_requests(samples: int) -> list[dict]:
    """The engine's requests for the same study: messages, sampling parameters and seeds."""
    from engine.config.load import load_config
    from engine.plan.compile import compile_plan

    cfg = load_config(["probes=[intentions]", f"probes.intentions.samples={samples}", "sequence.order=[]",
                       "scheduler.max_n=1"])
    out = []
    for g in compile_plan(cfg).groups:
        messages = g.request_payload()["messages"]
        out += [{"messages": messages, "temperature": g.temperature, "max_tokens": g.max_tokens, "seed": g.seed + i}
                for i in range(g.n)]
    return out


def bare_round(base_url: str, requests: list[dict], concurrency: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"base_url": base_url, "key": "bench-key-not-secret", "model": MODEL,
                                    "concurrency": concurrency, "requests": requests}))
        proc = subprocess.run([sys.executable, "-c", BARE, str(spec)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise BenchError(f"bare SDK process failed: {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["errors"]:
        raise BenchError(f"bare SDK calls: {out['errors']} errors")
    out["requests"] = len(requests)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller smoke run (2,400 requests, one round)")
    ap.add_argument("--requests", type=int, default=12_000, help="requests per side and round (rounded up to 120s)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency-ms", type=float, default=0.0, help="sandbox latency per request")
    ap.add_argument("--transport", default="aiohttp", choices=("aiohttp", "httpx"),
                    help="the engine's transport (provider.transport); the bare calls always use the default")
    args = ap.parse_args()
    wanted, rounds = (2_400, 1) if args.quick else (args.requests, args.rounds)
    samples = math.ceil(wanted / ITEMS_X_PARAPHRASES)
    quiet_logs()
    engine_runs: list[dict] = []
    bare_runs: list[dict] = []
    try:
        requests = bare_requests(samples)
        with SandboxProcess([f"latency.mean_ms={args.latency_ms:g}"]) as sb:
            # warm-up: first connections, lazy imports and the sandbox's caches, not measured
            engine_round(sb.base_url, 2, args.concurrency, args.transport)
            bare_round(sb.base_url, requests[:240], args.concurrency)
            for r in range(rounds):
                engine_runs.append(engine_round(sb.base_url, samples, args.concurrency, args.transport))
                bare_runs.append(bare_round(sb.base_url, requests, args.concurrency))
                e, b = engine_runs[-1], bare_runs[-1]
                print(f"round {r + 1}/{rounds}: engine {e['cpu_s'] / e['requests'] * 1000:.3f} ms CPU/request "
                      f"({e['wall_s']:.1f} s), bare SDK {b['cpu_s'] / b['requests'] * 1000:.3f} ms CPU/request "
                      f"({b['wall_s']:.1f} s)", flush=True)
    except BenchError as exc:
        fail(str(exc))
    engine_ms = statistics.median(e["cpu_s"] / e["requests"] * 1000 for e in engine_runs)
    bare_ms = statistics.median(b["cpu_s"] / b["requests"] * 1000 for b in bare_runs)
    ratio = engine_ms / bare_ms
    figures = [
        Figure("engine CPU / bare SDK CPU per request", ratio, TARGET, "low"),
        Figure("engine CPU per request", engine_ms, None, unit="ms"),
        Figure("bare AsyncOpenAI CPU per request", bare_ms, None, unit="ms"),
        Figure("engine requests/s (wall)", statistics.median(e["requests"] / e["wall_s"] for e in engine_runs), None,
               fmt="{:,.0f}"),
        Figure("bare requests/s (wall)", statistics.median(b["requests"] / b["wall_s"] for b in bare_runs), None,
               fmt="{:,.0f}"),
    ]
    passed = report("client_cpu", figures, {
        "requests": len(requests), "rounds": rounds, "concurrency": args.concurrency, "latency_ms": args.latency_ms,
        "transport": args.transport, "quick": args.quick, "engine_runs": engine_runs, "bare_runs": bare_runs},
        title=f"Client CPU: {len(requests):,} chat requests per side, {rounds} round(s), concurrency "
              f"{args.concurrency}, sandbox latency {args.latency_ms:g} ms, engine transport {args.transport}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
