"""Retrieval metrics for instruction-aware search: capped recall@k and nDCG@k."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace

import numpy as np


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the relevant documents found in the top k, capped by k (BEIR's R_cap@k)."""
    if not relevant:
        raise ValueError("a query needs at least one relevant document")
    return len(set(ranked[:k]) & relevant) / min(k, len(relevant))


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-relevance nDCG@k."""
    gains = sum(1 / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]) if doc in relevant)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return gains / ideal if ideal else 0.0


class EmbedderSearch:
    """Exact cosine search over a fixed corpus with any ``embed(texts, instruction)``: the
    same ``search`` as an ``InstructionIndex``, for baselines that have no index."""

    def __init__(self, embed: Callable[[Sequence[str], str], np.ndarray], records: Sequence[Mapping[str, str]]) -> None:
        self.embed = embed
        self.ids = [record["id"] for record in records]
        self.texts = [record["text"] for record in records]
        self._vectors: dict[str, np.ndarray] = {}

    def _unit(self, texts: Sequence[str], instruction: str) -> np.ndarray:
        vectors = np.asarray(self.embed(list(texts), instruction), dtype="float64")
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)

    def search(self, query: str, instruction: str, k: int = 10) -> list[SimpleNamespace]:
        """The ``k`` closest documents as hits with ``id`` and ``score``."""
        if instruction not in self._vectors:
            self._vectors[instruction] = self._unit(self.texts, instruction)
        scores = self._vectors[instruction] @ self._unit([query], instruction)[0]
        order = np.argsort(-scores, kind="stable")[:k]
        return [SimpleNamespace(id=self.ids[i], score=float(scores[i])) for i in order]


def aspect_retrieval(index, records: Sequence[Mapping[str, str]], instructions: Mapping[str, str],
                     k: int = 10, queries: int | None = None) -> dict[str, dict[str, float]]:
    """Each record (its id and text) searches ``index`` (an ``InstructionIndex`` or an
    ``EmbedderSearch``) under each aspect's instruction;
    relevant = the other records sharing its label for that aspect. Returns mean
    recall@k and nDCG@k per aspect."""
    chosen = list(records)[:queries] if queries else list(records)
    results = {}
    for aspect, instruction in instructions.items():
        recalls, ndcgs = [], []
        for record in chosen:
            relevant = {r["id"] for r in records if r[aspect] == record[aspect] and r["id"] != record["id"]}
            ranked = [hit.id for hit in index.search(record["text"], instruction, k=k + 1) if hit.id != record["id"]][:k]
            recalls.append(recall_at_k(ranked, relevant, k))
            ndcgs.append(ndcg_at_k(ranked, relevant, k))
        results[aspect] = {f"recall@{k}": sum(recalls) / len(recalls), f"ndcg@{k}": sum(ndcgs) / len(ndcgs)}
    return results
