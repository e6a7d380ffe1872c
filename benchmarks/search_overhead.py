"""Search overhead of ``InstructionIndex`` over the raw vector library.

Builds an index of N random unit vectors (one instruction, no model call: the vectors are
written through the store) and times ``InstructionIndex.search_by_vector`` against a bare
``faiss.IndexFlatIP.search`` on the same vectors, and the Qdrant store against
``QdrantClient.query_points`` on the same collection. Prints median latencies and ratios.

    .venv/bin/python benchmarks/search_overhead.py [N] [QUERIES]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from inbedder_retrieval.index import InstructionIndex
from inbedder_retrieval.stores import Document

DIM = 576


class VectorOnlyModel:
    """Stands in for an InBedder where no text is embedded (vectors are given)."""

    name, pooling, dim, fingerprint = "benchmark-vectors", "fst_gen", DIM, "benchmark"

    class description:  # noqa: N801 - mimics InBedder.description
        layer = -1


def median_ms(functions, queries, rounds: int = 3) -> list[float]:
    """Median latency of each function; calls are interleaved so noise hits all alike."""
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(rounds):
        for query in queries:
            for slot, function in enumerate(functions):
                start = time.perf_counter()
                function(query)
                times[slot].append(time.perf_counter() - start)
    return [1000 * statistics.median(slot) for slot in times]


def build(folder: Path, backend: str, vectors: np.ndarray) -> InstructionIndex:
    options = {"location": ":memory:"} if backend == "qdrant-memory" else {}
    index = InstructionIndex.create(folder, VectorOnlyModel(), backend=backend.split("-")[0], store_options=options)
    space = "bench"
    index.store.create_space(space, DIM)
    index._write_manifest({**index._manifest, "instructions": [
        {"instruction": "Q", "query_instruction": "Q", "space": space}]})
    for start in range(0, len(vectors), 2048):
        chunk = vectors[start : start + 2048]
        docs = [Document(f"d{start + i}", f"text {start + i}", {"n": start + i}) for i in range(len(chunk))]
        index.store.upsert(docs, {space: chunk})
    if hasattr(index.store, "save"):
        index.store.save()
    return index


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    n_queries = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(count, DIM)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.choice(count, n_queries, replace=False)] + 0.01
    print(f"{count} vectors of dimension {DIM}, {n_queries} queries, k=10, faiss threads={faiss.omp_get_max_threads()}")
    with tempfile.TemporaryDirectory() as scratch:
        bare = faiss.IndexFlatIP(DIM)
        bare.add(vectors)
        index = build(Path(scratch) / "faiss", "faiss", vectors)
        for _ in range(5):  # warm-up
            bare.search(queries[:1], 10)
            index.search_by_vector(queries[0], "Q", k=10)
        wrapped = index.store._indexes["bench"]  # the store's own IndexIDMap2(Flat)
        raw, idmap, ours, filtered = median_ms([
            lambda q: bare.search(q[None], 10),
            lambda q: wrapped.search(q[None], 10),
            lambda q: index.search_by_vector(q, "Q", k=10),
            lambda q: index.search_by_vector(q, "Q", k=10, filter={"n": {"$lt": count // 2}}),
        ], queries)
        print("| store | bare library | same index object, direct | InstructionIndex | ratio to bare | ratio to direct |")
        print("|---|---|---|---|---|---|")
        print(f"| FAISS Flat | {raw:.3f} ms (IndexFlatIP) | {idmap:.3f} ms (IndexIDMap2) | {ours:.3f} ms | "
              f"{ours / raw:.3f} | {ours / idmap:.3f} |")
        print(f"| FAISS Flat, filter matching 50% | | | {filtered:.3f} ms | {filtered / raw:.3f} | |")
        index.close()
        if count <= 20_000:  # embedded Qdrant warns above 20k points
            index = build(Path(scratch) / "qdrant", "qdrant", vectors)
            client, collection = index.store.client, index.store.collection
            raw, ours = median_ms([
                lambda q: client.query_points(collection, query=q.tolist(), using="bench", limit=10),
                lambda q: index.search_by_vector(q, "Q", k=10),
            ], queries[:50], rounds=1)
            print(f"| Qdrant local | {raw:.3f} ms (query_points) | | {ours:.3f} ms | {ours / raw:.3f} | |")
            index.close()


if __name__ == "__main__":
    main()
