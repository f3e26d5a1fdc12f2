"""Plan diff: which nodes (model states, fine-tunes, sample groups) two runs share.

Each run's plan is recompiled from the config in its manifest (no network), and the recompiled
plan is trusted only if its plan key equals the one the run recorded. Otherwise (specs changed
since, a URL dataset not in the cache, a relative path from another directory) both sides fall
back to the keys in their tables (models.state_key, samples.group_key), and the diff says so;
fine-tunes have no key in the tables and are then not compared.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from engine.diff.inputs import RunData

STATE, FINETUNE, GROUP = "state", "finetune", "group"
NODE_KINDS = (STATE, FINETUNE, GROUP)
SHARED, ONLY_A, ONLY_B = "shared", "only_a", "only_b"
SIDES = (SHARED, ONLY_A, ONLY_B)
RECOMPILED, TABLES = "recompiled", "tables"


@dataclass(frozen=True)
class Nodes:
    """A run's plan nodes: key → (state label, probe set or None), per kind."""

    source: str
    """recompiled | tables."""
    by_kind: dict[str, dict[str, tuple[str, str | None]]]
    note: str | None = None
    """Why the plan was not recompiled (tables source)."""


@dataclass(frozen=True)
class PlanRow:
    node: str
    side: str
    state: str
    probe_set: str | None
    count: int


@dataclass(frozen=True)
class PlanDiff:
    source: str
    rows: list[PlanRow]
    kinds: tuple[str, ...]
    """Node kinds compared (fine-tunes are missing from a tables comparison)."""
    notes: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, dict[str, int]]:
        """kind → side → number of nodes."""
        out = {k: dict.fromkeys(SIDES, 0) for k in self.kinds}
        for r in self.rows:
            out[r.node][r.side] += r.count
        return out

    def labels(self, node: str, side: str) -> list[str]:
        """State labels of the nodes of a kind on a side, in first-seen order."""
        return list(dict.fromkeys(r.state for r in self.rows if r.node == node and r.side == side))


def recompiled_nodes(config: dict[str, Any], plan_key: str | None) -> Nodes:
    """The run's plan recompiled from its manifest config; raises ValueError when it cannot be."""
    from omegaconf import OmegaConf

    from engine.config.load import to_typed
    from engine.config.schema import EngineConfig
    from engine.plan import compile_plan

    try:
        merged = OmegaConf.merge(OmegaConf.structured(EngineConfig), OmegaConf.create(config))
        plan = compile_plan(to_typed(merged))  # type: ignore[arg-type]
    except Exception as exc:  # any failure (config, specs, data) means: compare the tables instead
        raise ValueError(_first_line(str(exc)) or type(exc).__name__) from None
    if plan_key is not None and plan.plan_key != plan_key:
        raise ValueError("the recompiled plan differs from the one the run recorded (specs or data changed?)")
    label = {k: s.label for k, s in plan.states.items()}
    return Nodes(RECOMPILED, {
        STATE: {k: (s.label, None) for k, s in plan.states.items()},
        FINETUNE: {s.finetune: (s.label, None) for s in plan.states.values() if s.finetune},
        GROUP: {g.key: (label[g.state], g.probe_set) for g in plan.groups},
    })


def table_nodes(run: RunData, note: str | None = None) -> Nodes:
    """Plan nodes as recorded in a run's tables (states and sample groups only)."""
    states: dict[str, tuple[str, str | None]] = {
        k: (s, None) for k, s in run.models.select("state_key", "state").iter_rows()}
    groups: dict[str, tuple[str, str | None]] = {k: (s, p) for k, s, p in run.samples.select(
        "group_key", "state", "probe_set").unique("group_key", keep="first").iter_rows()}
    return Nodes(TABLES, {STATE: states, GROUP: groups}, note)


def run_nodes(a: RunData, b: RunData) -> tuple[Nodes, Nodes]:
    """Both runs' nodes from the same source: recompiled if both recompile, else both tables."""
    notes = []
    nodes = []
    for name, run in (("A", a), ("B", b)):
        try:
            nodes.append(recompiled_nodes(run.config, run.manifest.get("plan_key")))
        except ValueError as exc:
            notes.append(f"{name}: plan not recompiled: {exc}")
    if not notes:
        return nodes[0], nodes[1]
    note = "; ".join(notes)
    return table_nodes(a, note), table_nodes(b, note)


def diff_nodes(a: Nodes, b: Nodes) -> PlanDiff:
    """Shared / only-A / only-B node counts per kind × state label (× probe set for groups)."""
    kinds = tuple(k for k in NODE_KINDS if k in a.by_kind and k in b.by_kind)
    rows: list[PlanRow] = []
    for kind in kinds:
        na, nb = a.by_kind[kind], b.by_kind[kind]
        counts: Counter[tuple[str, str, str | None]] = Counter()
        for key, (state, probe_set) in na.items():
            counts[(SHARED if key in nb else ONLY_A, state, probe_set)] += 1
        for key, (state, probe_set) in nb.items():
            if key not in na:
                counts[(ONLY_B, state, probe_set)] += 1
        rows += [PlanRow(kind, side, state, ps, n) for (side, state, ps), n in counts.items()]
    notes = [n for n in dict.fromkeys([a.note, b.note]) if n]
    if a.source == TABLES:
        notes.append("compared the keys in the tables (models.state_key, samples.group_key); "
                     "fine-tunes not compared")
    return PlanDiff(a.source, rows, kinds, notes)


def diff_plan(a: RunData, b: RunData) -> PlanDiff:
    na, nb = run_nodes(a, b)
    return diff_nodes(na, nb)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
