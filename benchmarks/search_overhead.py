"""Search overhead of ``InstructionIndex`` over the raw vector library, per backend.

Builds an index of N random unit vectors (one instruction, no model call: the vectors are
written through the store) and times ``InstructionIndex.search_by_vector`` (plain and with
a filter matching half the points) against the engine's own search on the same data:
a bare ``faiss.IndexFlatIP`` for FAISS, ``EdgeShard.query`` for embedded Qdrant
(qdrant-edge), ``QdrantClient.query_points`` for qdrant-client's local mode (in memory:
the same pure-Python search as its ``path=`` mode). Prints median latencies and ratios.

    .venv/bin/python benchmarks/search_overhead.py [N=10000] [QUERIES=200] [BACKENDS=faiss,qdrant-edge,qdrant-client-local]
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


#: benchmark backend -> (index backend, store options)
BACKENDS = {
    "faiss": ("faiss", {}),
    "qdrant-edge": ("qdrant", {}),
    "qdrant-client-local": ("qdrant", {"location": ":memory:"}),
}


def build(folder: Path, backend: str, vectors: np.ndarray) -> tuple[InstructionIndex, float]:
    """The index and the seconds its writes took."""
    name, options = BACKENDS[backend]
    started = time.perf_counter()
    index = InstructionIndex.create(folder, VectorOnlyModel(), backend=name, store_options=options)
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
    return index, time.perf_counter() - started


def engine_search(index: InstructionIndex, backend: str, vectors: np.ndarray):
    """The engine's own search, called directly on the index's data."""
    if backend == "faiss":
        bare = faiss.IndexFlatIP(DIM)
        bare.add(vectors)
        return "IndexFlatIP", lambda q: bare.search(q[None], 10)
    engine = index.store.engine
    if backend == "qdrant-edge":
        edge = engine.edge
        return "EdgeShard.query", lambda q: engine.shard.query(edge.QueryRequest(
            limit=10, query=edge.Query.Nearest(q.tolist(), using="bench"), with_payload=True))
    return "query_points", lambda q: engine.client.query_points(
        engine.collection, query=q.tolist(), using="bench", limit=10, with_payload=True)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    n_queries = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    backends = sys.argv[3].split(",") if len(sys.argv) > 3 else list(BACKENDS)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(count, DIM)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.choice(count, n_queries, replace=False)] + 0.01
    print(f"{count} vectors of dimension {DIM}, {n_queries} queries, k=10, faiss threads={faiss.omp_get_max_threads()}")
    print("| backend | N | build s | engine search | InstructionIndex | ratio | filter 50% | open s |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for backend in backends:
            folder = Path(scratch) / backend
            index, build_s = build(folder, backend, vectors)
            label, raw_search = engine_search(index, backend, vectors)
            for query in queries[:5]:  # warm-up
                raw_search(query)
                index.search_by_vector(query, "Q", k=10)
            raw, ours, filtered = median_ms([
                raw_search,
                lambda q: index.search_by_vector(q, "Q", k=10),
                lambda q: index.search_by_vector(q, "Q", k=10, filter={"n": {"$lt": count // 2}}),
            ], queries)
            index.close()
            open_s = float("nan")
            if backend != "qdrant-client-local":  # in memory: nothing to reopen
                started = time.perf_counter()
                InstructionIndex.open(folder, VectorOnlyModel()).close()
                open_s = time.perf_counter() - started
            print(f"| {backend} | {count:,} | {build_s:.1f} | {raw:.3f} ms ({label}) | {ours:.3f} ms | "
                  f"{ours / raw:.3f} | {filtered:.3f} ms | {open_s:.2f} |", flush=True)


if __name__ == "__main__":
    main()
