"""Filtered search on FAISS Flat with and without indexed metadata fields.

Writes N synthetic unit vectors (dimension 64) through the store with two metadata
fields, ``rare`` (a filter on it matches 1% of the documents) and ``half`` (50%), then
times ``FaissStore.search`` with filters on each, first unindexed (a ``json_each`` scan
of every document) and then after ``index_field`` (look-ups in the ``field_values``
side table). Prints p50/p99 latency per case and the time ``index_field`` took.

    .venv/bin/python benchmarks/filtered_search.py [N=100000] [QUERIES=100]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from inbedder_retrieval.stores import Document, open_store

DIM = 64
CHUNK = 10_000
FILTERS = {
    "rare == 1 (1%)": {"rare": 1},
    "half == 'a' (50%)": {"half": "a"},
    "rare >= 99 (1%)": {"rare": {"$gte": 99}},
}


def fill(store, count: int, rng: np.random.Generator) -> None:
    """``count`` documents: ``rare`` cycles 0..99, ``half`` alternates "a" and "b"."""
    store.create_space("a", DIM)
    for start in range(0, count, CHUNK):
        ids = range(start, min(start + CHUNK, count))
        vectors = rng.normal(size=(len(ids), DIM)).astype("float32")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.upsert([Document(f"d{i}", "", {"rare": i % 100, "half": "ab"[i % 2]}) for i in ids], {"a": vectors})


def percentiles_ms(store, filter: dict, queries: np.ndarray) -> tuple[float, float]:
    times = []
    for query in queries:
        start = time.perf_counter()
        store.search("a", query, 10, filter)
        times.append(time.perf_counter() - start)
    p50, p99 = np.percentile(times, [50, 99]) * 1000
    return float(p50), float(p99)


def main(count: int, queries: int) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(queries, DIM)).astype("float32")
    with tempfile.TemporaryDirectory() as folder:
        store = open_store("faiss", Path(folder), {}, create=True)
        fill(store, count, rng)
        scanned = {name: percentiles_ms(store, f, vectors) for name, f in FILTERS.items()}
        start = time.perf_counter()
        store.index_field("rare", "number")
        store.index_field("half")
        built = time.perf_counter() - start
        indexed = {name: percentiles_ms(store, f, vectors) for name, f in FILTERS.items()}
        store.close()
    print(f"N={count:,}, dimension {DIM}, FAISS Flat, k=10, {queries} queries per case; "
          f"index_field for both fields: {built:.1f} s\n")
    print("| filter | scan p50 | scan p99 | indexed p50 | indexed p99 | p50 speed-up |")
    print("|---|---|---|---|---|---|")
    for name in FILTERS:
        (s50, s99), (i50, i99) = scanned[name], indexed[name]
        print(f"| {name} | {s50:.1f} ms | {s99:.1f} ms | {i50:.1f} ms | {i99:.1f} ms | {s50 / i50:.1f}x |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000, int(sys.argv[2]) if len(sys.argv) > 2 else 100)
