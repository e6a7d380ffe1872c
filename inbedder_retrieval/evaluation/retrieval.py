"""Retrieval metrics for instruction-aware search: capped recall@k and nDCG@k."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


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


def aspect_retrieval(index, records: Sequence[Mapping[str, str]], instructions: Mapping[str, str],
                     k: int = 10, queries: int | None = None) -> dict[str, dict[str, float]]:
    """Each record (its id and text) searches the index under each aspect's instruction;
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
