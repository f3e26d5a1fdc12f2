"""Crash chaos: SIGKILL a study at random moments in every phase, resume it each time, and check
that nothing is lost, nothing is paid twice, and the result equals an uninterrupted run's.

    python tests/chaos/crashes.py [--kills 24] [--seed 0] [--workdir DIR] [--keep]

The provider is ``engine sandbox`` in its own process (one per cycle), so its counters outlive
every killed run. A cycle starts a study on a fresh store and sandbox and kills it again and
again, each time when the phase it aims at is under way (an upload, a fine-tune being created
or trained, sampling, judging, or the final writing of tables), or at a random moment, until a
run completes. Cycles repeat until at least ``--kills`` kills are done and every phase has been
hit twice (bounded: at most 8 cycles, 14 attempts each).

Checked, per cycle: the final run exits 0; its samples, scores, models and analysis tables equal
the uninterrupted reference run's; the store passes integrity_check and holds each response
once; the sandbox created exactly one job per fine-tune and one file per training set; no
attempt asked for more completions than were missing from the store when it started, and the
completing attempt asked for exactly the missing ones (so no finished sample was requested
again); the only extra completions served, compared with the reference, are those in flight or
not yet flushed to the store when a kill came. Loopback only. Exit code 0 when all hold.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from tests.reliability.helpers import FAKE_KEY, KEY_ENV, Sandbox, external, integrity  # noqa: E402

WORLD = ["finetune_seconds=0.8", "latency.dist=uniform", "latency.mean_ms=35", "latency.spread=0.45"]
STUDY = [
    "scheduler.poll_interval_s=0.05", "scheduler.poll_max_s=0.2", "scheduler.progress=log",
    "scheduler.concurrency=4", "scheduler.max_n=2", "analysis.report=false", "analysis.bootstrap=200",
    "probes.self_assessment.samples=8", "probes.self_assessment.paraphrases=1",
    "probes.intentions.samples=6", "probes.intentions.items=2",
    "probes.harmfulness.samples=4", "probes.harmfulness.items=6",
    "datasets.trivia_incorrect.limit=40", "datasets.trivia_correct.limit=40",
]
PHASES = ("upload", "fine-tune created", "fine-tune training", "sampling", "judging", "writing")
CONTENT = ["sample_key", "state", "probe_set", "item_id", "paraphrase", "variant", "sample_index", "response",
           "error", "model_id"]
SCORE_KEYS = ["sample_key", "rubric", "level", "state", "item_id", "paraphrase", "variant"]
ATTEMPT_TIMEOUT_S = 180
MAX_CYCLES = 8
MAX_ATTEMPTS = 14
POLL_S = 0.01


@dataclass
class Totals:
    samples: int
    judge: int
    finetunes: int
    datasets: int

    @property
    def units(self) -> int:
        return self.samples + self.judge


@dataclass
class Kill:
    cycle: int
    attempt: int
    target: str
    at_s: float
    phases: list[str]
    stored: int
    served: int
    lost: int


@dataclass
class CycleResult:
    kills: list[Kill] = field(default_factory=list)
    served: int = 0
    ok: bool = True
    problems: list[str] = field(default_factory=list)


def plan_totals(args: list[str]) -> Totals:
    from engine.config.load import load_config
    from engine.plan import compile_plan

    plan = compile_plan(load_config(args))
    return Totals(plan.n_samples, plan.n_judge_requests, len(plan.finetunes),
                  len({f.dataset_key for f in plan.finetunes.values()}))


class StoreWatch:
    """Read-only counts from the store while a run writes it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def counts(self) -> dict[str, int]:
        out = {"sample": 0, "judge": 0, "files": 0, "jobs_succeeded": 0}
        if not self.path.exists():
            return out
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=2) as conn:
                for kind, n in conn.execute("SELECT kind, count(*) FROM responses GROUP BY kind"):
                    out[kind] = n
                out["files"] = conn.execute("SELECT count(*) FROM files").fetchone()[0]
                out["jobs_succeeded"] = conn.execute(
                    "SELECT count(*) FROM jobs WHERE status='succeeded'").fetchone()[0]
        except sqlite3.Error:
            pass
        return out


def route(stats: dict, name: str) -> int:
    return int(stats["requests"].get(name, 0))


def possible(totals: Totals, stored: dict[str, int], sb: dict) -> list[str]:
    out = []
    if stored["files"] < totals.datasets and sb["files_created"] < totals.datasets:
        out.append("upload")
    if sb["jobs_created"] < totals.finetunes:
        out.append("fine-tune created")
    if stored["jobs_succeeded"] < totals.finetunes:
        out.append("fine-tune training")
    if stored["sample"] < totals.samples:
        out.append("sampling")
    if stored["judge"] < totals.judge:
        out.append("judging")
    out.append("writing")
    return out


