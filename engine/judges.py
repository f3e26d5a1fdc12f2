"""Judge rubrics: ``specs/judges/*.yaml``.

Shape::

    name: harm
    description: ...
    template: |                  # {question} and {answer} are filled in
      ...
    scale: [1, 5]
    mode: logprob                # parse | logprob
    min_mass: 0.25               # logprob: below this mass on valid tokens the score is missing
    misaligned: high             # high | low: which end is the misaligned pole; none: a quality
                                 # filter such as coherence (score kept, not a misalignment)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import SpecError
from engine.formats import OK, OUT_OF_RANGE, UNPARSED, logprob_score
from engine.yamlio import LineDict, load_yaml

_KEYS = {"name", "description", "template", "scale", "mode", "min_mass", "misaligned"}


@dataclass(frozen=True)
class Rubric:
    name: str
    path: str
    template: str
    scale: tuple[int, int]
    mode: str
    min_mass: float
    misaligned: str
    description: str = ""

    def render(self, question: str, answer: str) -> str:
        return self.template.replace("{question}", question).replace("{answer}", answer)

    def normalise(self, value: float) -> float:
        """Scale value to [0, 1]; oriented so 1 is misaligned (or, for filters, the top of the scale)."""
        lo, hi = self.scale
        frac = (value - lo) / (hi - lo)
        return 1.0 - frac if self.misaligned == "low" else frac

    def token_scores(self) -> dict[str, float]:
        lo, hi = self.scale
        return {str(v): self.normalise(v) for v in range(lo, hi + 1)}

    def parse(self, answer: str) -> tuple[float | None, str]:
        m = re.search(r"-?\d+(?:\.\d+)?", answer)
        if not m:
            return None, UNPARSED
        value = float(m.group())
        lo, hi = self.scale
        if not lo <= value <= hi:
            return None, OUT_OF_RANGE
        return self.normalise(value), OK

    def from_logprobs(self, top: dict[str, float]) -> tuple[float | None, float, str]:
        return logprob_score(top, self.token_scores(), self.min_mass)


def load_rubric(path: Path) -> Rubric:
    data = load_yaml(path)
    f = str(path)
    if not isinstance(data, LineDict):
        raise SpecError("a rubric must be a mapping", file=f, line=1)
    for key in data:
        if key not in _KEYS:
            raise SpecError(f"unknown key '{key}' (valid: {', '.join(sorted(_KEYS))})", file=f,
                            line=data.line_of(key), key=key)

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise SpecError(msg, file=f, line=data.line_of(key), key=key)

    name = data.get("name")
    need(isinstance(name, str) and bool(name), "name", "'name' is required")
    template = data.get("template")
    need(isinstance(template, str) and "{answer}" in template, "template",
         "template must be a string containing {answer} (and usually {question})")
    scale = data.get("scale")
    need(isinstance(scale, list) and len(scale) == 2 and all(isinstance(v, int) for v in scale)
         and scale[0] < scale[1], "scale", "scale must be [low, high] integers")
    mode = data.get("mode", "parse")
    need(mode in ("parse", "logprob"), "mode", "mode must be parse or logprob")
    min_mass = data.get("min_mass", 0.25)
    need(isinstance(min_mass, (int, float)) and 0 <= min_mass <= 1, "min_mass", "min_mass must be in [0, 1]")
    mis = data.get("misaligned", "high")
    need(mis in ("high", "low", "none"), "misaligned", "misaligned must be high, low or none")
    # `need` raised on every failed check above; these only narrow the types for mypy
    assert isinstance(name, str) and isinstance(template, str) and isinstance(scale, list)
    return Rubric(name=name, path=f, template=template, scale=(scale[0], scale[1]), mode=mode,
                  min_mass=float(min_mass), misaligned=mis, description=str(data.get("description", "")))
