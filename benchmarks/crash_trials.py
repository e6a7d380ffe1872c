"""SIGKILL a Qdrant store writer at random moments; after each kill, reopen and check that
the store holds exactly one committed state (every document of one version).

Engines: ``qdrant-edge`` (the embedded backend) and ``qdrant-client-local`` (a folder of
qdrant-client's local mode, opened with ``trust_index=True``). Write kinds: ``upsert``
(replace 40 documents), ``delete`` (delete 40 then re-add them: one transaction),
``set_vectors`` (both spaces), ``create_space`` (create, fill and drop a third space).

    .venv/bin/python benchmarks/crash_trials.py [TRIALS=20] [ENGINES=qdrant-edge,qdrant-client-local]
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from inbedder_retrieval.stores import Document, open_store

KINDS = ("upsert", "delete", "set_vectors", "create_space")
COUNT = 40
CHILD = """
import sys, pathlib, numpy as np
from inbedder_retrieval.stores import Document, open_store
folder, kind = pathlib.Path(sys.argv[1]), sys.argv[2]
store = open_store("qdrant", folder, {}, trust_index=True)
ids = [f"d{i}" for i in range(40)]
for version in range(1, 100_000):
    with store.transaction():
        full = np.tile([1.0, float(version), 0, 0, 0, 0, 0, 0], (40, 1))  # its own direction
        if kind == "upsert":
            store.upsert([Document(i, f"v{version}", {}) for i in ids], {"a": full, "b": full})
        elif kind == "delete":
            store.delete(ids)
            store.upsert([Document(i, f"v{version}", {}) for i in ids], {"a": full, "b": full})
        elif kind == "set_vectors":
            store.set_vectors("a", ids, full)
            store.set_vectors("b", ids, full)
        else:
            store.create_space("c", 8)
            store.set_vectors("c", ids, full)
            store.drop_space("c")
    print(version, flush=True)
"""


def make_folder(folder: Path, engine: str) -> None:
    if engine == "qdrant-client-local":  # as earlier versions of this library wrote it
        from qdrant_client import QdrantClient

        client = QdrantClient(path=str(folder / "qdrant-store" / "qdrant"))
        client.create_collection("inbedder", vectors_config={})
        client.close()
        store = open_store("qdrant", folder, {}, trust_index=True)
    else:
        store = open_store("qdrant", folder, {}, create=True)
    for space in ("a", "b"):
        store.create_space(space, 8)
    start = np.tile([1.0, 0, 0, 0, 0, 0, 0, 0], (COUNT, 1))
    store.upsert([Document(f"d{i}", "v0", {}) for i in range(COUNT)], {"a": start, "b": start})
    store.close()


def state(folder: Path) -> tuple[int, set[str], set[float], list[str]]:
    """(documents present, text versions, first vector components, spaces)."""
    store = open_store("qdrant", folder, {}, trust_index=True)
    try:
        ids = [f"d{i}" for i in range(COUNT)]
        docs = [doc for doc in store.get(ids) if doc is not None]
        # version v writes (1, v, 0, ...): stored normalised, its first component is 1/sqrt(1 + v^2)
        firsts = {round(float(v[0]), 4) for s in ("a", "b") for v in store.get_vectors(s, ids).values()}
        return len(docs), {doc.text for doc in docs}, firsts, store.spaces()
    finally:
        store.close()


def trial(folder: Path, kind: str, rng: random.Random) -> tuple[bool, int, tuple]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), kind], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    child.stdout.readline()  # the first transaction committed
    time.sleep(rng.uniform(0.0, 0.5))
    os.kill(child.pid, signal.SIGKILL)
    committed = len(child.stdout.read().splitlines()) + 1
    child.wait()
    found = state(folder)
    present, texts, firsts, spaces = found
    ok = present == COUNT and len(texts) == 1 and spaces == ["a", "b"] and len(firsts) == 1
    if ok and kind in ("upsert", "delete"):  # the vectors are those of the texts' version
        version = int(next(iter(texts))[1:])
        ok = abs(next(iter(firsts)) - round(1 / np.sqrt(1 + version**2), 4)) < 1e-4
    return ok, committed, found


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    engines = sys.argv[2].split(",") if len(sys.argv) > 2 else ["qdrant-edge", "qdrant-client-local"]
    rng = random.Random(0)
    print(f"{trials} SIGKILLs per engine and write kind, each at a random moment 0-0.5 s after the first commit")
    print("| engine | write | trials | consistent after reopen | transactions committed before the kill (median) |")
    print("|---|---|---|---|---|")
    for engine in engines:
        for kind in KINDS:
            with tempfile.TemporaryDirectory() as scratch:
                folder = Path(scratch)
                make_folder(folder, engine)
                results = [trial(folder, kind, rng) for _ in range(trials)]
            bad = [found for ok, _, found in results if not ok]
            commits = sorted(committed for _, committed, _ in results)
            print(f"| {engine} | {kind} | {trials} | {trials - len(bad)}/{trials} | {commits[len(commits) // 2]} |",
                  flush=True)
            for found in bad[:3]:
                print(f"  inconsistent: {found}")


if __name__ == "__main__":
    main()