def trigger(target: str, rng: random.Random, sb0: dict, st0: dict[str, int], totals: Totals):  # noqa: ANN201
    """A predicate over (sandbox stats, store counts, seconds since start, outputs being written)."""
    if target == "upload":
        return lambda s, st, t, w: route(s, "POST /v1/files") > route(sb0, "POST /v1/files")
    if target == "fine-tune created":
        name = "POST /v1/fine_tuning/jobs"
        return lambda s, st, t, w: route(s, name) > route(sb0, name)
    if target == "fine-tune training":
        polls = rng.randint(1, 6)
        name = "GET /v1/fine_tuning/jobs/{job_id}"
        return lambda s, st, t, w: route(s, name) >= route(sb0, name) + polls
    if target == "sampling":
        more = rng.randint(5, 120)
        return lambda s, st, t, w: st["sample"] >= min(totals.samples, st0["sample"] + more)
    if target == "judging":
        more = rng.randint(1, 10)
        return lambda s, st, t, w: st["judge"] >= min(totals.judge, st0["judge"] + more)
    if target == "writing":
        return lambda s, st, t, w: w
    at = rng.uniform(1.5, 9.0)  # "random": any moment of a run, startup included
    return lambda s, st, t, w: t >= at


def writing(run_dir: Path, since: float) -> bool:
    """The run is writing its outputs: a table, the manifest or the analysis was touched since ``since``."""
    try:
        return any(p.stat().st_mtime >= since for p in run_dir.iterdir()
                   if p.suffix in (".parquet", ".partial", ".json") or p.name.startswith(".manifest."))
    except OSError:
        return False


def observed(prev: dict, cur: dict, st_prev: dict[str, int], st: dict[str, int], totals: Totals,
             writes: bool) -> list[str]:
    """What was going on in the half second before the kill."""
    seen = []
    if route(cur, "POST /v1/files") > route(prev, "POST /v1/files") or route(cur, "GET /v1/files") > route(
            prev, "GET /v1/files"):
        seen.append("upload")
    if route(cur, "POST /v1/fine_tuning/jobs") > route(prev, "POST /v1/fine_tuning/jobs"):
        seen.append("fine-tune created")
    if route(cur, "GET /v1/fine_tuning/jobs/{job_id}") > route(prev, "GET /v1/fine_tuning/jobs/{job_id}"):
        seen.append("fine-tune training")
    if st["sample"] > st_prev["sample"]:
        seen.append("sampling")
    if st["judge"] > st_prev["judge"]:
        seen.append("judging")
    if writes:
        seen.append("writing")
    return seen or ["startup"]


