"""Benchmark: throughput efficiency (run by hand, not by pytest).

    .venv/bin/python tests/bench/bench_throughput.py [--quick] [--requests 24000] [--latency-ms 100]
                                                      [--rpm 30000] [--concurrency 64]

A sampling workload (intentions probes on the base model, no fine-tunes, one sample per request)
runs through the engine against the sandbox in its own process with a fixed latency and an RPM
limit. The engine is told neither: it learns the limit from the ``x-ratelimit-*`` headers.

    efficiency = achieved requests/s ÷ min(concurrency ÷ latency, RPM ÷ 60)      target ≥ 0.95

Achieved requests/s counts the requests that succeeded over the wall time of ``execute`` (from
opening the provider to the last row written and the tables closed; compile is not included).
Prints the figures beside their targets and appends one JSON line to tests/bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import BenchError, Figure, SandboxProcess, engine_overrides, fail, quiet_logs, report  # noqa: E402

TARGET = 0.95
ITEMS_X_PARAPHRASES = 120
"""The intentions probe set: 60 scenarios × 2 paraphrases; samples per paraphrase scale the study."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller smoke run (4,800 requests)")
    ap.add_argument("--requests", type=int, default=24_000, help="requests wanted (rounded up to 120s)")
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument("--rpm", type=int, default=30_000)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    wanted = 4_800 if args.quick else args.requests
    samples = math.ceil(wanted / ITEMS_X_PARAPHRASES)

    from engine.config.load import load_config
    from engine.run.runner import complete_job, execute, prepare_job

    quiet_logs()
    world = [f"latency.mean_ms={args.latency_ms:g}", "latency.dist=fixed", f"limits.rpm={args.rpm}"]
    try:
        with SandboxProcess(world) as sb, tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
            work = Path(tmp)
            cfg = load_config(engine_overrides(
                sb.base_url, work, "probes=[intentions]", f"probes.intentions.samples={samples}",
                "sequence.order=[]", "scheduler.max_n=1", f"scheduler.concurrency={args.concurrency}"))
            job = prepare_job(cfg, work / "run")
            planned = job.plan.n_samples
            cpu0, sb_cpu0, t0 = time.process_time(), sb.cpu_s(), time.perf_counter()
            execution = execute([job])
            wall = time.perf_counter() - t0
            cpu, sb_cpu = time.process_time() - cpu0, sb.cpu_s() - sb_cpu0
            result = complete_job(job, execution)
            stats = sb.stats()
    except BenchError as exc:
        fail(str(exc))
    c = result.counters
    ok = c.samples_done - c.sample_errors - c.samples_cached
    if result.status != "completed" or ok != planned or c.samples_cached:
        fail(f"run {result.status}: {ok:,} of {planned:,} samples answered fresh "
             f"({c.sample_errors} errors, {c.samples_cached} cached)")
    achieved = ok / wall
    limit = min(args.concurrency / (args.latency_ms / 1000) if args.latency_ms > 0 else math.inf,
                args.rpm / 60 if args.rpm else math.inf)
    if not math.isfinite(limit):
        fail("no limit to compare with: give --latency-ms or --rpm")
    eff = achieved / limit
    figures = [
        Figure("throughput efficiency", eff, TARGET, "high"),
        Figure("achieved requests/s", achieved, None, fmt="{:,.1f}"),
        Figure("limit requests/s", limit, None, fmt="{:,.1f}"),
        Figure("requests", float(c.requests), None, fmt="{:,.0f}"),
        Figure("429s", float(c.rate_limited), None, fmt="{:,.0f}"),
        Figure("wall s", wall, None, fmt="{:,.2f}"),
        Figure("engine CPU ms/request", cpu / ok * 1000, None, fmt="{:,.3f}"),
        Figure("sandbox CPU ms/request", sb_cpu / ok * 1000, None, fmt="{:,.3f}"),
    ]
    passed = report("throughput", figures, {
        "requests": ok, "latency_ms": args.latency_ms, "rpm": args.rpm, "concurrency": args.concurrency,
        "wall_s": round(wall, 3), "quick": args.quick, "sandbox_limit_violations": stats.get("limit_violations"),
        "sandbox_429": stats.get("limit_429")},
        title=f"Throughput: {ok:,} sample requests, {args.latency_ms:g} ms latency, RPM {args.rpm:,}, "
              f"concurrency {args.concurrency}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
