"""Fault chaos: a study under heavy injected faults accounts for every planned unit exactly once.

    python tests/chaos/faults.py [--seed 1] [--workdir DIR] [--keep]

Phase 1, faults. The in-process sandbox injects, per request, 429s with retry-after (10%), 500s
and 503s (3% each), dropped connections and malformed bodies (2% each), and answers 2% of requests
only after 3 s while the client gives up after 1 s (timeouts); fine-tuning jobs fail at random
(50%); the engine retries a request at most 3 times. Two base models, each fine-tuned twice in a
chain, three probe sets, one judge. Checked: the run completes; every planned sample is in
samples.parquet exactly once (a response, or an error row with its reason), every judge request
and worst-of-k aggregate in scores.parquet exactly once, every model state once with a failed
fine-tune's descendants skipped; the store holds each answer once and no error; the sandbox saw
exactly the chat requests the engine counted (first attempts within the plan, plus retries:
nothing hidden); a rerun of the same command asks only for what failed.

Phase 2, limits. The same kind of study against a provider whose requests-per-minute and
tokens-per-minute limits bind (the engine could go ten times faster). Checked: every unit once,
the sandbox never admitted a request beyond its limits, and refused at most 2% for them.

Prints the counts. Loopback only. Exit code 0 when all hold.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

STUDY = [
    "models=[nano,mini]", "scheduler.progress=log", "analysis.report=false", "analysis.bootstrap=200",
    "probes.self_assessment.samples=8", "probes.self_assessment.paraphrases=2",
    "probes.intentions.samples=6", "probes.intentions.items=3",
    "probes.harmfulness.samples=4", "probes.harmfulness.items=8",
    "datasets.trivia_incorrect.limit=60", "datasets.trivia_correct.limit=60",
    "sandbox.finetune_seconds=1", "scheduler.poll_interval_s=0.1", "scheduler.poll_max_s=0.5",
    "scheduler.max_n=4", "scheduler.concurrency=32",
    "scheduler.backoff_base_s=0.05", "scheduler.backoff_max_s=1", "scheduler.max_retries=3",
    "sandbox.latency.dist=lognormal", "sandbox.latency.mean_ms=20",
]
FAULTS = [
    "sandbox.faults.rate_429=0.10", "sandbox.faults.rate_500=0.03", "sandbox.faults.rate_503=0.03",
    "sandbox.faults.drop=0.02", "sandbox.faults.malformed=0.02", "sandbox.faults.slow=0.02",
    "sandbox.faults.slow_s=3", "scheduler.request_timeout_s=1", "sandbox.faults.finetune_failure=0.5",
    "sandbox.limits.rpm=12000", "sandbox.limits.tpm=2000000",
]
LIMITS = [
    "sandbox.limits.rpm=1500", "sandbox.limits.tpm=400000", "probes.self_assessment.paraphrases=1",
    "probes.harmfulness.items=4", "sequence.order=[misalign]",
]
LIMIT_429_SHARE = 0.02
"""At most this share of requests may be refused for the provider's own limits (the engine paces)."""


def run(args: list[str], run_dir: Path, cwd: Path) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "engine", "run", *args, f"hydra.run.dir={run_dir}"],
                          cwd=cwd, capture_output=True, text=True, timeout=900)
    (run_dir.parent / f"{run_dir.name}.log").write_text(proc.stdout + proc.stderr)
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    return proc.returncode, manifest, time.monotonic() - started


