"""Benchmark: a study of a million sample requests (run by hand, not by pytest; takes a while).

    .venv/bin/python tests/bench/bench_scale.py [--quick] [--samples 1000000] [--max-n 1]
                                                 [--work DIR] [--rerun-only]

The study: gpt-4.1, -mini and -nano, each misaligned then realigned on trivia (9 model states, 6
fine-tunes), the self-assessment and intentions probes with enough intentions samples for at
least ``--samples`` samples (1,001,160 by default), one sample per request (``--max-n 1``: a
million requests; 16 packs them into about 63,000). The sandbox runs in its own process with zero
latency and short answers. Each phase runs in a fresh child process, so its peak RSS is its own:

- fresh run: compile time (``compile_plan``, target ≤ 10 s), peak RSS of the whole run (target
  ≤ 1.5 GB, from ``ru_maxrss``), wall time and requests/s;
- cached rerun: the same study on the same store, every response already held; wall time of
  ``prepare_job`` + ``execute`` + ``complete_job`` (target ≤ 60 s) and zero requests.

``--work DIR`` keeps the store and run directories there (default: a temporary directory,
removed at the end); ``--rerun-only`` repeats only the cached rerun on a kept ``--work``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import BenchError, Figure, SandboxProcess, engine_overrides, fail, quiet_logs, report  # noqa: E402

COMPILE_TARGET_S = 10.0
RSS_TARGET_GB = 1.5
RERUN_TARGET_S = 60.0
STATES = 9
SELF_ASSESSMENT_SAMPLES = 1200
"""Per model state at its defaults; intentions adds 120 × samples per state."""


def study(samples: int, max_n: int) -> list[str]:
    per_state = math.ceil(samples / STATES) - SELF_ASSESSMENT_SAMPLES
    intentions = max(1, math.ceil(per_state / 120))
    return ["models=gpt41_family", "sequence=trivia", "probes=[self_assessment,intentions]",
            f"probes.intentions.samples={intentions}", f"scheduler.max_n={max_n}", "scheduler.concurrency=64",
            "scheduler.poll_interval_s=0.2", "scheduler.poll_max_s=0.5"]


def phase(base_url: str, work: Path, overrides: list[str], name: str) -> dict:
    """One run in this process (called in a child): timings, counts and peak RSS as JSON."""
    from engine.config.load import load_config
    from engine.plan.compile import compile_plan
    from engine.run.runner import complete_job, execute, prepare_job

    quiet_logs()
    cfg = load_config(engine_overrides(base_url, work, *overrides))
    t0 = time.perf_counter()
    plan = compile_plan(cfg)
    compile_s = time.perf_counter() - t0
    del plan
    t0 = time.perf_counter()
    job = prepare_job(cfg, work / name)
    execution = execute([job])
    result = complete_job(job, execution)
    wall = time.perf_counter() - t0
    c = result.counters
    return {"compile_s": compile_s, "wall_s": wall, "status": result.status, "samples": job.plan.n_samples,
            "samples_done": c.samples_done, "cached": c.samples_cached, "errors": c.sample_errors,
            "requests": c.requests, "finetunes": dict(c.finetune_status),
            "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def child(base_url: str, work: Path, overrides: list[str], name: str, timeout_s: float) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--base-url", base_url, "--work", str(work),
                           "--overrides", json.dumps(overrides)], capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise BenchError(f"{name} run failed: {proc.stderr.strip()[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["status"] != "completed" or out["samples_done"] != out["samples"] or out["errors"]:
        raise BenchError(f"{name} run {out['status']}: {out['samples_done']:,}/{out['samples']:,} samples, "
                         f"{out['errors']} errors")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smaller smoke run (100,000 samples)")
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--max-n", type=int, default=1)
    ap.add_argument("--work", default=None, help="keep the store and runs here")
    ap.add_argument("--rerun-only", action="store_true", help="only the cached rerun, on a kept --work")
    ap.add_argument("--timeout-s", type=float, default=3 * 3600)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--base-url", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--overrides", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(phase(args.base_url, Path(args.work), json.loads(args.overrides), args.child)))
        return 0
    samples = 100_000 if args.quick else args.samples
    overrides = study(samples, args.max_n)
    if args.rerun_only and not args.work:
        fail("--rerun-only needs the --work directory of an earlier run")
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="bench-scale-")
    work = Path(args.work or tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    world = ["latency.mean_ms=0", "finetune_seconds=1"]
    fresh = None
    try:
        # the store is namespaced by base URL: a rerun must reach the sandbox at the same address,
        # so the port of the first run is kept beside the store
        port_file = work / "sandbox_url"
        with SandboxProcess(world) as sb:
            base_url = sb.base_url
            if args.rerun_only:
                if not port_file.exists():
                    fail(f"no earlier run in {work}")
                base_url = port_file.read_text().strip()
            else:
                port_file.write_text(base_url)
                print(f"fresh run of about {samples:,} samples (max_n={args.max_n}) against {base_url} ...",
                      flush=True)
                fresh = child(base_url, work, overrides, "fresh", args.timeout_s)
                print(f"  {fresh['samples']:,} samples, {fresh['requests']:,} requests in {fresh['wall_s']:.0f} s "
                      f"({fresh['requests'] / fresh['wall_s']:,.0f} requests/s); compile {fresh['compile_s']:.2f} s; "
                      f"peak RSS {fresh['max_rss_kib'] / 2**20:.2f} GiB", flush=True)
            print("cached rerun ...", flush=True)
            cached = child(base_url, work, overrides, "cached", args.timeout_s)
            print(f"  {cached['samples']:,} samples ({cached['cached']:,} cached), {cached['requests']:,} requests "
                  f"in {cached['wall_s']:.1f} s; peak RSS {cached['max_rss_kib'] / 2**20:.2f} GiB", flush=True)
            if cached["requests"] or cached["cached"] != cached["samples"]:
                raise BenchError(f"the rerun was not fully cached: {cached['requests']:,} requests, "
                                 f"{cached['cached']:,} of {cached['samples']:,} cached")
    except (BenchError, subprocess.TimeoutExpired) as exc:
        fail(str(exc))
    finally:
        if tmp is not None:
            tmp.cleanup()
    src = fresh or cached
    figures = [
        Figure("compile time", src["compile_s"], COMPILE_TARGET_S, "low", "s", "{:,.2f}"),
        Figure("peak RSS, fresh run", fresh["max_rss_kib"] / 2**20 if fresh else None, RSS_TARGET_GB, "low", "GiB",
               "{:,.2f}"),
        Figure("cached rerun wall time", cached["wall_s"], RERUN_TARGET_S, "low", "s", "{:,.1f}"),
        Figure("samples", float(src["samples"]), None, fmt="{:,.0f}"),
        Figure("requests, fresh run", float(fresh["requests"]) if fresh else None, None, fmt="{:,.0f}"),
        Figure("fresh run wall time", fresh["wall_s"] if fresh else None, None, "low", "s", "{:,.0f}"),
        Figure("fresh run requests/s", fresh["requests"] / fresh["wall_s"] if fresh else None, None, fmt="{:,.0f}"),
        Figure("peak RSS, cached rerun", cached["max_rss_kib"] / 2**20, None, "low", "GiB", "{:,.2f}"),
    ]
    passed = report("scale", figures, {"samples": src["samples"], "max_n": args.max_n, "quick": args.quick,
                                       "fresh": fresh, "cached": cached, "overrides": overrides},
                    title=f"Scale: {src['samples']:,} samples, max_n={args.max_n}, zero latency")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
