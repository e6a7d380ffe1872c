"""Instruction awareness: triplets and clustering per aspect, with harmonic means."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .baselines import Embed
from .triplets import triplet_accuracy


def harmonic_mean(values: Sequence[float]) -> float:
    values = list(values)
    return 0.0 if any(v <= 0 for v in values) else len(values) / sum(1 / v for v in values)


def v_measure(vectors: np.ndarray, labels: Sequence[str], seed: int = 0) -> float:
    """V-measure of k-means (k = number of distinct labels) against ``labels``."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import v_measure_score

    k = len(set(labels))
    predicted = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors)
    return float(v_measure_score(list(labels), predicted))


@dataclass(frozen=True)
class AwarenessRow:
    embedder: str
    fixture: str
    triplets: dict[str, float]
    v_measures: dict[str, float]

    @property
    def triplet_hm(self) -> float:
        return harmonic_mean(self.triplets.values())

    @property
    def v_measure_hm(self) -> float:
        return harmonic_mean(self.v_measures.values())


def evaluate(name: str, embed: Embed, fixture: str, records: Sequence[Mapping[str, str]],
             instructions: Mapping[str, str]) -> AwarenessRow:
    """Triplet accuracy and V-measure for each of the two aspects of ``records``."""
    if len(instructions) != 2:
        raise ValueError("awareness needs exactly two aspects")
    texts = [record["text"] for record in records]
    labels = {aspect: [record[aspect] for record in records] for aspect in instructions}
    triplets, clusters = {}, {}
    for aspect, instruction in instructions.items():
        other = next(a for a in instructions if a != aspect)
        vectors = np.asarray(embed(texts, instruction), dtype="float32")
        triplets[aspect] = triplet_accuracy(vectors, labels[aspect], labels[other])
        clusters[aspect] = v_measure(vectors, labels[aspect])
    return AwarenessRow(name, fixture, triplets, clusters)


def markdown_table(rows: Sequence[AwarenessRow]) -> str:
    lines = ["| embedder | fixture | triplet accuracy per aspect | triplet HM | V-measure per aspect | V-measure HM |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        triplets = ", ".join(f"{a} {v:.3f}" for a, v in row.triplets.items())
        clusters = ", ".join(f"{a} {v:.3f}" for a, v in row.v_measures.items())
        lines.append(f"| {row.embedder} | {row.fixture} | {triplets} | {row.triplet_hm:.3f} | {clusters} | {row.v_measure_hm:.3f} |")
    return "\n".join(lines)
