"""Triplet accuracy on texts labelled with two independent aspects.

Under the instruction for aspect A, an anchor must be closer to a text that shares A but
not B (the positive) than to a text that shares B but not A (the negative). A plain
embedder that follows one aspect scores below chance (0.5) on the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: Instructions for the shipped ``two_aspects`` sample.
TWO_ASPECT_INSTRUCTIONS = {
    "topic": "What kind of product or service is this review about?",
    "sentiment": "How does the customer feel about it?",
}


def triplet_accuracy(vectors: np.ndarray, aspect: Sequence[str], other: Sequence[str]) -> float:
    """Share of all (anchor, positive, negative) triplets won, for aspect ``aspect``.

    Positives share ``aspect`` and differ in ``other``; negatives share ``other`` and differ
    in ``aspect``. Ties count as half. Vectors are compared by cosine similarity.
    """
    a, b = np.asarray(aspect), np.asarray(other)
    if len(a) != len(vectors) or len(b) != len(vectors):
        raise ValueError("vectors and both label lists must have the same length")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    similarity = unit @ unit.T
    positive = (a[:, None] == a[None, :]) & (b[:, None] != b[None, :])
    negative = (b[:, None] == b[None, :]) & (a[:, None] != a[None, :])
    wins = total = 0.0
    for anchor in range(len(vectors)):
        pos = similarity[anchor, positive[anchor]]
        neg = similarity[anchor, negative[anchor]]
        if not len(pos) or not len(neg):
            continue
        diff = pos[:, None] - neg[None, :]
        wins += (diff > 0).sum() + 0.5 * (diff == 0).sum()
        total += diff.size
    if not total:
        raise ValueError("no triplets: each aspect needs at least two values")
    return float(wins / total)


def aspect_triplet_accuracy(
    embed: Callable[[list[str], str], np.ndarray],
    records: Sequence[dict[str, str]],
    instructions: dict[str, str] | None = None,
) -> dict[str, float]:
    """Triplet accuracy per aspect, embedding with ``embed(texts, instruction)``.

    ``records`` carry a ``text`` and one label per aspect named in ``instructions``
    (exactly two aspects).
    """
    instructions = instructions or TWO_ASPECT_INSTRUCTIONS
    if len(instructions) != 2:
        raise ValueError("triplet accuracy needs exactly two aspects")
    texts = [record["text"] for record in records]
    first, second = instructions
    labels = {name: [record[name] for record in records] for name in instructions}
    scores = {}
    for aspect, other in ((first, second), (second, first)):
        vectors = embed(texts, instructions[aspect])
        scores[aspect] = triplet_accuracy(vectors, labels[aspect], labels[other])
    return scores
