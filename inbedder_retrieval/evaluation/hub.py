"""The reference's evaluation sets on the Hugging Face hub (``BrandonZYW/...``).

For users with hub access: ``load_hub_set("nyt-topic")`` fetches a set through the
``datasets`` library (extra ``hub-data``) at the revision the reference used and turns it
into plain records; ``score_hub_set`` computes the reference's metric for it. The offline
test suite runs on the shipped fixtures instead and never downloads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .awareness import v_measure
from .robustness import instructed_sts

Embed = Callable[[Sequence[str], str], np.ndarray]
Loader = Callable[..., Any]


@dataclass(frozen=True)
class HubSet:
    """One evaluation set of the reference: where it lives and how it is scored."""

    name: str
    repo: str
    config: str | None
    revision: str
    kind: str  # a key of KINDS
    instruction: str | None  # None: each row carries its own (InstructSTSB)


HUB_SETS: dict[str, HubSet] = {
    hub_set.name: hub_set
    for hub_set in (
        HubSet("intent-emotion-emotion", "BrandonZYW/IntentEmotion", "emotion",
               "d0101c15083166b77371cf542c4045decc0a6e92", "triplets", "How does the customer feel?"),
        HubSet("intent-emotion-intent", "BrandonZYW/IntentEmotion", "intent",
               "d0101c15083166b77371cf542c4045decc0a6e92", "triplets", "What does the customer need?"),
        HubSet("nyt-topic", "BrandonZYW/NYTClustering", "topic",
               "462fb544c8993a0421fd969a7a0f19f1fbd975bf", "clustering", "What is the topic of news?"),
        HubSet("nyt-location", "BrandonZYW/NYTClustering", "location",
               "462fb544c8993a0421fd969a7a0f19f1fbd975bf", "clustering", "Where did the news happen?"),
        HubSet("instruct-stsb", "BrandonZYW/InstructSTSB", None,
               "34dda81eca082ba6b3a259899fe9ae435b6ea1ae", "sts", None),
        HubSet("feedbacks", "BrandonZYW/FeedbacksClustering", None, "365ef3e171ad4dab887b08495b10940a1aecb04b",
               "clustering", "Here is a human feedback on machine-generated text. Categorize the type of reason "
               "why the human like or dislike it."),
        HubSet("ratemyprof", "BrandonZYW/RateMyProfClustering", None, "253b8501d191f7c3d3aff3bc27c6d7f7112589ba",
               "clustering", "Here is a student review on the course and the professor. Categorize the aspect "
               "the student is discussing about."),
    )
}


def _default_loader() -> Loader:
    try:
        from datasets import load_dataset
    except ImportError:
        raise ImportError(
            "Loading the reference evaluation sets needs the `datasets` library: "
            "pip install 'inbedder-retrieval[hub-data]'"
        ) from None
    return load_dataset


def load_hub_set(name: str, *, split: str = "test", limit: int | None = None,
                 loader: Loader | None = None) -> list[dict[str, Any]]:
    """Download (or read from the ``datasets`` cache) a reference set as plain records.

    ``loader`` defaults to ``datasets.load_dataset`` and is called as
    ``loader(repo, name=config, revision=revision, split=split)``.
    """
    if name not in HUB_SETS:
        raise KeyError(f"Unknown evaluation set {name!r}. Known: {', '.join(HUB_SETS)}")
    hub_set = HUB_SETS[name]
    rows = (loader or _default_loader())(hub_set.repo, name=hub_set.config, revision=hub_set.revision, split=split)
    rows = list(rows if limit is None else (row for row, _ in zip(rows, range(limit))))
    kind = KINDS[hub_set.kind]
    if rows and kind.column not in rows[0]:
        raise ValueError(f"{hub_set.repo} rows have columns {sorted(rows[0])}, expected {kind.column!r}")
    return kind.convert(rows)


def explicit_triplet_accuracy(embed: Embed, triplets: Sequence[Mapping[str, str]], instruction: str) -> float:
    """Share of (anchor, positive, negative) triplets where the anchor is closer (cosine)
    to the positive; ties count as half."""
    parts = [embed([t[part] for t in triplets], instruction) for part in ("anchor", "positive", "negative")]
    anchor, positive, negative = (p / np.linalg.norm(p, axis=1, keepdims=True).clip(min=1e-12) for p in parts)
    diff = (anchor * positive).sum(1) - (anchor * negative).sum(1)
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _clustering_v_measure(embed: Embed, records: Sequence[Mapping[str, Any]], instruction: str | None) -> float:
    return v_measure(embed([r["text"] for r in records], instruction), [r["label"] for r in records])


@dataclass(frozen=True)
class SetKind:
    """How one kind of set is read and scored: a column its rows must have, the conversion
    of its rows into our records, and the reference's metric."""

    column: str
    convert: Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]]
    score: Callable[[Embed, Sequence[Mapping[str, Any]], str | None], float]
    metric: str


KINDS: dict[str, SetKind] = {
    "triplets": SetKind(
        "anchor",
        lambda rows: [{"anchor": r["anchor"], "positive": r["positive"], "negative": r["negative"]} for r in rows],
        explicit_triplet_accuracy,
        "triplet accuracy",
    ),
    "clustering": SetKind(
        "cluster",
        lambda rows: [{"text": r["text"], "label": str(r["cluster"])} for r in rows],
        _clustering_v_measure,
        "V-measure",
    ),
    "sts": SetKind(
        "sentence1",
        lambda rows: [{"text1": r["sentence1"], "text2": r["sentence2"], "score": float(r["score"]),
                       "instruction": r["instruction"]} for r in rows],
        lambda embed, records, _: instructed_sts(embed, records),  # instructions are per row
        "Spearman",
    ),
}


def score_hub_set(embed: Embed, name: str, records: Sequence[Mapping[str, Any]]) -> float:
    """The reference's metric for a set: triplet accuracy, V-measure or STS Spearman."""
    hub_set = HUB_SETS[name]
    return KINDS[hub_set.kind].score(embed, records, hub_set.instruction)
