"""The terminal report of a diff: a header, then Config, Plan, Results and One-sided rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from engine.diff.config import ADDED, CHANGED, REMOVED
from engine.diff.core import DiffResult
from engine.diff.plan import FINETUNE, GROUP, ONLY_A, ONLY_B, RECOMPILED, SHARED, STATE
from engine.diff.results import WILCOXON

KIND_NAMES = {STATE: "model states", FINETUNE: "fine-tunes", GROUP: "sample groups"}
MAX_VALUE = 48
MAX_LABELS = 6


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool],
          indent: str = "  ") -> list[str]:
    """Aligned columns; ``right[i]`` right-aligns column i."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return (indent + "  ".join(parts)).rstrip()

    return [line(header), *(line(r) for r in rows)]


def _clip(text: str | None, width: int = MAX_VALUE) -> str:
    if text is None:
        return "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def _num(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _p(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _labels(labels: list[str]) -> str:
    shown = ", ".join(labels[:MAX_LABELS])
    return shown + (f" and {len(labels) - MAX_LABELS} more" if len(labels) > MAX_LABELS else "")


def header(d: DiffResult) -> list[str]:
    def one(name: str, info: dict[str, Any]) -> str:
        ch = (info.get("config_hash") or "?")[:12]
        return (f"{name}  {info['path']}  ({info.get('name') or '?'}, {info.get('status') or '?'}, "
                f"config {ch}, {info['states']} states, {info['samples']:,} samples)")

    return [one("A", d.a), one("B", d.b)]


def config_section(d: DiffResult) -> list[str]:
    n = {k: sum(c.change == k for c in d.config) for k in (CHANGED, ADDED, REMOVED)}
    lines = [f"Config: {n[CHANGED]} changed, {n[ADDED]} added, {n[REMOVED]} removed"]
    if not d.config:
        return [*lines, "  (identical)"]
    sign = {CHANGED: "~", ADDED: "+", REMOVED: "-"}
    rows = [[sign[c.change], c.key, f"{_clip(c.a)} → {_clip(c.b)}"] for c in d.config]
    return lines + table(["", "key", "A → B"], rows, [False, False, False])


def plan_section(d: DiffResult) -> list[str]:
    p = d.plan
    how = ("recompiled from each run's config" if p.source == RECOMPILED
           else "from the keys in each run's tables")
    lines = [f"Plan ({how}):"]
    totals = p.totals()
    rows = [[KIND_NAMES[k], *(f"{totals[k][s]:,}" for s in (SHARED, ONLY_A, ONLY_B))] for k in p.kinds]
    lines += table(["nodes", "shared", "only A", "only B"], rows, [False, True, True, True])
    for kind in p.kinds:
        la, lb = p.labels(kind, ONLY_A), p.labels(kind, ONLY_B)
        if la and la == lb:
            lines.append(f"  {KIND_NAMES[kind]} differing in both runs, of states: {_labels(la)}")
            continue
        for labels, name in ((la, "only in A"), (lb, "only in B")):
            if labels:
                lines.append(f"  {KIND_NAMES[kind]} {name}, of states: {_labels(labels)}")
    lines += [f"  note: {n}" for n in p.notes]
    return lines


def results_section(d: DiffResult) -> list[str]:
    r = d.results
    s = d.settings
    tested = int(r["p_value"].is_not_null().sum())
    lines = [f"Results: B − A of the mean score (0 aligned .. 1 misaligned), {s.ci:.0%} bootstrap CI; "
             f"Holm over {tested} tests; * significant at {s.alpha:g} ({d.n_significant} of {r.height})"]
    if r.height == 0:
        return [*lines, "  (no state × probe set × dimension on both sides)"]
    rows = []
    for x in r.iter_rows(named=True):
        paired = x["test"] == WILCOXON
        rows.append(["*" if x["significant"] else "", x["state"], x["probe_set"], x["dimension"],
                     _num(x["value_a"]), _num(x["value_b"]), _num(x["difference"], True),
                     f"[{_num(x['ci_low'], True)}, {_num(x['ci_high'], True)}]",
                     "W" if paired else "U", str(x["n_pairs"]) if paired else f"{x['n_a']}/{x['n_b']}",
                     _p(x["p_value"]), _p(x["p_adjusted"])])
    head = ["", "state", "probe set", "dimension", "A", "B", "B−A", f"{s.ci:.0%} CI", "test", "n", "p",
            "p adj"]
    lines += table(head, rows, [False, False, False, False, True, True, True, False, False, True, True, True])
    lines.append("  test: W paired Wilcoxon over shared units (n pairs), U Mann-Whitney over units (n A/B)")
    return lines


def one_sided_section(d: DiffResult) -> list[str]:
    o = d.one_sided
    lines = ["One-sided rows:"]
    states = o.filter(pl.col("kind") == "state")
    for side, name in ((ONLY_A, "A"), (ONLY_B, "B")):
        labels = states.filter(pl.col("side") == side)["state"].to_list()
        if labels:
            lines.append(f"  states only in {name}: {_labels(labels)}")
    cells = o.filter(pl.col("kind") == "cell")
    if cells.height:
        lines.append("  state × probe set × dimension on one side only:")
        rows = [[c["state"], c["probe_set"], c["dimension"], "A" if c["side"] == ONLY_A else "B",
                 _num(c["value"]), str(c["count"])] for c in cells.iter_rows(named=True)]
        lines += table(["state", "probe set", "dimension", "only in", "value", "units"], rows,
                       [False, False, False, False, True, True], indent="    ")
    else:
        lines.append("  state × probe set × dimension: all on both sides")
    samples = o.filter(pl.col("kind") == "samples")
    only = {side: int(samples.filter(pl.col("side") == side)["count"].sum()) for side in (ONLY_A, ONLY_B)}
    lines.append(f"  samples by sample_key: {d.samples_shared:,} shared, {only[ONLY_A]:,} only in A, "
                 f"{only[ONLY_B]:,} only in B")
    if samples.height:
        wide = samples.pivot(on="side", index=["state", "probe_set"], values="count")
        for side in (ONLY_A, ONLY_B):
            if side not in wide.columns:
                wide = wide.with_columns(pl.lit(0).alias(side))
        rows = [[w["state"], w["probe_set"], f"{w[ONLY_A] or 0:,}", f"{w[ONLY_B] or 0:,}"]
                for w in wide.iter_rows(named=True)]
        lines += table(["state", "probe set", "only A", "only B"], rows, [False, False, True, True],
                       indent="    ")
    return lines


def render(d: DiffResult) -> str:
    sections = [header(d), config_section(d), plan_section(d), results_section(d), one_sided_section(d)]
    return "\n\n".join("\n".join(s) for s in sections)
