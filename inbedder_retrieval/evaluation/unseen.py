"""Instruction wordings the model never saw: triplet accuracy per wording, per aspect, per fixture.

``unseen_wordings.json`` holds, for every aspect of every fixture (key ``"fixture/aspect"``),
20 team-written wordings of the aspect's question: 10 ``held_out`` (never in any training
record, nor a near-copy of one; a test enforces it) and 10 ``seen`` (free for training data).
Each wording is scored with the triplet accuracy of ``inbedder eval`` against the aspect's
``contrast`` aspect (0.5 = chance). Per aspect: mean and min over held-out wordings and,
separately, over seen ones; per fixture: the harmonic mean over aspects of the held-out means.
The wordings include the hard kinds on purpose: topic questions that mention the customer,
writer, message, email or post; feeling questions that say "about"; questions that list the
labels; coarse questions (continent, broad category, polarity, urgency) next to fine ones.

The near-copy rule (``is_near_copy``) is public so that training data can be filtered with
it: ``[r for r in records if not near_held_out(r.instruction)]``.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from .awareness import harmonic_mean
from .baselines import Embed, ignores_instruction
from .triplets import triplet_accuracy

EmbedMany = Callable[[Sequence[str], Sequence[str]], Mapping[str, np.ndarray]]

#: Near-copy thresholds: token Jaccard and difflib ratio of the normalised strings.
JACCARD_THRESHOLD = 0.6
RATIO_THRESHOLD = 0.85


@dataclass(frozen=True)
class AspectWordings:
    """The wordings of one aspect's question; triplets contrast it with ``contrast``."""

    fixture: str
    aspect: str
    contrast: str
    held_out: tuple[str, ...]
    seen: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.fixture}/{self.aspect}"


@cache
def load_wordings() -> dict[str, AspectWordings]:
    """The shipped wordings, ``{"fixture/aspect": AspectWordings}``."""
    return parse_wordings(resources.files("inbedder_retrieval.data").joinpath("unseen_wordings.json").read_text("utf-8"),
                          "unseen_wordings.json")


def parse_wordings(text: str, source: str, fixtures: Mapping[str, Sequence[str]] | None = None) -> dict[str, AspectWordings]:
    """Wordings from JSON in the format of the shipped ``unseen_wordings.json``:
    ``{"fixture/aspect": {"contrast": aspect, "held_out": [...], "seen": [...]}}``. With
    ``fixtures`` (``{fixture: aspects}``), keys and contrasts are checked against them.
    Mistakes are a ``ValueError`` naming ``source`` and the key."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ValueError(f"{source} is not JSON: {error}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{source} must be a non-empty JSON object of 'fixture/aspect' keys")
    wordings = {}
    for key, entry in data.items():
        fixture, _, aspect = key.partition("/")
        if not (fixture and aspect) or not isinstance(entry, dict):
            raise ValueError(f"{source}: {key!r} must be 'fixture/aspect' with an object as value")
        lists = [entry.get(part, []) for part in ("held_out", "seen")]
        if not isinstance(entry.get("contrast"), str) or not all(
                isinstance(words, list) and all(isinstance(w, str) and w.strip() for w in words) for words in lists):
            raise ValueError(f"{source}: {key!r} needs a 'contrast' aspect and lists of non-empty wordings "
                             "'held_out' and 'seen'")
        if not any(lists):
            raise ValueError(f"{source}: {key!r} has no wording")
        if fixtures is not None:
            known = fixtures.get(fixture)
            if known is None:
                raise ValueError(f"{source}: unknown fixture {fixture!r} in {key!r}; shipped: {', '.join(fixtures)}")
            for name in (aspect, entry["contrast"]):
                if name not in known:
                    raise ValueError(f"{source}: {key!r}: the fixture {fixture!r} has no aspect {name!r} "
                                     f"(it has {', '.join(known)})")
        wordings[key] = AspectWordings(fixture, aspect, entry["contrast"], tuple(lists[0]), tuple(lists[1]))
    return wordings


def held_out_wordings() -> list[str]:
    """Every held-out wording of every aspect: these must never be (nearly) a training instruction."""
    return [wording for entry in load_wordings().values() for wording in entry.held_out]


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: ``"What's  it?"`` -> ``"whats it"``."""
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


def is_near_copy(a: str, b: str) -> bool:
    """True if the normalised strings are equal, share >= 60% of their tokens (Jaccard) or
    have a difflib ``SequenceMatcher`` ratio >= 0.85."""
    return _near_normalised(normalise(a), normalise(b))


def _near_normalised(a: str, b: str) -> bool:
    if a == b:
        return True
    tokens_a, tokens_b = set(a.split()), set(b.split())
    if tokens_a and len(tokens_a & tokens_b) / len(tokens_a | tokens_b) >= JACCARD_THRESHOLD:
        return True
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return (matcher.real_quick_ratio() >= RATIO_THRESHOLD and matcher.quick_ratio() >= RATIO_THRESHOLD
            and matcher.ratio() >= RATIO_THRESHOLD)


def near_held_out(instruction: str, held_out: Iterable[str] | None = None) -> str | None:
    """The first held-out wording that ``instruction`` nearly copies, or None (safe to train on)."""
    if held_out is None:
        return _near_shipped_held_out(instruction)
    normalised = normalise(instruction)
    return next((w for w in held_out if _near_normalised(normalised, normalise(w))), None)


@functools.lru_cache(maxsize=65536)
def _near_shipped_held_out(instruction: str) -> str | None:
    normalised = normalise(instruction)
    return next((w for w, n in _shipped_held_out() if _near_normalised(normalised, n)), None)


