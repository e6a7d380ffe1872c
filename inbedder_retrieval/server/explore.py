"""The explorer's cluster view: a sample of an index clustered under one instruction."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from ..cluster import cluster_texts
from ..index import InstructionIndex


def cluster_sample(index: InstructionIndex, instruction: str, *, k: int | None, sample: int) -> dict[str, Any]:
    """Cluster the first ``sample`` stored documents by their answers to ``instruction``
    (``inbedder_retrieval.cluster``) and project their vectors to 2-D (PCA) for a scatter."""
    documents = []
    for batch in index.store.iter_documents(min(sample, 256)):
        documents.extend(batch)
        if len(documents) >= sample:
            break
    documents = documents[:sample]
    if len(documents) < 3:
        raise ValueError(f"the index holds {len(documents)} documents; clustering needs at least 3")
    texts = [doc.text for doc in documents]
    result = cluster_texts(index.model, texts, instruction, k=k, k_values=range(2, min(9, len(texts))))
    points = project_2d(result.vectors)
    return {
        "instruction": instruction,
        "k": result.k,
        "clusters": [asdict(explanation) for explanation in result.explanations],
        "points": [{"id": doc.id, "text": doc.text, "cluster": int(label), "answer": answer, "x": float(x), "y": float(y)}
                   for doc, label, answer, (x, y) in zip(documents, result.labels, result.answers, points)],
    }


def project_2d(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components of ``vectors`` (rows), scaled to [-1, 1]."""
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    if points.shape[1] < 2:
        points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    scale = np.abs(points).max(axis=0)
    return points / np.where(scale > 0, scale, 1.0)
