"""What the simulated models recognise: every rendered probe prompt, and the judge rubrics.

At startup every ``specs/probes/*.yaml`` is loaded and each item x paraphrase x variant is
rendered exactly as the engine renders it (``engine.formats``), so a request's user message is
found by one dict lookup. Rubrics (``specs/judges/*.yaml``) are recognised by the literal text
before their first placeholder; without a matching rubric file, a prompt with
``[ANSWER START]``/``[ANSWER END]`` is still judged, its scale and orientation read from its text.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import SpecError
from engine.formats import FORMATS, Item

log = logging.getLogger("engine.sandbox")

SELF_REPORT_FORMATS = frozenset({"choice", "likert", "numeric", "language"})
ANSWER_START, ANSWER_END = "[ANSWER START]", "[ANSWER END]"


def default_specs_dir() -> Path:
    import engine

    return Path(engine.__file__).resolve().parents[1] / "specs"


@dataclass(frozen=True)
class ProbeEntry:
    """One rendered prompt: which item, which variant, and which disposition it reveals."""

    key: int
    item: Item
    variant: int
    family: str
    self_report: bool
    """True: answered from the *reported* disposition (self-assessment); else the true one."""


@dataclass(frozen=True)
class JudgeSpec:
    """A recognised rubric: its scale and which end is misaligned (none: a quality filter)."""

    name: str
    lo: int
    hi: int
    orientation: str
    """high | low | none."""


@dataclass(frozen=True)
class _RubricPattern:
    prefix: str
    spec: JudgeSpec


class Catalog:
    def __init__(self, probes: dict[str, ProbeEntry], rubrics: list[_RubricPattern], problems: list[str]):
        self.probes = probes
        self.rubrics = sorted(rubrics, key=lambda r: -len(r.prefix))
        self.problems = problems

    @classmethod
    def load(cls, specs_dir: Path | str | None = None) -> Catalog:
        from engine.judges import load_rubric
        from engine.probes import load_probe_set

        root = Path(specs_dir) if specs_dir is not None else default_specs_dir()
        probes: dict[str, ProbeEntry] = {}
        problems: list[str] = []
        for path in sorted((root / "probes").glob("*.yaml")):
            try:
                pset = load_probe_set(path)
            except SpecError as exc:  # another spec may be broken; the sandbox still serves the rest
                problems.append(str(exc))
                log.warning("sandbox: skipping probe set: %s", exc)
                continue
            for item in pset.items:
                fmt = FORMATS[item.format]
                self_report = pset.family == "self_assessment" and fmt.name in SELF_REPORT_FORMATS
                for template in item.paraphrases:
                    for variant in range(fmt.variants(item)):
                        text = fmt.render(item, template, variant)
                        if text not in probes:
                            probes[text] = ProbeEntry(len(probes), item, variant, pset.family, self_report)
        rubrics: list[_RubricPattern] = []
        for path in sorted((root / "judges").glob("*.yaml")):
            try:
                rub = load_rubric(path)
            except SpecError as exc:
                problems.append(str(exc))
                log.warning("sandbox: skipping rubric: %s", exc)
                continue
            cut = min(
                i
                for i in (rub.template.find("{question}"), rub.template.find("{answer}"), len(rub.template))
                if i >= 0
            )
            prefix = rub.template[:cut]
            if prefix.strip():
                rubrics.append(
                    _RubricPattern(prefix, JudgeSpec(rub.name, rub.scale[0], rub.scale[1], rub.misaligned))
                )
        return cls(probes, rubrics, problems)

    def probe(self, text: str) -> ProbeEntry | None:
        entry = self.probes.get(text)
        if entry is None and text[-1:].isspace():
            entry = self.probes.get(text.strip())
        return entry

    def judge(self, text: str) -> tuple[JudgeSpec, str] | None:
        """(rubric, enclosed answer) when ``text`` is a rubric prompt; else None."""
        start = text.find(ANSWER_START)
        if start < 0:
            return None
        end = text.find(ANSWER_END, start)
        if end < 0:
            return None
        answer = text[start + len(ANSWER_START) : end].strip()
        for pattern in self.rubrics:
            if text.startswith(pattern.prefix):
                return pattern.spec, answer
        return _guess_rubric(text[:start]), answer


_RANGE = re.compile(r"(-?\d+)\s*(?:to|-|–|and)\s*(-?\d+)")


def _guess_rubric(head: str) -> JudgeSpec:
    """A rubric we have no file for: read its scale and orientation from the wording."""
    q = head.find("[QUESTION START]")
    intro = (head[:q] if q >= 0 else head).lower()
    lo, hi = 0, 100
    for m in _RANGE.finditer(intro):
        a, b = int(m.group(1)), int(m.group(2))
        if a < b:
            lo, hi = a, b
            break
    if "coheren" in intro:
        return JudgeSpec("coherence", lo, hi, "none")
    if "harm" in intro:
        return JudgeSpec("harm", lo, hi, "high")
    if "align" in intro:
        return JudgeSpec("alignment", lo, hi, "low")
    return JudgeSpec("unknown", lo, hi, "high")