def planned_requests(plan: Any) -> int:
    max_n = plan.config.scheduler.max_n
    return sum(-(-g.n // max_n) for g in plan.groups) + plan.n_judge_requests


class Study:
    """A finished run's tables, checked against its plan."""

    def __init__(self, plan: Any, run_dir: Path, store: Path, manifest: dict[str, Any]) -> None:
        self.plan, self.dir, self.manifest = plan, run_dir, manifest
        self.stats, self.counts = manifest["sandbox_stats"], manifest["counts"]
        self.problems: list[str] = []
        self.models = pl.read_parquet(run_dir / "models.parquet")
        self.samples = pl.read_parquet(run_dir / "samples.parquet")
        scores = pl.read_parquet(run_dir / "scores.parquet")
        self.judged = scores.filter((pl.col("source") == "judge") & (pl.col("level") == "sample"))
        self.parsed = scores.filter(pl.col("source") != "judge")
        self.worst = scores.filter(pl.col("level") == "worst_of_k")
        self.errors = self.samples.filter(pl.col("error").is_not_null())
        self.judge_errors = self.judged.filter(pl.col("status") == "error")
        self.unavailable = set(self.models.filter(pl.col("status").is_in(["failed", "skipped"]))["state"])
        self.planned = {g.sample_key(i) for g in plan.groups for i in range(g.n)}
        self.expected_judged = sum(len(g.judges) * g.n for g in plan.groups)
        self.expected_worst = sum(1 for g in plan.groups if g.aggregate == "worst_of_k"
                                  for r in g.judges if plan.judges[r].rubric.misaligned != "none")
        self.sent = self.stats["requests"].get("POST /v1/chat/completions", 0)
        self.limit_429 = self.stats["responses_429"]["rate_limit"]
        self._check(store)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.problems.append(what)

    def _check(self, store: Path) -> None:
        plan, models, samples, judged = self.plan, self.models, self.samples, self.judged
        self.check(sorted(models["state_key"]) == sorted(plan.states), "models: not every state exactly once")
        status = dict(zip(models["state_key"], models["status"], strict=True))
        for key, state in plan.states.items():
            if state.parent and status[state.parent] in ("failed", "skipped"):
                self.check(status[key] == "skipped", f"models: {state.label} ran though its parent did not")
            if status[key] in ("failed", "skipped"):
                error = models.filter(pl.col("state_key") == key)["error"][0]
                self.check(bool(error), f"models: {state.label} has no error")
        self.check(samples.height == len(self.planned) and set(samples["sample_key"]) == self.planned,
                   f"samples: {samples.height} rows for {len(self.planned)} planned samples")
        both_or_neither = samples["response"].is_null() != samples["error"].is_not_null()
        self.check(not both_or_neither.any(), "samples: a row with both or neither of response and error")
        self.check(bool((self.errors["error"].str.len_chars() > 0).all()),
                   "samples: an error row without a reason")
        self.check(judged.height == self.expected_judged == judged.select("sample_key", "rubric").n_unique(),
                   f"scores: {judged.height} judge rows for {self.expected_judged} planned")
        closed = samples.filter(pl.col("format") != "open").height
        self.check(self.parsed.height == closed == self.parsed["sample_key"].n_unique(),
                   "scores: closed-format samples not scored exactly once")
        self.check(self.worst.height == self.expected_worst,
                   f"scores: {self.worst.height} worst-of-k rows for {self.expected_worst}")
        with sqlite3.connect(store) as conn:
            n, distinct, nulls = conn.execute("SELECT count(*), count(DISTINCT key), "
                                              "coalesce(sum(response IS NULL), 0) FROM responses").fetchone()
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        answers = self.answered + judged.height - self.judge_errors.height
        self.check(n == distinct == answers and nulls == 0 and integrity == "ok",
                   f"store: {n} rows ({distinct} distinct, {nulls} empty) for {answers} answers; {integrity}")
        self.check(self.sent == self.counts["requests"],
                   f"requests: the sandbox saw {self.sent}, the engine counted {self.counts['requests']}")
        first = self.counts["requests"] - self.counts["retries"]
        self.check(first <= planned_requests(plan),
                   f"requests: {first} first attempts exceed the plan's {planned_requests(plan)}")
        self.check(self.stats["limit_violations"] == 0,
                   f"limits: the sandbox admitted {self.stats['limit_violations']} requests over its limits")
        self.check(self.limit_429 <= LIMIT_429_SHARE * self.sent,
                   f"limits: {self.limit_429} refusals for the provider's limits in {self.sent} requests")

    @property
    def answered(self) -> int:
        return self.samples.height - self.errors.height

    @property
    def exhausted(self) -> pl.DataFrame:
        return self.errors.filter(~pl.col("state").is_in(list(self.unavailable)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1, help="sandbox world seed (which requests fault)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the store and runs go")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    opts = ap.parse_args()
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="engine-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store.sqlite"
    args = [*STUDY, *FAULTS, f"sandbox.seed={opts.seed}", f"store.path={store}",
            f"store.cache_dir={work / 'cache'}"]

    from engine.config.load import load_config
    from engine.plan import compile_plan

    plan = compile_plan(load_config(args))
    print(f"fault chaos: seed {opts.seed}, work dir {work}", flush=True)
    print(f"phase 1, faults: {len(plan.states)} model states, {len(plan.finetunes)} fine-tunes, "
          f"{plan.n_samples} samples, {plan.n_judge_requests} judge requests, "
          f"{planned_requests(plan)} requests",
          flush=True)
    problems: list[str] = []
    code, manifest, took = run(args, work / "run", work)
    if code != 0 or not manifest:
        print(f"FAIL: the run exited {code}; see {work / 'run.log'}")
        return 1
    s = Study(plan, work / "run", store, manifest)
    faults = s.stats["faults"]
    s.check(all(faults[k] > 0 for k in ("rate_429", "rate_500", "rate_503", "drop", "malformed", "slow")),
            f"not every kind of fault was injected: {faults}")
    problems += [f"faults: {p}" for p in s.problems]

    code2, manifest2, took2 = run(args, work / "rerun", work)
    c2 = manifest2.get("counts", {})
    if code2 != 0:
        problems.append(f"rerun: exited {code2}; see {work / 'rerun.log'}")
    if c2.get("samples_cached", 0) < s.answered:
        problems.append(f"rerun: {c2.get('samples_cached')} samples from the store, {s.answered} "
                        "were answered")
    fresh = c2.get("requests", 0) - c2.get("retries", 0)
    failed_units = s.exhausted.height + s.judge_errors.height
    if fresh > failed_units:
        problems.append(f"rerun: {fresh} new requests for {failed_units} failed units")

    ft = manifest["finetunes"]
    reasons = (s.errors["error"].str.replace(r" \(after \d+ attempts\)$", "").str.slice(0, 60)
               .value_counts(sort=True))
    print(f"  run: completed in {took:.0f} s; fine-tunes: "
          f"{', '.join(f'{k} {v}' for k, v in sorted(ft.items()))}")
    print(f"  planned: {len(plan.states)} model states, {len(plan.finetunes)} fine-tunes, "
          f"{len(s.planned)} samples, {s.expected_judged} judge requests, {s.expected_worst} worst-of-k, "
          f"{planned_requests(plan)} requests")
    print(f"  results: {s.answered} samples, {s.judged.height - s.judge_errors.height} judge scores, "
          f"{s.worst.height} worst-of-k")
    print(f"  error rows: {s.errors.height} samples ({s.errors.height - s.exhausted.height} of states whose "
          f"fine-tune failed or was skipped, {s.exhausted.height} after exhausting retries), "
          f"{s.judge_errors.height} judge rows")
    for reason, n in reasons.iter_rows():
        print(f"    {n:>5} x {reason}")
    print(f"  requests: {s.sent} sent = {s.sent - s.counts['retries']} first attempts + "
          f"{s.counts['retries']} "
          f"retries (plan: {planned_requests(plan)}; first attempts of failed states are never sent)")
    print(f"  faults injected: 429 {faults['rate_429']}, 500 {faults['rate_500']}, 503 {faults['rate_503']}, "
          f"dropped {faults['drop']}, malformed {faults['malformed']}, timeouts {faults['slow']}; "
          f"fine-tunes failed {sum(1 for v in ft.values() if v == 'failed')} of {len(ft)} started")
    print(f"  429s seen by the engine {s.counts['rate_limited']} ({faults['rate_429']} injected, "
          f"{s.limit_429} "
          f"for the provider's limits); limit violations {s.stats['limit_violations']}")
    print(f"  rerun: completed in {took2:.0f} s; {c2.get('samples_cached', 0)} samples and "
          f"{c2.get('judge_cached', 0)} judge scores from the store; {fresh} new requests for {failed_units} "
          f"failed units")

    # phase 2: binding limits
    largs = [*STUDY, *LIMITS, f"store.path={work / 'limits.sqlite'}", f"store.cache_dir={work / 'cache'}"]
    lplan = compile_plan(load_config(largs))
    print(f"phase 2, limits (rpm 1500, tpm 400000): {lplan.n_samples} samples, "
          f"{lplan.n_judge_requests} judge "
          f"requests, {planned_requests(lplan)} requests", flush=True)
    code3, manifest3, took3 = run(largs, work / "limits", work)
    if code3 != 0 or not manifest3:
        problems.append(f"limits: the run exited {code3}; see {work / 'limits.log'}")
    else:
        lim = Study(lplan, work / "limits", work / "limits.sqlite", manifest3)
        problems += [f"limits: {p}" for p in lim.problems]
        if lim.errors.height:
            problems.append(f"limits: {lim.errors.height} error rows without any fault")
        rate = lim.sent / took3 * 60
        print(f"  run: completed in {took3:.0f} s; {lim.sent} requests ({rate:.0f}/min over the whole run, "
              f"startup included; limit 1500/min); {lim.stats['tokens']['total']} tokens; "
              f"429s for the limits {lim.limit_429} ({lim.limit_429 / max(lim.sent, 1):.2%}); "
              f"limit violations {lim.stats['limit_violations']}; error rows {lim.errors.height}")

    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        print(f"work dir kept: {work}")
        return 1
    print("OK: every planned unit exactly once, a result or an error row with its reason; nothing sent "
          "beyond the plan and its retries; limits respected")
    if not opts.keep and opts.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
