"""Training data v2: labelled texts x question wordings -> training records.

``data/train_v2/`` holds texts of many domains, each labelled on several aspects
(``<domain>.jsonl``: ``{"id", "text", "labels": {aspect: answer}}``), and
``wordings.json``: for every question type (aspect) at least 15 wordings, and per domain
the nouns that fill a wording's ``{writer}`` and ``{piece}`` slots ("customer" / "email",
"reporter" / "article" ...). Every question type uses the same slots, so no such noun
tells the question type by itself. Coarse types list their closed answer set; a type's
``weight`` (default 1) multiplies how many wordings each of its (text, aspect) pairs gets
(topic questions are asked twice as often so that "customer" or "email" are no more
frequent with feeling questions than with topic ones).

``build_records`` pairs them deterministically: every (text, aspect) is asked in
``per_question`` wordings, each a record whose ``instructions`` holds every wording of the
type for wording augmentation, mixed with the free-form records of ``data/train``.
``list_options`` adds questions that list candidate answers ("Which continent is this
email about: Asia, Europe or Africa?"), the kind of wording the default answered worst
(issue 16): off by default, so a seed's records stay what they were.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from .io import read_records
from .training import QARecord, load_records

WORDINGS_FILE = "wordings.json"
SLOT = re.compile(r"\{(\w+)\}")
MIN_WORDINGS = 15
#: Questions that list the candidate answers, beside "<a wording of the type>: <options>?";
#: ``{options}`` is filled with 3-4 answers ("A, B or C"), the right one among them.
OPTION_WORDINGS = (
    "Pick one for this {piece}: {options}.",
    "{options}: which one fits this {piece}?",
    "Which of these applies to the {writer}'s {piece}: {options}?",
    "Answer with one of {options}.",
    "Is this {piece} about {options}?",
    "Is the {writer} writing about {options}?",
    "Does this {piece} concern {options}?",
)
#: Wordings in an option-listing record's augmentation pool (each is checked against the
#: held-out evaluation wordings, which makes a larger pool slow to build).
OPTION_POOL = 4


@dataclass(frozen=True)
class QuestionType:
    """An aspect one can ask about; ``answers`` is the closed set of a coarse type;
    ``groups`` maps each answer of an open type to its family ("furious" -> "anger"), if
    the type has families (every answer then needs one)."""

    name: str
    wordings: tuple[str, ...]
    answers: tuple[str, ...] = ()
    weight: int = 1
    groups: Mapping[str, str] = field(default_factory=dict)

    @property
    def coarse(self) -> bool:
        return bool(self.answers)

    def group_of(self, answer: str) -> str:
        """The family of ``answer`` ("" if the type has no families)."""
        return self.groups.get(answer.lower(), "")


@dataclass(frozen=True)
class LabelledText:
    id: str
    domain: str
    text: str
    labels: Mapping[str, str]


def shipped_folder() -> Path:
    return Path(str(resources.files("inbedder_retrieval.data").joinpath("train_v2")))


def _wordings_data(folder: Path) -> dict:
    path = folder / WORDINGS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg})") from None


def load_question_types(folder: str | Path | None = None) -> dict[str, QuestionType]:
    """The question types of ``wordings.json``; each needs >= 15 distinct wordings."""
    folder = Path(folder) if folder else shipped_folder()
    types = {}
    for name, entry in _wordings_data(folder)["question_types"].items():
        wordings = tuple(entry["wordings"])
        if len(set(wordings)) < MIN_WORDINGS:
            raise ValueError(f"{folder / WORDINGS_FILE}: question type {name!r} has {len(set(wordings))} distinct "
                             f"wordings, needs >= {MIN_WORDINGS}")
        types[name] = QuestionType(name, wordings, tuple(entry.get("answers", ())), int(entry.get("weight", 1)),
                                   _answer_groups(entry.get("contrast_groups", {}), f"{folder / WORDINGS_FILE}: {name!r}"))
    return types


def _answer_groups(families: Mapping[str, list[str]], where: str) -> dict[str, str]:
    """``{family: [answers]}`` as ``{answer: family}``; an answer in two families is refused."""
    groups: dict[str, str] = {}
    for family, answers in families.items():
        for answer in answers:
            if groups.setdefault(answer.lower(), family) != family:
                raise ValueError(f"{where}: answer {answer!r} is in families {groups[answer.lower()]!r} and {family!r}")
    return groups


def load_slots(folder: str | Path | None = None) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per domain, the nouns each wording slot is filled with."""
    folder = Path(folder) if folder else shipped_folder()
    return {domain: {slot: tuple(nouns) for slot, nouns in slots.items()}
            for domain, slots in _wordings_data(folder)["domains"].items()}


