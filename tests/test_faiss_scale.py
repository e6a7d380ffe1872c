"""The FAISS store at scale (issue 15, item 3): snapshots plus append-only tails, search
options (``ef_search``, ``nprobe``) and exact filtered search on ANN indexes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3

import numpy as np
import pytest

from inbedder_retrieval.index import InstructionIndex
from inbedder_retrieval.stores import Document, open_store
from inbedder_retrieval.stores import faiss_store
from processes import child, wait_for

DIM = 16


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype("float32")


def docs(start: int, stop: int) -> list[Document]:
    return [Document(f"d{i}", f"text {i}", {"i": i, "rare": i % 10}) for i in range(start, stop)]


def exact(vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[str]:
    """Ids of the exact top ``k`` by inner product (numpy), among ``allowed`` positions."""
    scores = vectors @ query
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    order = np.argsort(-scores, kind="stable")[:k]
    return [f"d{i}" for i in order if np.isfinite(scores[i])]


@pytest.fixture()
def no_snapshots(monkeypatch):
    """Commits that only append never save a snapshot (as for a large space)."""
    monkeypatch.setattr(faiss_store, "SMALL_SNAPSHOT_BYTES", 0)
    monkeypatch.setattr(faiss_store, "TAIL_RATIO", 1e9)


def state_of(root) -> dict:
    return json.loads((root / "faiss-store" / "faiss" / "state.json").read_text())


def generation_of(root) -> int:
    with sqlite3.connect(root / "faiss-store" / "store.sqlite") as db:
        return int(db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])


# -- snapshots and tails ------------------------------------------------------------------------
@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])
def test_reopen_after_commits_no_snapshot_holds_returns_every_row(tmp_path, no_snapshots, factory):
    rng = np.random.default_rng(0)
    vectors = unit(rng.normal(size=(300, DIM)))
    store = open_store("faiss", tmp_path, {"factory": factory}, create=True)
    store.create_space("a", DIM)  # not an append: saved
    saved = state_of(tmp_path)["generation"]
    for start in range(0, 300, 100):
        store.upsert(docs(start, start + 100), {"a": vectors[start : start + 100]})
    assert state_of(tmp_path)["generation"] == saved < generation_of(tmp_path)  # nothing saved since
    assert store.unsaved
    store.close()  # a store closed without save() (or killed): its snapshot lacks 300 rows
    again = open_store("faiss", tmp_path, {"factory": factory})
    assert len(again) == 300 and again._indexes["a"].ntotal == 300
    for i in range(0, 300, 7):
        assert again.search("a", vectors[i], 1)[0].id == f"d{i}"
    again.close()


@pytest.mark.parametrize(("factory", "saves"), [("Flat", 0), ("HNSW16", 3)])
def test_only_indexes_with_a_costly_rebuild_are_saved_as_their_tail_grows(tmp_path, monkeypatch, factory, saves):
    """Appends double a space 3 times past the small size: HNSW is saved at each doubling,
    Flat, whose tail is a copy from SQLite, waits for ``save()``."""
    monkeypatch.setattr(faiss_store, "SMALL_SNAPSHOT_BYTES", 100 * DIM * 4)
    rng = np.random.default_rng(4)
    vectors = unit(rng.normal(size=(800, DIM)))
    store = open_store("faiss", tmp_path, {"factory": factory}, create=True)
    store.create_space("a", DIM)
    store.upsert(docs(0, 100), {"a": vectors[:100]})  # small: saved
    saved = [state_of(tmp_path)["generation"]]
    for start, stop in ((100, 200), (200, 400), (400, 800)):
        store.upsert(docs(start, stop), {"a": vectors[start:stop]})
        saved.append(state_of(tmp_path)["generation"])
    assert len(set(saved)) - 1 == saves and store.unsaved == (factory == "Flat")
    store.save()
    store.close()
    again = open_store("faiss", tmp_path, {"factory": factory})
    assert again._tail["a"] == 0 and again._indexes["a"].ntotal == 800
    assert all(again.search("a", vectors[i], 1)[0].id == f"d{i}" for i in range(0, 800, 37))
    again.close()


def test_a_reader_adds_only_the_rows_committed_since_it_last_looked(tmp_path, no_snapshots, monkeypatch):
    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(200, DIM)))
    writer = open_store("faiss", tmp_path, {}, create=True)
    writer.create_space("a", DIM)
    writer.upsert(docs(0, 100), {"a": vectors[:100]})
    reader = open_store("faiss", tmp_path, {})
    assert reader.search("a", vectors[5], 1)[0].id == "d5"
    held = reader._indexes["a"]
    monkeypatch.setattr(faiss_store.FaissStore, "_read_saved", lambda *a: pytest.fail("read a snapshot"))
    writer.upsert(docs(100, 200), {"a": vectors[100:]})
    assert reader.search("a", vectors[150], 1)[0].id == "d150"
    assert reader._indexes["a"] is held and held.ntotal == 200  # extended in place, no file read
    writer.close()
    reader.close()


def test_a_change_that_is_not_an_append_is_saved_at_once(tmp_path, no_snapshots):
    rng = np.random.default_rng(2)
    vectors = unit(rng.normal(size=(100, DIM)))
    store = open_store("faiss", tmp_path, {"factory": "HNSW16"}, create=True)
    store.create_space("a", DIM)
    store.upsert(docs(0, 100), {"a": vectors})
    assert store.unsaved
    store.delete(["d3"])
    store.set_vectors("a", ["d4"], -vectors[4:5])
    assert not store.unsaved and state_of(tmp_path)["generation"] == generation_of(tmp_path)
    store.close()
    again = open_store("faiss", tmp_path, {"factory": "HNSW16"})
    assert again.get(["d3"]) == [None] and again.search("a", -vectors[4], 1)[0].id == "d4"
    assert {hit.id for hit in again.search("a", vectors[3], 100)} == {f"d{i}" for i in range(100)} - {"d3"}
    again.close()


def test_a_commit_by_a_release_without_tails_makes_the_snapshot_stale(tmp_path, no_snapshots):
    """Such a commit bumps the generation but not ``appends_through``: the snapshot and the
    tail are not trusted, the space is rebuilt from SQLite (here: a vector it replaced)."""
    rng = np.random.default_rng(3)
    vectors = unit(rng.normal(size=(50, DIM)))
    store = open_store("faiss", tmp_path, {}, create=True)
    store.create_space("a", DIM)
    store.upsert(docs(0, 50), {"a": vectors})
    store.save()
    store.close()
    with sqlite3.connect(tmp_path / "faiss-store" / "store.sqlite") as db:  # what an older release would commit
        row = db.execute("SELECT row FROM documents WHERE id='d7'").fetchone()[0]
        db.execute("UPDATE vectors SET vector=? WHERE row=?", (unit(-vectors[7:8])[0].tobytes(), row))
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
    again = open_store("faiss", tmp_path, {})
    assert again.search("a", -vectors[7], 1)[0].id == "d7"
    assert again.search("a", -vectors[7], 1)[0].score == pytest.approx(1.0, abs=1e-5)
    again.close()


def test_import_saves_once_at_its_end_and_close_saves_what_is_left(tmp_path, no_snapshots, monkeypatch):
    from types import SimpleNamespace

    class Stand:
        name, fingerprint, pooling, dim, dtype = "synthetic", "synthetic-v1", "none", DIM, "float32"
        description = SimpleNamespace(layer=None)

        def check_instruction(self, instruction):
            return instruction

    rng = np.random.default_rng(4)
    vectors = unit(rng.normal(size=(64, DIM)))
    from inbedder_retrieval.shards import shard_header, shard_table, write_shard

    write_shard(tmp_path / "shards", 0, shard_table(shard_header(Stand(), ["q"]), docs(0, 64), {"q": vectors}))
    saves = []
    real = faiss_store.FaissStore.save
    monkeypatch.setattr(faiss_store.FaissStore, "save", lambda self: saves.append(1) or real(self))
    index = InstructionIndex.create(tmp_path / "idx", Stand(), instructions=["q"])
    saves.clear()
    index.import_embeddings([tmp_path / "shards"], chunk_size=8)  # 8 commits
    assert len(saves) == 1 and not index.store.unsaved
    index.store.upsert(docs(64, 65), {index.specs[0].space: vectors[:1]})
    assert index.store.unsaved and len(saves) == 1
    index.close()
    assert len(saves) == 2
    with InstructionIndex.open(tmp_path / "idx", Stand()) as again:
        assert generation_of(tmp_path / "idx") == state_of(tmp_path / "idx")["generation"]
        assert len(again) == 65 and again.search_by_vector(vectors[9], "q", 1)[0].id == "d9"


@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])
def test_a_killed_import_with_unsaved_tails_resumes_exactly(tmp_path, factory):
    """Killed inside the transaction of the 4th chunk, with no snapshot since the first
    commit: reopening adds the three committed chunks; the import again resumes with no
    duplicate; ``verify`` compares every vector with its FAISS copy."""
    from types import SimpleNamespace

    from inbedder_retrieval.shards import shard_header, shard_table, write_shard

    stand = SimpleNamespace(name="synthetic", fingerprint="synthetic-v1", pooling="none", dim=DIM, dtype="float32",
                            description=SimpleNamespace(layer=None), check_instruction=lambda q: q)
    rng = np.random.default_rng(5)
    vectors = {q: unit(rng.normal(size=(80, DIM))) for q in ("q1", "q2")}
    write_shard(tmp_path / "shards", 0, shard_table(shard_header(stand, ["q1", "q2"]), docs(0, 80), vectors))
    root, marker = tmp_path / "idx", tmp_path / "marker"
    InstructionIndex.create(root, stand, instructions=["q1", "q2"], store_options={"factory": factory}).close()
    process = child(f"""
        import pathlib, time
        from types import SimpleNamespace
        from inbedder_retrieval.index import InstructionIndex
        from inbedder_retrieval.stores import faiss_store
        faiss_store.SMALL_SNAPSHOT_BYTES, faiss_store.TAIL_RATIO = 0, 1e9
        stand = SimpleNamespace(name="synthetic", fingerprint="synthetic-v1", pooling="none", dim={DIM},
                                dtype="float32", description=SimpleNamespace(layer=None), check_instruction=lambda q: q)
        index = InstructionIndex.open({str(root)!r}, stand)
        real, calls = index.store._record_changes, []
        def stop_in_fourth():
            calls.append(1)
            if len(calls) == 4:
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(600)
            real()
        index.store._record_changes = stop_in_fourth
        index.import_embeddings([{str(tmp_path / 'shards')!r}], chunk_size=10)
    """, tmp_path)
    wait_for(marker, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert state_of(root)["generation"] < generation_of(root)  # the three chunks are in no snapshot
    with InstructionIndex.open(root, stand) as index:
        assert len(index) == 30
        for q in ("q1", "q2"):
            assert [hit.id for hit in index.search_by_vector(vectors[q][29], q, 1)] == ["d29"]
        report = index.import_embeddings([tmp_path / "shards"], chunk_size=10)
        assert (report.imported, report.skipped) == (50, 30) and len(index) == 80
        assert index.verify()["instructions"] == {"q1": 80, "q2": 80}
        for q in ("q1", "q2"):
            assert all(index.search_by_vector(vectors[q][i], q, 1)[0].id == f"d{i}" for i in range(80))
            assert len(index.search_by_vector(vectors[q][0], q, 200)) == 80  # no duplicate


# -- search options -----------------------------------------------------------------------------
def test_ef_search_and_nprobe_are_recorded_and_applied(tmp_path):
    from types import SimpleNamespace

    stand = SimpleNamespace(name="synthetic", fingerprint="synthetic-v1", pooling="none", dim=DIM, dtype="float32",
                            description=SimpleNamespace(layer=None), check_instruction=lambda q: q)
    index = InstructionIndex.create(tmp_path / "h", stand, instructions=["q"],
                                    store_options={"factory": "HNSW16", "ef_search": 77})
    index.close()
    assert json.loads((tmp_path / "h" / "index.json").read_text())["store_options"] == {"factory": "HNSW16",
                                                                                          "ef_search": 77}
    import faiss

    with InstructionIndex.open(tmp_path / "h", stand) as again:
        assert faiss.downcast_index(again.store._indexes[again.specs[0].space].index).hnsw.efSearch == 77
    with InstructionIndex.open(tmp_path / "h", stand, store_options={"ef_search": 300}) as deeper:
        assert faiss.downcast_index(deeper.store._indexes[deeper.specs[0].space].index).hnsw.efSearch == 300
    store = open_store("faiss", tmp_path / "ivf", {"factory": "IVF4,Flat", "nprobe": 3}, create=True)
    store.create_space("a", DIM)
    store.upsert(docs(0, 200), {"a": unit(np.random.default_rng(6).normal(size=(200, DIM)))})
    assert faiss.downcast_index(store._indexes["a"].index).nprobe == 3
    store.close()
    again = open_store("faiss", tmp_path / "ivf", {"factory": "IVF4,Flat"})
    assert faiss.downcast_index(again._indexes["a"].index).nprobe == 4  # the default, capped at the list count
    again.close()


@pytest.mark.parametrize("options, message", [
    ({"factory": "HNSW16", "ef_search": 0}, "ef_search must be a positive integer, got 0"),
    ({"factory": "HNSW16", "ef_search": "64"}, "ef_search must be a positive integer, got '64'"),
    ({"factory": "IVF4,Flat", "nprobe": 2.5}, "nprobe must be a positive integer, got 2.5"),
    ({"factory": "IVF4,Flat", "nprobe": True}, "nprobe must be a positive integer, got True"),
    ({"factory": "Flat", "ef_search": 64}, "ef_search applies to HNSW indexes; the factory 'Flat' makes none"),
    ({"factory": "HNSW16", "nprobe": 8}, "nprobe applies to IVF indexes; the factory 'HNSW16' makes none"),
    ({"factory": "IVF4,Flat", "nprobe": 5}, "nprobe 5 is more than the 4 lists of the factory 'IVF4,Flat'"),
    ({"factory": "IVF4,PQ4np", "rerank": 0}, "rerank must be a positive integer, got 0"),
    ({"factory": "HNSW16", "rerank": 4}, "rerank applies to indexes of compressed vectors .* 'HNSW16' keeps them whole"),
])
def test_bad_search_options_are_clear_errors_and_create_nothing(tmp_path, options, message):
    from types import SimpleNamespace

    stand = SimpleNamespace(name="synthetic", fingerprint="synthetic-v1", pooling="none", dim=DIM, dtype="float32",
                            description=SimpleNamespace(layer=None), check_instruction=lambda q: q)
    with pytest.raises(ValueError, match=message):
        InstructionIndex.create(tmp_path / "idx", stand, instructions=["q"], store_options=options)
    assert not (tmp_path / "idx").exists()


# -- exact filtered search on ANN indexes ---------------------------------------------------------
@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF8,Flat", "IVF8,PQ4np"])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_a_selective_filter_gives_the_exact_top_k_from_the_matching_rows_only(tmp_path, factory, metric, monkeypatch):
    monkeypatch.setattr(faiss_store.FaissStore, "_search_parameters", lambda *a: pytest.fail("searched the whole index"))
    if factory in ("Flat", "HNSW16"):  # they keep the vectors: none is read from SQLite
        monkeypatch.setattr(faiss_store.FaissStore, "_db_vectors", lambda *a: pytest.fail("read vectors from SQLite"))
    rng = np.random.default_rng(7)
    vectors = unit(rng.normal(size=(2000, DIM)))
    store = open_store("faiss", tmp_path, {"factory": factory, "metric": metric}, create=True)
    store.create_space("a", DIM)
    store.upsert(docs(0, 2000), {"a": vectors})
    allowed = np.arange(2000) % 10 == 3  # 10%: above EXACT_FILTER_RATIO, under EXACT_FILTER_ROWS
    for query in unit(rng.normal(size=(20, DIM))):
        hits = store.search("a", query, 10, {"rare": 3})
        if metric == "ip":
            assert [hit.id for hit in hits] == exact(vectors, query, 10, allowed)
        else:  # nearest in L2 = largest inner product for unit vectors
            assert [hit.id for hit in hits] == exact(vectors, query, 10, allowed)
            distances = ((vectors[[int(h.id[1:]) for h in hits]] - query) ** 2).sum(axis=1)
            np.testing.assert_allclose([-h.score for h in hits], distances, rtol=1e-4, atol=1e-5)
        assert all(hit.metadata["rare"] == 3 for hit in hits)
    few = store.search("a", vectors[13], 50, {"i": {"$in": [13, 23, 1999]}})  # fewer matches than k
    assert [hit.id for hit in few][0] == "d13" and {hit.id for hit in few} == {"d13", "d23", "d1999"}
    store.close()


def test_the_exact_scan_skips_deleted_and_replaced_rows(tmp_path):
    rng = np.random.default_rng(8)
    vectors = unit(rng.normal(size=(500, DIM)))
    store = open_store("faiss", tmp_path, {"factory": "HNSW16"}, create=True)
    store.create_space("a", DIM)
    store.upsert(docs(0, 500), {"a": vectors})
    store.delete(["d3"])  # HNSW: a tombstone
    store.upsert([Document("d13", "text 13", {"i": 13, "rare": 3})], {"a": -vectors[13:14]})  # a new row
    hits = store.search("a", -vectors[13], 5, {"rare": 3})
    assert hits[0].id == "d13" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert "d3" not in {hit.id for hit in store.search("a", vectors[3], 60, {"rare": 3})}
    store.close()


def test_a_larger_filter_searches_the_ann_index_deeper(tmp_path, monkeypatch):
    """Above the exact threshold the walk widens with the filter's selectivity (the
    effective efSearch grows as the allowed fraction shrinks)."""
    import faiss

    monkeypatch.setattr(faiss_store, "EXACT_FILTER_ROWS", 0)
    monkeypatch.setattr(faiss_store, "EXACT_FILTER_RATIO", 0.0)
    monkeypatch.setattr(faiss_store, "POST_FILTER_ROUNDS", 0)
    store = open_store("faiss", tmp_path, {"factory": "HNSW16", "ef_search": 20}, create=True)
    store.create_space("a", DIM)
    vectors = unit(np.random.default_rng(9).normal(size=(1000, DIM)))
    store.upsert(docs(0, 1000), {"a": vectors})
    seen = []
    real = faiss_store.FaissStore._search_parameters

    def spy(self, index, selector, fraction):
        params = real(self, index, selector, fraction)
        seen.append(params.efSearch)
        return params

    monkeypatch.setattr(faiss_store.FaissStore, "_search_parameters", spy)
    store.search("a", vectors[0], 10, {"rare": 1})
    assert seen == [200] and isinstance(faiss.downcast_index(store._indexes["a"].index), faiss.IndexHNSW)
    store.close()


@pytest.mark.parametrize("factory", ["Flat", "IVF8,PQ4np"])
def test_a_broad_filter_keeps_the_matching_rows_among_unfiltered_candidates(tmp_path, monkeypatch, factory):
    """Above the exact threshold, the top candidates are filtered in SQL: no selector, the
    matching rows are never all read, and on Flat the result is exact."""
    monkeypatch.setattr(faiss_store, "EXACT_FILTER_ROWS", 50)
    monkeypatch.setattr(faiss_store.FaissStore, "_search_parameters", lambda *a: pytest.fail("used a selector"))
    rng = np.random.default_rng(11)
    vectors = unit(rng.normal(size=(2000, DIM)))
    store = open_store("faiss", tmp_path, {"factory": factory, "nprobe": 8} if "IVF" in factory else {}, create=True)
    store.create_space("a", DIM)
    store.upsert(docs(0, 2000), {"a": vectors})
    allowed = np.arange(2000) % 10 < 5  # 50%
    limits = []
    real = faiss_store.FaissStore._matching_rows
    monkeypatch.setattr(faiss_store.FaissStore, "_matching_rows", lambda self, *a: limits.append(a[-1]) or real(self, *a))
    for query in unit(rng.normal(size=(10, DIM))):
        hits = [hit.id for hit in store.search("a", query, 10, {"rare": {"$lt": 5}})]
        assert hits == exact(vectors, query, 10, allowed)  # IVF8,PQ4np: 8 lists probed, 10 x k rescored exactly
    assert set(limits) == {51}  # only the probe: are there more than EXACT_FILTER_ROWS?
    if factory == "Flat":  # the first search is sized by the filter's density (50%), not by 51 / 2000
        fetched = []

        class Recording:
            def __init__(self, index):
                self.wrapped = index

            def __getattr__(self, name):
                return getattr(self.wrapped, name)

            def search(self, query, k, **kwargs):
                fetched.append(k)
                return self.wrapped.search(query, k, **kwargs)

        store._indexes["a"] = Recording(store._indexes["a"])
        store.search("a", vectors[0], 10, {"rare": {"$lt": 5}})
        assert fetched and fetched[0] <= 4 * 10 / 0.4
    store.close()


def test_a_broad_filter_whose_rows_rank_last_falls_back_to_a_selector(tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_store, "EXACT_FILTER_ROWS", 50)
    monkeypatch.setattr(faiss_store, "POST_FILTER_GROWTH", 1)  # the deeper search still misses every matching row
    used = []
    real = faiss_store.FaissStore._search_parameters
    monkeypatch.setattr(faiss_store.FaissStore, "_search_parameters", lambda *a: used.append(1) or real(*a))
    rng = np.random.default_rng(12)
    query = unit(rng.normal(size=(1, DIM)))[0]
    vectors = unit(rng.normal(size=(2000, DIM)))
    vectors = unit(np.where((np.arange(2000) % 10 == 3)[:, None], -np.abs(vectors @ query)[:, None] * query + 0.1 * vectors,
                            np.abs(vectors @ query)[:, None] * query + 0.1 * vectors))  # rare == 3: far from the query
    store = open_store("faiss", tmp_path, {}, create=True)
    store.create_space("a", DIM)
    store.upsert(docs(0, 2000), {"a": vectors})
    hits = [hit.id for hit in store.search("a", query, 10, {"rare": 3})]
    assert used and hits == exact(vectors, query, 10, np.arange(2000) % 10 == 3)
    store.close()


def test_a_compressed_index_reranks_its_candidates_with_the_stored_vectors(tmp_path):
    """IVF-PQ scores approximate codes; with ``rerank`` the top k are chosen by exact
    scores from SQLite: all 500 rows as candidates give numpy's exact top k and scores."""
    rng = np.random.default_rng(10)
    vectors = unit(rng.normal(size=(500, DIM)))
    options = {"factory": "IVF4,PQ4np", "nprobe": 4}
    store = open_store("faiss", tmp_path, {**options, "rerank": 50}, create=True)
    store.create_space("a", DIM)
    store.upsert(docs(0, 500), {"a": vectors})
    queries = unit(rng.normal(size=(20, DIM)))
    for query in queries:
        hits = store.search("a", query, 10)
        assert [hit.id for hit in hits] == exact(vectors, query, 10)
        np.testing.assert_allclose([hit.score for hit in hits], np.sort(vectors @ query)[::-1][:10], atol=1e-5)
    store.close()
    plain = open_store("faiss", tmp_path, {**options, "rerank": 1})  # the codes' own order
    found = [len({hit.id for hit in plain.search("a", q, 10)} & set(exact(vectors, q, 10))) for q in queries]
    assert sum(found) < 20 * 10
    plain.close()
