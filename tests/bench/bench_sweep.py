"""Benchmark: sweep makespan against the critical path (run by hand, not by pytest).

    .venv/bin/python tests/bench/bench_sweep.py [--quick] [--finetune-s 3] [--latency-ms 500]
                                                 [--concurrency 256]

A sweep of 6 jobs, ``seed=0,1,2`` × ``sequence.order=[misalign,realign],[realign,misalign]``: each job
is a chain of two fine-tunes (``--finetune-s`` each in the sandbox) with the self-assessment probes
(one paraphrase: 240 samples in 36 requests) on every model state (``--latency-ms`` per request).
The critical path is the lower bound of the makespan only while capacity is not: ``--concurrency``
must let the six last states' probes be in flight at once (6 × 36 ≤ 256), or the script refuses.
Each measurement gets a fresh sandbox process and a fresh store, and goes through the library
exactly as the launchers do:

- engine launcher (``hydra/launcher=engine``, the default for ``-m``): ``prepare_job`` for each of
  the 6 jobs, then one ``execute(jobs)``: one event loop, shared nodes once;
- basic launcher (``hydra/launcher=basic``): the jobs one after another, ``prepare_job`` then
  ``execute([job])`` each;
- the critical path: the longest chain's fine-tune durations (2 × ``--finetune-s``, as the sandbox
  runs them) plus its last state's probes alone (measured: the same probes of one model state,
  nothing else running). A single job alone is measured too, for reference.

    makespan ratio = engine-launcher makespan ÷ critical path          target ≤ 1.15

Makespans include compiling every job (not Hydra's composing of the configs). Fine-tune polling
is scaled with the fine-tunes' length as the defaults (2 s, backing off to 60 s) are to a 20-30
minute job: ``poll_interval_s`` = fine-tune/600, ``poll_max_s`` = fine-tune/30 (0.1 s for 3 s);
and ``scheduler.max_concurrent_jobs=6`` lets the six chains train at once (the default, 4,
would queue two of them: a provider's limit, not a scheduling cost).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import BenchError, Figure, SandboxProcess, engine_overrides, fail, quiet_logs, report  # noqa: E402

TARGET = 1.15
ORDERS = ["[misalign,realign]", "[realign,misalign]"]


def job_overrides(base_url: str, work: Path, args: argparse.Namespace, *extra: str) -> list[str]:
    return engine_overrides(
        base_url, work, "probes=[self_assessment]", "probes.self_assessment.paraphrases=1",
        f"scheduler.concurrency={args.concurrency}",
        "scheduler.max_concurrent_jobs=6", f"scheduler.poll_interval_s={max(0.02, args.finetune_s / 600):g}",
        f"scheduler.poll_max_s={args.finetune_s / 30:g}",
        "datasets.trivia_incorrect.limit=60", "datasets.trivia_correct.limit=60", *extra)


def sweep(args: argparse.Namespace) -> list[list[str]]:
    return [[f"seed={seed}", f"sequence.order={order}"] for seed in args.seeds for order in ORDERS]


def check(jobs: list, execution) -> None:
    from engine.run.runner import complete_job

    for job in jobs:
        result = complete_job(job, execution)
        c = result.counters
        failed = {k: v for k, v in c.finetune_status.items() if not v.startswith("succeeded")}
        if result.status != "completed" or c.sample_errors or failed or c.samples_done != job.plan.n_samples:
            raise BenchError(f"job {job.index} {result.status}: {c.samples_done:,}/{job.plan.n_samples:,} samples, "
                             f"{c.sample_errors} errors, fine-tunes {failed or 'ok'}")


def run_engine(world: list[str], args: argparse.Namespace) -> float:
    from engine.config.load import load_config
    from engine.run.runner import execute, prepare_job

    with SandboxProcess(world) as sb, tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        cfgs = [load_config(job_overrides(sb.base_url, work, args, *ov)) for ov in sweep(args)]
        t0 = time.perf_counter()
        jobs = [prepare_job(cfg, work / f"job{i}", i) for i, cfg in enumerate(cfgs)]
        execution = execute(jobs)
        makespan = time.perf_counter() - t0
        check(jobs, execution)
    return makespan


def run_basic(world: list[str], args: argparse.Namespace) -> float:
    from engine.config.load import load_config
    from engine.run.runner import execute, prepare_job

    with SandboxProcess(world) as sb, tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        cfgs = [load_config(job_overrides(sb.base_url, work, args, *ov)) for ov in sweep(args)]
        t0 = time.perf_counter()
        for i, cfg in enumerate(cfgs):
            job = prepare_job(cfg, work / f"job{i}", i)
            execution = execute([job])
            check([job], execution)
        return time.perf_counter() - t0


def run_alone(world: list[str], args: argparse.Namespace, *overrides: str) -> float:
    from engine.config.load import load_config
    from engine.run.runner import execute, prepare_job

    with SandboxProcess(world) as sb, tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        cfg = load_config(job_overrides(sb.base_url, work, args, *overrides))
        t0 = time.perf_counter()
        job = prepare_job(cfg, work / "job")
        execution = execute([job])
        elapsed = time.perf_counter() - t0
        check([job], execution)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter fine-tunes (2 s) and no basic-launcher run")
    ap.add_argument("--finetune-s", type=float, default=3.0, help="sandbox fine-tune duration")
    ap.add_argument("--latency-ms", type=float, default=500.0, help="sandbox latency per chat request")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3, help="engine sweeps and probe-alone runs (medians)")
    args = ap.parse_args()
    args.seeds = [0, 1, 2]
    if args.quick:
        args.finetune_s, args.repeat = 2.0, 1
    from engine.config.load import load_config
    from engine.plan.compile import compile_plan
    from engine.plan.cost import requests_for

    probe = compile_plan(load_config(job_overrides("http://127.0.0.1:1/v1", Path("."), args, "sequence.order=[]")))
    per_state = sum(requests_for(g, probe.config.scheduler.max_n) for g in probe.groups)
    if len(sweep(args)) * per_state > args.concurrency:
        fail(f"--concurrency {args.concurrency} cannot hold the six final states' {per_state} requests each at once: "
             "the sweep would be bound by capacity, not by the critical path")
    world = [f"finetune_seconds={args.finetune_s:g}", f"latency.mean_ms={args.latency_ms:g}", "latency.dist=fixed"]
    quiet_logs()
    try:
        alone = []
        for _ in range(args.repeat):
            alone.append(run_alone(world, args, "sequence.order=[]"))
            print(f"probes of one model state alone: {alone[-1]:.2f} s", flush=True)
        probes_alone = statistics.median(alone)
        single = run_alone(world, args, *sweep(args)[0])
        print(f"one job alone: {single:.2f} s", flush=True)
        engines = []
        for _ in range(args.repeat):
            engines.append(run_engine(world, args))
            print(f"engine launcher, 6 jobs: {engines[-1]:.2f} s", flush=True)
        engine = statistics.median(engines)
        basic = None if args.quick else run_basic(world, args)
        if basic is not None:
            print(f"basic launcher, 6 jobs: {basic:.2f} s", flush=True)
    except BenchError as exc:
        fail(str(exc))
    critical = 2 * args.finetune_s + probes_alone
    figures = [
        Figure("engine makespan ÷ critical path", engine / critical, TARGET, "low"),
        Figure("engine-launcher makespan", engine, None, unit="s", fmt="{:,.2f}"),
        Figure("basic-launcher makespan", basic, None, unit="s", fmt="{:,.2f}"),
        Figure("critical path (2 fine-tunes + probes)", critical, None, unit="s", fmt="{:,.2f}"),
        Figure("one job alone", single, None, unit="s", fmt="{:,.2f}"),
        Figure("engine makespan ÷ one job alone", engine / single, None),
    ]
    if basic is not None:
        figures.append(Figure("basic ÷ engine makespan", basic / engine, None))
    passed = report("sweep_makespan", figures, {
        "jobs": len(sweep(args)), "finetune_s": args.finetune_s, "latency_ms": args.latency_ms,
        "concurrency": args.concurrency, "requests_per_state": per_state,
        "engine_runs": engines, "alone_runs": alone, "probes_alone_s": round(probes_alone, 3),
        "quick": args.quick},
        title=f"Sweep makespan: 6 jobs (seed=0,1,2 × 2 stage orders), fine-tunes {args.finetune_s:g} s, "
              f"self-assessment probes ({per_state} requests per state) at {args.latency_ms:g} ms, "
              f"concurrency {args.concurrency}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