def load_texts(folder: str | Path | None = None) -> list[LabelledText]:
    """Every labelled text, checked: known aspects, coarse answers from their closed set,
    >= 3 aspects with distinct answers, unique ids; errors name the file and line."""
    folder = Path(folder) if folder else shipped_folder()
    types, slots = load_question_types(folder), load_slots(folder)
    texts, seen = [], set()
    for path in sorted(folder.glob("*.jsonl")):
        if path.stem not in slots:
            raise ValueError(f"{path}: domain {path.stem!r} has no slot nouns in {WORDINGS_FILE}")
        for number, record in read_records(path):
            where = f"{path}:{number}"
            if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not isinstance(record.get("labels"), dict):
                raise ValueError(f"{where}: expected {{'id', 'text', 'labels': {{aspect: answer}}}}")
            if record.get("id") in seen:
                raise ValueError(f"{where}: duplicate id {record.get('id')!r}")
            seen.add(record.get("id"))
            labels = record["labels"]
            for aspect, answer in labels.items():
                if aspect not in types:
                    raise ValueError(f"{where}: unknown aspect {aspect!r} (known: {', '.join(sorted(types))})")
                if not isinstance(answer, str) or not 1 <= len(answer.split()) <= 3:
                    raise ValueError(f"{where}: the answer for {aspect!r} must be 1-3 words, got {answer!r}")
                if types[aspect].coarse and answer not in types[aspect].answers:
                    raise ValueError(f"{where}: {answer!r} is not one of the {aspect!r} answers {types[aspect].answers}")
                if types[aspect].groups and not types[aspect].group_of(answer):
                    raise ValueError(f"{where}: {answer!r} is in none of the {aspect!r} answer families "
                                     f"({', '.join(sorted(set(types[aspect].groups.values())))}) of {WORDINGS_FILE}")
            if len({answer.lower() for answer in labels.values()}) < 3:
                raise ValueError(f"{where}: needs >= 3 aspects with different answers")
            texts.append(LabelledText(str(record["id"]), path.stem, record["text"], dict(labels)))
    return texts


def _check_slots(types: Mapping[str, QuestionType], slots: Mapping[str, Mapping[str, tuple[str, ...]]]) -> None:
    used = {slot for kind in types.values() for wording in kind.wordings for slot in SLOT.findall(wording)}
    for domain, nouns in slots.items():
        missing = used - {slot for slot, values in nouns.items() if values}
        if missing:
            raise ValueError(f"{WORDINGS_FILE}: domain {domain!r} has no nouns for the slots {sorted(missing)}")


def fill(wording: str, nouns: Mapping[str, tuple[str, ...]], rng: random.Random) -> str:
    """``wording`` with each ``{slot}`` replaced by one of the domain's nouns for it."""
    return SLOT.sub(lambda match: rng.choice(nouns[match.group(1)]), wording)


