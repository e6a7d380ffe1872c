"""Cluster a corpus under an instruction and explain each cluster by the model's answers.

Following the reference: k-means on the instruction's vectors; each cluster's generated
answers are joined into one document and its top TF-IDF terms against the other clusters
name it. We add the most common answers, the texts nearest the centroid, a silhouette
choice of k, and table / JSON / PNG outputs. Needs the ``eval`` extra (scikit-learn,
matplotlib).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .embedder import InBedder
from .prompts import validate_instruction, validate_texts


@dataclass(frozen=True)
class ClusterExplanation:
    """What one cluster is about, in the model's own words."""

    cluster: int
    size: int
    top_terms: list[str]
    common_answers: list[tuple[str, int]]
    examples: list[str]


@dataclass
class Clustering:
    """The result of ``cluster_texts``."""

    instruction: str
    k: int
    labels: np.ndarray
    vectors: np.ndarray = field(repr=False)
    answers: list[str] = field(repr=False)
    explanations: list[ClusterExplanation]
    silhouette_by_k: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: instruction, k, labels, answers, explanations, silhouette scores."""
        return {
            "instruction": self.instruction,
            "k": self.k,
            "labels": self.labels.tolist(),
            "answers": self.answers,
            "silhouette_by_k": {str(k): score for k, score in self.silhouette_by_k.items()},
            "clusters": [asdict(explanation) for explanation in self.explanations],
        }

    def table(self, width: int = 60) -> str:
        """A plain-text table: one block per cluster."""
        lines = [f"Instruction: {self.instruction!r}   k = {self.k}"]
        for item in self.explanations:
            answers = ", ".join(f"{answer} ({count})" for answer, count in item.common_answers)
            lines.append(f"\n[{item.cluster}] {item.size} texts   terms: {', '.join(item.top_terms)}")
            lines.append(f"    answers: {answers}")
            lines.extend(f"    - {text if len(text) <= width else text[: width - 1] + '…'}" for text in item.examples)
        return "\n".join(lines)

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Save a 2-D projection (PCA) of the vectors coloured by cluster as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.decomposition import PCA

        points = PCA(n_components=2, random_state=0).fit_transform(self.vectors)
        figure, axes = plt.subplots(figsize=(6, 5))
        for item in self.explanations:
            mask = self.labels == item.cluster
            axes.scatter(points[mask, 0], points[mask, 1], s=18, label=f"{item.cluster}: {', '.join(item.top_terms[:2])}")
        axes.set_title(title or self.instruction, fontsize=10)
        axes.legend(fontsize=7, loc="best")
        axes.set_xticks([])
        axes.set_yticks([])
        figure.tight_layout()
        path = Path(path)
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path


def choose_k(vectors: np.ndarray, k_values: Sequence[int] = range(2, 11), seed: int = 0) -> tuple[int, dict[int, float]]:
    """The k with the best cosine silhouette among ``k_values`` (each below len(vectors))."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    candidates = [k for k in k_values if 2 <= k < len(vectors)]
    if not candidates:
        raise ValueError(f"cannot choose k among {list(k_values)} for {len(vectors)} texts")
    scores = {}
    for k in candidates:
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors)
        scores[k] = float(silhouette_score(vectors, labels, metric="cosine"))
    return max(scores, key=scores.get), scores


def explain(
    labels: np.ndarray, answers: Sequence[str], texts: Sequence[str], vectors: np.ndarray,
    n_terms: int = 5, n_answers: int = 3, n_examples: int = 3,
) -> list[ClusterExplanation]:
    """Top TF-IDF terms of each cluster's joined answers against the other clusters, its
    most common answers, and the texts nearest its centroid."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    clusters = sorted(set(labels.tolist()))
    documents = [" ".join(answers[i] for i in np.flatnonzero(labels == c)) for c in clusters]
    weights, terms = None, np.array([])
    if any(document.strip() for document in documents):
        try:
            vectorizer = TfidfVectorizer(stop_words="english")
            weights = vectorizer.fit_transform(documents).toarray()
            terms = vectorizer.get_feature_names_out()
        except ValueError:  # every answer was a stop word
            weights = None
    explanations = []
    for row, cluster in enumerate(clusters):
        members = np.flatnonzero(labels == cluster)
        top = [] if weights is None else [terms[i] for i in np.argsort(-weights[row])[:n_terms] if weights[row, i] > 0]
        common = Counter(answers[i].strip().lower() for i in members if answers[i].strip()).most_common(n_answers)
        centroid = vectors[members].mean(axis=0)
        nearest = members[np.argsort(-(vectors[members] @ centroid))[:n_examples]]
        explanations.append(ClusterExplanation(int(cluster), len(members), top, common, [texts[i] for i in nearest]))
    return explanations


def cluster_texts(
    model: InBedder,
    texts: Sequence[str],
    instruction: str,
    *,
    k: int | None = None,
    k_values: Sequence[int] = range(2, 11),
    seed: int = 0,
    batch_size: int = 32,
) -> Clustering:
    """Cluster ``texts`` by their answers to ``instruction`` (k given, or chosen by
    silhouette among ``k_values``) and explain every cluster."""
    from sklearn.cluster import KMeans

    texts = validate_texts(texts)
    instruction = validate_instruction(instruction)
    if k is not None and not 1 <= k <= len(texts):
        raise ValueError(f"k must be between 1 and the number of texts ({len(texts)}), got {k}")
    vectors = model.encode(texts, instruction, batch_size=batch_size)
    scores: dict[int, float] = {}
    if k is None:
        k, scores = choose_k(vectors, k_values, seed)
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors)
    answers = model.answer(texts, instruction, batch_size=batch_size)
    return Clustering(instruction, k, labels, vectors, answers, explain(labels, answers, texts, vectors), scores)
