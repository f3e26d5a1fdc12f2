"""Benchmark: chat completions per second the sandbox serves (run by hand, not by pytest).

    .venv/bin/python tests/bench/bench_sandbox.py [--seconds 5] [--procs 1] [--concurrency 64]

The sandbox runs in this process (one uvicorn worker, zero latency, no limits, no faults); load
comes from ``--procs`` separate processes, each driving ``--concurrency`` aiohttp connections
with probe prompts (and n=1, seed, logprobs on a share of them). Prints the rate beside the target
and appends one JSON line to tests/bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import platform
import subprocess
import sys
import time
from pathlib import Path

TARGET_RPS = 1500
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))


def _prompts() -> list[str]:
    from engine.sandbox.catalog import Catalog

    prompts = list(Catalog.load().probes)[:200]
    return prompts or ["How are you today?"]


async def _drive(
    url: str, prompts: list[str], seconds: float, concurrency: int, warmup: float
) -> tuple[int, int, float]:
    import aiohttp

    ok = errors = 0
    start = time.perf_counter() + warmup
    stop = start + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(w: int) -> None:
            nonlocal ok, errors
            i = w
            while True:
                now = time.perf_counter()
                if now >= stop:
                    return
                body = {
                    "model": "gpt-4.1-nano-2025-04-14",
                    "messages": [{"role": "user", "content": prompts[i % len(prompts)]}],
                    "seed": i,
                    "max_tokens": 16,
                    "temperature": 1.0,
                }
                if i % 4 == 0:
                    body.update(logprobs=True, top_logprobs=5)
                i += concurrency
                async with session.post(
                    url + "/chat/completions", json=body, headers={"Authorization": "Bearer sandbox"}
                ) as resp:
                    await resp.read()
                    if now >= start:
                        if resp.status == 200:
                            ok += 1
                        else:
                            errors += 1

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return ok, errors, seconds


def _child(
    url: str, prompts: list[str], seconds: float, concurrency: int, warmup: float, q: mp.Queue
) -> None:
    q.put(asyncio.run(_drive(url, prompts, seconds, concurrency, warmup)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()

    from engine.sandbox.server import SandboxServer, _has

    prompts = _prompts()
    with SandboxServer({"latency": {"mean_ms": 0.0}}) as sb:
        q: mp.Queue = mp.get_context("spawn").Queue()
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(
                target=_child, args=(sb.base_url, prompts, args.seconds, args.concurrency, args.warmup, q)
            )
            for _ in range(args.procs)
        ]
        for p in procs:
            p.start()
        results = [q.get(timeout=args.seconds + args.warmup + 60) for _ in procs]
        for p in procs:
            p.join(10)
        stats = sb.stats()
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    rps = ok / args.seconds
    loop = "uvloop" if _has("uvloop") else "asyncio"
    http = "httptools" if _has("httptools") else "h11"
    print(
        f"sandbox: {rps:,.0f} chat completions/s (target >= {TARGET_RPS:,}) "
        f"[{args.procs} client process(es) x {args.concurrency} connections, {loop}, {http}, "
        f"{errors} errors, {stats['chat_completions']} served]"
    )
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    line = {
        "bench": "sandbox_chat",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "commit": commit,
        "rps": round(rps, 1),
        "target_rps": TARGET_RPS,
        "ok": ok,
        "errors": errors,
        "seconds": args.seconds,
        "procs": args.procs,
        "concurrency": args.concurrency,
        "loop": loop,
        "http": http,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    with open(HERE / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    return 0 if rps >= TARGET_RPS else 1


if __name__ == "__main__":
    sys.exit(main())