def build_records(
    folder: str | Path | None = None,
    *,
    seed: int = 0,
    per_question: int = 3,
    exclude: Callable[[str], bool] | None = None,
    free_form: bool = True,
    list_options: int = 0,
    options_skip: Collection[str] = (),
    contrast_groups: bool = False,
) -> list[QARecord]:
    """The v2 records, deterministic for a ``seed``: each (text, aspect) asked in
    ``per_question`` x the type's weight different wordings (slots filled with the domain's
    nouns), each record carrying all of the type's wordings (one filling each) as its
    augmentation pool and the aspect as its ``qtype``; plus the free-form records; shuffled.
    Wordings that nearly copy a held-out evaluation wording (``evaluation.unseen``) are
    always dropped, generated or free-form, so the unseen-wording evaluation stays unseen;
    ``exclude`` drops more (every wording for which it returns True). Both are asked once
    per distinct wording. ``list_options`` > 0 adds that many records per (text, aspect)
    whose question lists 3-4 candidate answers, the right one among them (other answers
    of the type's closed set, or of the same aspect in the same domain); drawn from their
    own random stream, so the other records are the same with or without them.
    ``options_skip`` names question types that get no such records (e.g. ``polarity``:
    listing "positive or negative" cost the sentiment fixture in issue 16's round 3); the
    other types' option records stay the same. ``contrast_groups`` sets each record's
    ``group`` to its answer's family where the type has families (``contrast_groups`` in
    ``wordings.json``: emotions), so the contrastive term treats "furious" and "annoyed"
    as positives; the records are otherwise the same."""
    from .evaluation.unseen import near_held_out

    if per_question < 1:
        raise ValueError(f"per_question must be >= 1, got {per_question}")
    if list_options < 0:
        raise ValueError(f"list_options must be >= 0, got {list_options}")

    @functools.cache
    def keep(wording: str) -> bool:
        return near_held_out(wording) is None and not (exclude and exclude(wording))

    folder = Path(folder) if folder else shipped_folder()
    types, slots = load_question_types(folder), load_slots(folder)
    _check_slots(types, slots)
    unknown = sorted(set(options_skip) - set(types))
    if unknown:
        raise ValueError(f"unknown question types in options_skip: {unknown}; known: {sorted(types)}")
    rng = random.Random(seed)
    records = []
    texts = load_texts(folder)
    for text in texts:
        for aspect, answer in text.labels.items():
            filled = dict.fromkeys(fill(wording, slots[text.domain], rng) for wording in types[aspect].wordings)
            pool = tuple(wording for wording in filled if keep(wording))
            for wording in rng.sample(pool, min(per_question * types[aspect].weight, len(pool))):
                records.append(QARecord(text.text, wording, answer, pool, aspect))
    if list_options:
        options = _option_records(texts, types, slots, list_options, random.Random(f"options:{seed}"), keep)
        records += [record for record in options if record.qtype not in options_skip]
    if contrast_groups:
        records = [replace(record, group=types[record.qtype].group_of(record.output)) if record.qtype else record
                   for record in records]
    if free_form:
        shipped = Path(str(resources.files("inbedder_retrieval.data").joinpath("train")))
        records += [record for record in load_records(shipped) if keep(record.instruction)]
    rng.shuffle(records)
    return records


def _option_records(texts: list[LabelledText], types: Mapping[str, QuestionType],
                    slots: Mapping[str, Mapping[str, tuple[str, ...]]], count: int, rng: random.Random,
                    keep: Callable[[str], bool]) -> list[QARecord]:
    """``count`` records per (text, aspect) whose question lists candidate answers; each
    record's augmentation pool is its question in every wording, with the same options."""
    seen_answers: dict[tuple[str, str], set[str]] = {}
    for text in texts:
        for aspect, answer in text.labels.items():
            seen_answers.setdefault((text.domain, aspect), set()).add(answer)
    # a type's own wordings with the options appended (not those that already list answers), and the generic ones
    templates = {name: [w.rstrip("?.") + ": {options}?" for w in kind.wordings if " or " not in w] + list(OPTION_WORDINGS)
                 for name, kind in types.items()}
    records = []
    for text in texts:
        for aspect, answer in text.labels.items():
            kind = types[aspect]
            others = sorted({a for a in (kind.answers or seen_answers[text.domain, aspect]) if a.lower() != answer.lower()})
            if len(others) < 2:
                continue
            for _ in range(count):
                options = rng.sample(others, rng.choice((2, 3)) if len(others) >= 3 else 2) + [answer]
                rng.shuffle(options)
                listed = ", ".join(options[:-1]) + " or " + options[-1]
                asked = rng.sample(templates[aspect], min(OPTION_POOL, len(templates[aspect])))
                pool = tuple(dict.fromkeys(w for w in (fill(wording.replace("{options}", listed), slots[text.domain], rng)
                                                       for wording in asked) if keep(w)))
                if pool:
                    records.append(QARecord(text.text, rng.choice(pool), answer, pool, aspect))
    return records