@functools.cache
def _shipped_held_out() -> tuple[tuple[str, str], ...]:
    return tuple((wording, normalise(wording)) for wording in held_out_wordings())


@dataclass(frozen=True)
class WordingScore:
    fixture: str
    aspect: str
    wording: str
    held_out: bool
    accuracy: float


@dataclass(frozen=True)
class AspectSummary:
    fixture: str
    aspect: str
    held_out_mean: float
    held_out_min: float
    seen_mean: float
    seen_min: float


def embed_many_with(embed: Embed) -> EmbedMany:
    """``embed_many`` from ``embed(texts, instruction)``: one call per instruction, or a single
    call shared by all of them if the embedder ignores the instruction (``baselines.ignores_instruction``)."""
    def embed_many(texts: Sequence[str], instructions: Sequence[str]) -> dict[str, np.ndarray]:
        if ignores_instruction(embed):
            return dict.fromkeys(instructions, np.asarray(embed(list(texts), instructions[0]), dtype="float32"))
        return {q: np.asarray(embed(list(texts), q), dtype="float32") for q in instructions}

    return embed_many


def balanced_subset(records: Sequence[Mapping[str, str]], aspects: Sequence[str], per_cell: int) -> list[Mapping[str, str]]:
    """The first ``per_cell`` records of every combination of the ``aspects``' labels."""
    taken: dict[tuple[str, ...], int] = defaultdict(int)
    chosen = []
    for record in records:
        cell = tuple(record[aspect] for aspect in aspects)
        if taken[cell] < per_cell:
            taken[cell] += 1
            chosen.append(record)
    return chosen


def score_wordings(embed_many: EmbedMany, records: Sequence[Mapping[str, str]],
                   aspects: Sequence[AspectWordings], per_aspect: int | None = None) -> list[WordingScore]:
    """Triplet accuracy of every wording of ``aspects`` (all of one fixture) on ``records``.

    One ``embed_many`` call embeds the texts under all wordings (a causal InBedder shares the
    document prefix). ``per_aspect`` keeps only the first N held-out and N seen wordings.
    """
    if len({entry.fixture for entry in aspects}) > 1:
        raise ValueError("score_wordings takes the aspects of one fixture")
    texts = [record["text"] for record in records]
    chosen = [(entry, wording, held) for entry in aspects
              for held, wordings in ((True, entry.held_out), (False, entry.seen))
              for wording in wordings[:per_aspect]]
    vectors = embed_many(texts, list(dict.fromkeys(wording for _, wording, _ in chosen)))
    labels = {name: [record[name] for record in records] for entry in aspects for name in (entry.aspect, entry.contrast)}
    return [WordingScore(entry.fixture, entry.aspect, wording, held,
                         triplet_accuracy(vectors[wording], labels[entry.aspect], labels[entry.contrast]))
            for entry, wording, held in chosen]


def summarise(scores: Sequence[WordingScore]) -> list[AspectSummary]:
    """Mean and min per aspect over held-out and (separately) seen wordings."""
    groups: dict[tuple[str, str], dict[bool, list[float]]] = defaultdict(lambda: {True: [], False: []})
    for score in scores:
        groups[score.fixture, score.aspect][score.held_out].append(score.accuracy)
    summaries = []
    for (fixture, aspect), by_kind in groups.items():
        stats = [f(values) if values else float("nan") for values in (by_kind[True], by_kind[False]) for f in (np.mean, min)]
        summaries.append(AspectSummary(fixture, aspect, *(float(s) for s in stats)))
    return summaries


def fixture_hm(summaries: Sequence[AspectSummary], held_out: bool = True) -> dict[str, float]:
    """Per fixture, the harmonic mean over its aspects of the held-out (or seen) means."""
    means: dict[str, list[float]] = defaultdict(list)
    for summary in summaries:
        means[summary.fixture].append(summary.held_out_mean if held_out else summary.seen_mean)
    return {fixture: harmonic_mean(values) for fixture, values in means.items()}


def markdown_tables(results: Mapping[str, Sequence[AspectSummary]]) -> str:
    """Two tables, held-out and seen wordings: rows fixture/aspect then the per-fixture HM,
    one column per embedder (``results`` maps embedder name -> its summaries). A kind of
    wording that no aspect has (a wordings file without seen ones) gets no table."""
    names = list(results)
    keys = list(dict.fromkeys((s.fixture, s.aspect) for summaries in results.values() for s in summaries))
    lookup = {(name, s.fixture, s.aspect): s for name, summaries in results.items() for s in summaries}
    parts = []
    for held, title in ((True, "held-out wordings (never in training)"), (False, "seen wordings (may be in training)")):
        if all(np.isnan(s.held_out_mean if held else s.seen_mean) for s in lookup.values()):
            continue
        lines = [f"Triplet accuracy on {title}: mean (min) over wordings; chance = 0.500", "",
                 "| fixture/aspect | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for fixture, aspect in keys:
            cells = []
            for name in names:
                s = lookup[name, fixture, aspect]
                mean, low = (s.held_out_mean, s.held_out_min) if held else (s.seen_mean, s.seen_min)
                cells.append(f"{mean:.3f} ({low:.3f})")
            lines.append(f"| {fixture}/{aspect} | " + " | ".join(cells) + " |")
        hms = {name: fixture_hm(results[name], held) for name in names}
        for fixture in dict.fromkeys(fixture for fixture, _ in keys):
            lines.append(f"| **{fixture} HM** | " + " | ".join(f"**{hms[name][fixture]:.3f}**" for name in names) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