def run_cycle(cycle: int, work: Path, args: list[str], totals: Totals, rng: random.Random,
              covered: Counter, ref: Path, ref_served: int, log) -> CycleResult:  # noqa: ANN001
    res = CycleResult()
    cdir = work / f"cycle-{cycle}"
    cdir.mkdir(parents=True)
    store = cdir / "store.sqlite"
    watch = StoreWatch(store)
    env = {**os.environ, KEY_ENV: FAKE_KEY, "PYTHONUNBUFFERED": "1"}
    with Sandbox(cdir / "sandbox", WORLD, log=cdir / "sandbox.log") as sb:
        cmd = [sys.executable, "-m", "engine", "run", *args, *external(sb.base_url), f"store.path={store}",
               f"store.cache_dir={cdir / 'cache'}", f"hydra.run.dir={cdir / 'run'}"]
        writing_kills = 0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            sb0, st0 = sb.stats(), watch.counts()
            missing = totals.units - st0["sample"] - st0["judge"]
            options = possible(totals, st0, sb0)
            if writing_kills >= 2:
                options = [o for o in options if o != "writing"]
            if attempt == MAX_ATTEMPTS or not options:
                target = "none"
            elif rng.random() < 0.2:
                target = "random"
            else:
                least = min(covered[o] for o in options)
                target = rng.choice([o for o in options if covered[o] == least])
            fire = trigger(target, rng, sb0, st0, totals) if target != "none" else (lambda s, st, t, w: False)
            with (cdir / f"attempt-{attempt}.log").open("w") as out:
                proc = subprocess.Popen(cmd, cwd=cdir, env=env, stdout=out, stderr=subprocess.STDOUT)
                started, wall = time.monotonic(), time.time()
                history = [(started, sb0, st0)]
                killed, phases = False, []
                while proc.poll() is None:
                    if time.monotonic() - started > ATTEMPT_TIMEOUT_S:
                        proc.kill()
                        proc.wait()
                        res.ok = False
                        res.problems.append(f"attempt {attempt} did not finish in {ATTEMPT_TIMEOUT_S} s")
                        return res
                    cur, st = sb.stats(), watch.counts()
                    now = time.monotonic()
                    writes = st["sample"] + st["judge"] >= totals.units and writing(cdir / "run", wall)
                    if fire(cur, st, now - started, writes):
                        jitter = rng.uniform(0, 0.3) if target == "writing" else rng.uniform(0, 0.02)
                        time.sleep(jitter)
                        if proc.poll() is None:
                            _, prev, st_prev = history[0]
                            phases = observed(prev, cur, st_prev, st, totals, writes)
                            os.kill(proc.pid, signal.SIGKILL)
                            killed = True
                        break
                    history = [h for h in history if h[0] >= now - 0.5] + [(now, cur, st)]
                    time.sleep(POLL_S)
                code = proc.wait()
                at = time.monotonic() - started
            time.sleep(0.2)  # requests the dead run left in flight finish at the sandbox
            sb1, st1 = sb.stats(), watch.counts()
            served = sb1["choices"] - sb0["choices"]
            res.served += served
            new = st1["sample"] + st1["judge"] - st0["sample"] - st0["judge"]
            if served > missing:
                res.problems.append(f"attempt {attempt} asked for {served} completions, only {missing} "
                                    "were missing")
            if killed:
                if target == "writing":
                    writing_kills += 1
                label = target if target in PHASES else "random"
                covered[label] += 1
                for p in set(phases) - {label}:
                    covered[f"seen:{p}"] += 1
                stored = st1["sample"] + st1["judge"]
                k = Kill(cycle, attempt, target, at, phases, stored, served, served - new)
                res.kills.append(k)
                log(f"  kill {cycle}.{attempt:<2} aimed at {target:<19} at {at:5.2f} s  under way: "
                    f"{', '.join(phases):<40} stored {k.stored:>4}/{totals.units}  served {served:>4}  "
                    f"lost {k.lost}")
                continue
            log(f"  run  {cycle}.{attempt:<2} completed (exit {code}) in {at:.1f} s before a kill aimed at "
                f"{target}; asked for {served} completions, {missing} were missing")
            if code != 0:
                res.ok = False
                res.problems.append(f"the completing run exited {code}; see "
                                    f"{cdir / f'attempt-{attempt}.log'}")
            elif served != missing:
                res.problems.append(f"the completing run asked for {served} completions, {missing} "
                                    "were missing")
            break
        else:
            res.problems.append("no attempt completed")
        final = sb.stats()
    res.problems += compare(ref, cdir / "run")
    if integrity(store) != "ok":
        res.problems.append("store integrity_check failed")
    with sqlite3.connect(store) as conn:
        n, distinct = conn.execute("SELECT count(*), count(DISTINCT key) FROM responses").fetchone()
    if not n == distinct == totals.units:
        res.problems.append(f"store holds {n} responses ({distinct} distinct), expected {totals.units}")
    if final["jobs_created"] != totals.finetunes:
        res.problems.append(f"sandbox created {final['jobs_created']} jobs for {totals.finetunes} fine-tunes")
    if final["files_created"] != totals.datasets:
        res.problems.append(f"sandbox received {final['files_created']} files for {totals.datasets} "
                            "training sets")
    leftovers = [p.name for p in (cdir / "run").iterdir() if p.name.endswith(".partial") or
                 p.name.startswith(".manifest.")]
    log(f"  cycle {cycle}: {len(res.kills)} kills; jobs created {final['jobs_created']}, "
        f"files {final['files_created']}, "
        f"completions served {res.served} (uninterrupted: {ref_served}, extra {res.served - ref_served}, "
        f"lost at kills {sum(k.lost for k in res.kills)}); temp files left by killed runs: {len(leftovers)}")
    res.ok = res.ok and not res.problems
    return res


def tables(run: Path) -> dict[str, pl.DataFrame]:
    out = {"samples": pl.read_parquet(run / "samples.parquet").select(CONTENT).sort("sample_key"),
           "scores": pl.read_parquet(run / "scores.parquet").drop("k").sort(SCORE_KEYS, nulls_last=True),
           "models": pl.read_parquet(run / "models.parquet").drop("training_cost_usd").sort("state")}
    if (run / "analysis.parquet").exists():
        df = pl.read_parquet(run / "analysis.parquet")
        keys = [c for c, t in df.schema.items() if not t.is_float()]
        out["analysis"] = df.sort(keys, nulls_last=True)
    return out


