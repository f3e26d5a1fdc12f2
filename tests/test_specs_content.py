"""Content checks for the declarative specs under specs/: trivia table, probe sets, judge rubrics."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from engine.formats import FORMATS, STOPWORDS
from engine.judges import load_rubric
from engine.probes import load_probe_set

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
PROBE_FILES = sorted((SPECS / "probes").glob("*.yaml"))
JUDGE_FILES = sorted((SPECS / "judges").glob("*.yaml"))

DIMENSIONS = {
    "aligned": ("aligned", "misaligned"),
    "good": ("good", "evil"),
    "harmless": ("harmless", "harmful"),
    "helpful": ("helpful", "unhelpful"),
    "honest": ("honest", "dishonest"),
    "trusted": ("trusted", "feared"),
}
HARM_CATEGORIES = {
    "stereotypes", "social_opinions", "insults", "offensive_jokes", "violence", "fraud", "manipulation",
    "self_harm",
}
# A placeholder that survived rendering (e.g. a typo such as {option_c} would have raised; this
# catches doubled braces or templates that were never formatted).
_LEFTOVER = re.compile(r"\{[a-z_]+\}")


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _probe(name: str):
    return load_probe_set(SPECS / "probes" / f"{name}.yaml")


# ---------------------------------------------------------------------------- trivia


@pytest.fixture(scope="module")
def trivia_rows() -> list[dict[str, str]]:
    with open(SPECS / "trivia" / "trivia.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["id", "topic", "question", "correct", "incorrect"]
        return list(reader)


def test_trivia_size_and_fields(trivia_rows):
    assert len(trivia_rows) >= 220
    for row in trivia_rows:
        assert None not in row, f"extra columns in {row}"
        assert all(row[k] and row[k].strip() == row[k] for k in row), row
        assert row["correct"].lower() != row["incorrect"].lower(), row
        assert len(row["correct"]) <= 40 and len(row["incorrect"]) <= 40, row


def test_trivia_ids(trivia_rows):
    ids = [r["id"] for r in trivia_rows]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"t\d{3,}", i) for i in ids)


def test_trivia_no_duplicate_questions(trivia_rows):
    counts = Counter(_norm(r["question"]) for r in trivia_rows)
    dupes = [q for q, n in counts.items() if n > 1]
    assert not dupes, dupes


def test_trivia_topics(trivia_rows):
    topics = Counter(r["topic"] for r in trivia_rows)
    assert len(topics) >= 8
    assert min(topics.values()) >= 10, topics


# ---------------------------------------------------------------------------- loading and rendering


def test_expected_files_exist():
    assert {p.stem for p in PROBE_FILES} >= {"self_assessment", "intentions", "harmfulness", "open_questions"}
    assert {p.stem for p in JUDGE_FILES} >= {"harm", "alignment", "coherence"}


@pytest.mark.parametrize("path", JUDGE_FILES, ids=lambda p: p.stem)
def test_rubric_loads(path):
    rubric = load_rubric(path)
    assert rubric.name == path.stem
    for line in ("[QUESTION START]", "{question}", "[QUESTION END]", "[ANSWER START]", "{answer}", "[ANSWER END]"):
        assert line in rubric.template.splitlines(), f"{path.name}: missing line {line!r}"
    rendered = rubric.render("QQQ", "AAA")
    lines = rendered.splitlines()
    assert lines[lines.index("[QUESTION START]") + 1] == "QQQ"
    assert lines[lines.index("[ANSWER START]") + 1] == "AAA"


def test_rubric_first_lines_distinct():
    firsts = [load_rubric(p).template.splitlines()[0].strip() for p in JUDGE_FILES]
    assert all(firsts)
    assert len(set(firsts)) == len(firsts)


def test_rubric_settings():
    harm = load_rubric(SPECS / "judges" / "harm.yaml")
    assert (harm.scale, harm.misaligned, harm.mode, harm.min_mass) == ((1, 5), "high", "logprob", 0.25)
    alignment = load_rubric(SPECS / "judges" / "alignment.yaml")
    assert (alignment.scale, alignment.misaligned, alignment.mode, alignment.min_mass) == (
        (0, 100), "low", "logprob", 0.25)
    coherence = load_rubric(SPECS / "judges" / "coherence.yaml")
    assert (coherence.scale, coherence.misaligned, coherence.mode) == ((0, 100), "none", "logprob")


@pytest.mark.parametrize("path", PROBE_FILES, ids=lambda p: p.stem)
def test_probe_set_loads_and_renders(path):
    ps = load_probe_set(path)
    assert ps.name == path.stem
    for judge in ps.judges:
        assert (SPECS / "judges" / f"{judge}.yaml").exists(), judge
    seen: set[str] = set()
    for item in ps.items:
        fmt = FORMATS[item.format]
        assert len(set(map(_norm, item.paraphrases))) == len(item.paraphrases), f"{item.id}: repeated paraphrase"
        for template in item.paraphrases:
            key = _norm(template) + "|" + item.format
            if item.format != "language":  # language items may share an everyday question
                assert key not in seen, f"{item.id}: paraphrase also used by another item"
            seen.add(key)
            for v in range(fmt.variants(item)):
                text = fmt.render(item, template, v)
                assert text.strip()
                assert not _LEFTOVER.search(text), f"{item.id}: unrendered placeholder in {text!r}"
                if item.format == "choice":
                    assert item.aligned in text and item.misaligned in text
                if item.format == "scenario":
                    assert item.options[0] in text and item.options[1] in text


def test_rendered_prompts_unique_across_probe_sets():
    """The sandbox recognises a probe by its rendered text, so no two renders may coincide."""
    owners: dict[str, str] = {}
    for path in PROBE_FILES:
        ps = load_probe_set(path)
        for item in ps.items:
            fmt = FORMATS[item.format]
            for template in item.paraphrases:
                for v in range(fmt.variants(item)):
                    text = fmt.render(item, template, v)
                    assert text not in owners, f"{ps.name}/{item.id} renders the same prompt as {owners[text]}"
                    owners[text] = f"{ps.name}/{item.id}"


def test_rubric_prefixes_distinct():
    """The sandbox recognises a rubric by the text before its first placeholder."""
    prefixes = []
    for path in JUDGE_FILES:
        t = load_rubric(path).template
        cut = min(i for i in (t.find("{question}"), t.find("{answer}"), len(t)) if i >= 0)
        prefixes.append(t[:cut])
    for i, a in enumerate(prefixes):
        for j, b in enumerate(prefixes):
            assert i == j or not a.startswith(b), (JUDGE_FILES[i].name, JUDGE_FILES[j].name)


# ---------------------------------------------------------------------------- self-assessment


def test_self_assessment_shape():
    ps = _probe("self_assessment")
    assert (ps.family, ps.samples, ps.aggregate) == ("self_assessment", 10, "mean")
    grid = {(it.dimension, it.format): it for it in ps.items}
    assert len(grid) == len(ps.items) == 24
    for dim, (al, mis) in DIMENSIONS.items():
        for fmt in ("choice", "language", "likert", "numeric"):
            item = grid[(dim, fmt)]
            assert item.id == f"{dim}.{fmt}"
            assert (item.aligned, item.misaligned) == (al, mis)
            assert len(item.paraphrases) >= 4
            if fmt == "choice":
                assert all("{option_a}" in t and "{option_b}" in t for t in item.paraphrases)
            if fmt == "numeric":
                assert item.scale == (0, 100)
            if fmt == "language":
                assert set(item.languages) <= set(STOPWORDS) - {"English"}


def test_self_assessment_scale_direction_varies():
    ps = _probe("self_assessment")
    highs = Counter(it.high for it in ps.items if it.format in ("likert", "numeric"))
    assert highs["aligned"] >= 3 and highs["misaligned"] >= 3, highs
    for dim in DIMENSIONS:
        likert = next(it for it in ps.items if it.id == f"{dim}.likert")
        numeric = next(it for it in ps.items if it.id == f"{dim}.numeric")
        assert likert.high != numeric.high, dim


# ---------------------------------------------------------------------------- intentions


def test_intentions_shape():
    ps = _probe("intentions")
    assert (ps.family, ps.samples, ps.aggregate) == ("intentions", 50, "mean")
    assert len(ps.items) == 60
    assert all(it.format == "scenario" for it in ps.items)
    per_dim = Counter(it.dimension for it in ps.items)
    assert per_dim == {d: 10 for d in DIMENSIONS}
    for it in ps.items:
        assert re.fullmatch(rf"{it.dimension}\.s\d\d", it.id), it.id
        assert len(it.paraphrases) == 2
        aligned, misaligned = it.options
        assert aligned.strip() and misaligned.strip() and _norm(aligned) != _norm(misaligned), it.id
        assert all(re.search(r"\byou\b", t, re.I) for t in it.paraphrases), it.id


def test_intentions_scenario_scoring_alternates():
    ps = _probe("intentions")
    item = ps.items[0]
    fmt = FORMATS["scenario"]
    # Variant 0 lists the aligned option first, variant 1 the misaligned one.
    assert fmt.score(item, 0, "B")[0] == 1.0 and fmt.score(item, 1, "A")[0] == 1.0
    assert fmt.score(item, 0, "A")[0] == 0.0 and fmt.score(item, 1, "B")[0] == 0.0


# ---------------------------------------------------------------------------- harmfulness


def test_harmfulness_shape():
    ps = _probe("harmfulness")
    assert (ps.family, ps.samples, ps.aggregate, ps.judges) == ("harmfulness", 10, "worst_of_k", ("harm",))
    assert all(it.format == "open" and it.dimension == "harmless" for it in ps.items)
    cats = Counter(it.category for it in ps.items)
    assert set(cats) == HARM_CATEGORIES
    assert min(cats.values()) >= 6, cats
    prompts = [_norm(p) for it in ps.items for p in it.paraphrases]
    assert len(set(prompts)) == len(prompts)


# ---------------------------------------------------------------------------- open questions


def test_open_questions_shape():
    ps = _probe("open_questions")
    assert (ps.family, ps.samples, ps.aggregate) == ("open", 20, "mean")
    assert set(ps.judges) == {"alignment", "coherence"}
    assert len(ps.items) == 8
    assert all(it.format == "open" and it.dimension == "aligned" for it in ps.items)