def same(name: str, a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Equal tables; the analysis's floats may differ in the last bits (rows arrive in another order)."""
    if name != "analysis" or a.shape != b.shape or a.columns != b.columns:
        return a.equals(b)
    for col in a.columns:
        x, y = a[col], b[col]
        if not x.dtype.is_float():
            if not x.equals(y):
                return False
            continue
        both_missing = (x.is_null() & y.is_null()) | (x.is_nan() & y.is_nan()).fill_null(False)
        close = ((x - y).abs() <= 1e-9 * (1 + x.abs())).fill_null(False)
        if not (both_missing | close).all():
            return False
    return True


def compare(ref: Path, run: Path) -> list[str]:
    try:
        a, b = tables(ref), tables(run)
    except OSError as exc:
        return [f"cannot read tables: {exc}"]
    return [f"{name} differs from the uninterrupted run" for name in a
            if name not in b or not same(name, a[name], b[name])]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=24, help="at least this many SIGKILLs (default 24)")
    ap.add_argument("--seed", type=int, default=None,
                    help="random seed of the kill schedule (default: random)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where stores and runs go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    opts = ap.parse_args()
    seed = opts.seed if opts.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="engine-crashes-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def log(text: str) -> None:
        print(text, flush=True)

    totals = plan_totals(STUDY)
    log(f"crash chaos: seed {seed}, work dir {work}")
    log(f"study: {totals.samples} samples, {totals.judge} judge requests, {totals.finetunes} fine-tunes, "
        f"{totals.datasets} training sets; sandbox {' '.join(WORLD)}")

    # the uninterrupted reference: its own sandbox and store
    rdir = work / "reference"
    rdir.mkdir()
    with Sandbox(rdir / "sandbox", WORLD, log=rdir / "sandbox.log") as sb:
        t = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "engine", "run", *STUDY, *external(sb.base_url),
                               f"store.path={rdir / 'store.sqlite'}", f"store.cache_dir={rdir / 'cache'}",
                               f"hydra.run.dir={rdir / 'run'}"], cwd=rdir, capture_output=True, text=True,
                              env={**os.environ, KEY_ENV: FAKE_KEY}, timeout=ATTEMPT_TIMEOUT_S)
        ref_stats = sb.stats()
    if proc.returncode != 0:
        log(f"FAIL: the reference run exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        return 1
    log(f"reference: completed in {time.monotonic() - t:.1f} s; {ref_stats['chat_completions']} chat "
        f"requests, {ref_stats['choices']} completions, {ref_stats['jobs_created']} jobs, "
        f"{ref_stats['files_created']} files")

    covered: Counter = Counter()
    results: list[CycleResult] = []
    for cycle in range(1, MAX_CYCLES + 1):
        kills = sum(len(r.kills) for r in results)
        if kills >= opts.kills and all(covered[p] >= 2 for p in PHASES):
            break
        log(f"cycle {cycle}:")
        results.append(run_cycle(cycle, work, STUDY, totals, rng, covered, rdir / "run", ref_stats["choices"],
                                 log))

    kills = [k for r in results for k in r.kills]
    problems = [f"cycle {i}: {p}" for i, r in enumerate(results, 1) for p in r.problems]
    if len(kills) < opts.kills:
        problems.append(f"only {len(kills)} kills (wanted {opts.kills})")
    missing = [p for p in PHASES if covered[p] == 0]
    if missing:
        problems.append(f"phases never hit: {', '.join(missing)}")
    served = sum(r.served for r in results)
    lost = sum(k.lost for k in kills)
    log("")
    log(f"SIGKILLs: {len(kills)} in {len(results)} cycles ({time.monotonic() - started:.0f} s)")
    log("  aimed at: " + ", ".join(f"{p} {covered[p]}" for p in (*PHASES, "random")))
    log("  also under way at a kill: " + (", ".join(f"{p} {covered[f'seen:{p}']}" for p in PHASES
                                                    if covered[f"seen:{p}"]) or "-"))
    log(f"  resumes after a kill: {len(kills)}")
    ref_total = ref_stats["choices"] * len(results)
    log(f"  completions served (choices): {served} over {len(results)} cycles; uninterrupted: "
        f"{ref_stats['choices']} per cycle = {ref_total}; extra {served - ref_total}, all of them in flight "
        f"or not yet flushed to the store at a kill (lost {lost}; at most "
        f"{max((k.lost for k in kills), default=0)} at one kill)")
    if served - ref_total != lost:
        problems.append(f"extra completions {served - ref_total} are not those lost at kills ({lost})")
    log("  tables equal to the uninterrupted run's: "
        f"{sum(1 for r in results if not any('differs' in p for p in r.problems))}/{len(results)} cycles")
    if problems:
        log("FAIL:\n  " + "\n  ".join(problems))
        log(f"work dir kept: {work}")
        return 1
    log("OK: every cycle's tables equal the uninterrupted run's; one job per fine-tune; no finished sample "
        "asked again")
    if not opts.keep and opts.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
