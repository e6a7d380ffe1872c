"""One suite for every store backend (and FAISS index type)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from inbedder_retrieval.stores import Document, FilterError, open_store
from inbedder_retrieval.stores.filters import MAX_DEPTH, MAX_TERMS

DIM = 8
#: (id, backend, options): FAISS index types, embedded Qdrant (qdrant-edge) and
#: qdrant-client (in memory: the same client code as a server)
BACKENDS = [
    ("faiss-Flat", "faiss", {}),
    ("faiss-HNSW16", "faiss", {"factory": "HNSW16"}),
    ("qdrant-edge", "qdrant", {}),
    ("qdrant-client-memory", "qdrant", {"location": ":memory:"}),
]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype("float32")


@pytest.fixture(params=BACKENDS, ids=[b[0] for b in BACKENDS])
def make_store(request, tmp_path):
    """make() creates the store the first time and opens it afterwards."""
    name, backend, options = request.param
    opened = []

    def make():
        store = open_store(backend, tmp_path, options, create=not opened)
        opened.append(store)
        return store

    make.persistent = "memory" not in name
    yield make
    for store in opened:
        store.close()


@pytest.fixture()
def filled(make_store):
    store = make_store()
    store.create_space("a", DIM)
    store.create_space("b", DIM)
    rng = np.random.default_rng(0)
    docs = [Document(f"d{i}", f"text {i}", {"n": i, "colour": ["red", "blue"][i % 2]}) for i in range(20)]
    vectors = {"a": unit(rng.normal(size=(20, DIM))), "b": unit(rng.normal(size=(20, DIM)))}
    store.upsert(docs, vectors)
    return store, docs, vectors


def test_upsert_get_search(filled):
    store, docs, vectors = filled
    assert len(store) == 20 and sorted(store.spaces()) == ["a", "b"]
    assert store.get(["d3", "missing", "d0"]) == [docs[3], None, docs[0]]
    for space in ("a", "b"):
        hits = store.search(space, vectors[space][5], k=3)
        assert hits[0].id == "d5" and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[0].text == "text 5" and hits[0].metadata == {"n": 5, "colour": "blue"}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    np.testing.assert_allclose(store.get_vectors("a", ["d2"])["d2"], vectors["a"][2], atol=1e-6)


def test_upsert_replaces_text_metadata_and_vectors(filled):
    store, _, vectors = filled
    new = {"a": vectors["a"][7:8], "b": vectors["b"][7:8]}
    store.upsert([Document("d1", "replaced", {"n": 100})], new)
    assert len(store) == 20
    assert store.get(["d1"])[0] == Document("d1", "replaced", {"n": 100})
    hits = store.search("a", vectors["a"][7], k=2)
    assert {h.id for h in hits} == {"d1", "d7"}
    assert all(h.id != "d1" for h in store.search("a", vectors["a"][1], k=1))


def test_delete(filled):
    store, _, vectors = filled
    assert store.delete(["d4", "nope"]) == 1
    assert len(store) == 19 and store.get(["d4"]) == [None]
    assert all(h.id != "d4" for h in store.search("a", vectors["a"][4], k=19))
    assert len(store.search("a", vectors["a"][4], k=50)) == 19


def test_filters(filled):
    store, _, vectors = filled
    query = vectors["a"][0]
    assert {h.id for h in store.search("a", query, 20, {"colour": "blue"})} == {f"d{i}" for i in range(1, 20, 2)}
    assert {h.metadata["n"] for h in store.search("a", query, 20, {"n": {"$gte": 17}})} == {17, 18, 19}
    assert {h.metadata["n"] for h in store.search("a", query, 20, {"n": {"$in": [2, 3]}})} == {2, 3}
    either = {"$or": [{"n": 1}, {"n": {"$lt": 1}}]}
    assert {h.metadata["n"] for h in store.search("a", query, 20, either)} == {0, 1}
    assert store.search("a", query, 5, {"colour": "green"}) == []
    with pytest.raises(FilterError, match=r"Unsupported filter operator '\$regex'"):
        store.search("a", query, 5, {"colour": {"$regex": "r.*"}})
    with pytest.raises(FilterError, match="Unsupported filter field"):
        store.search("a", query, 5, {"bad key') OR 1=1 --": 1})


def test_transaction_rolls_back_everything(filled):
    store, docs, vectors = filled
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.delete(["d0", "d1"])
            store.upsert([Document("new", "new", {})], {s: v[:1] for s, v in vectors.items()})
            raise RuntimeError("crash")
    assert len(store) == 20 and store.get(["new", "d0"]) == [None, docs[0]]
    assert store.search("a", vectors["a"][0], k=1)[0].id == "d0"


def test_reopen_gives_the_same_results(filled, make_store):
    if not make_store.persistent:
        pytest.skip("an in-memory store does not outlive close()")
    store, _, vectors = filled
    store.save() if hasattr(store, "save") else None
    before = store.search("b", vectors["b"][9], k=5)
    store.close()
    again = make_store()
    assert len(again) == 20
    after = again.search("b", vectors["b"][9], k=5)
    assert [h.id for h in after] == [h.id for h in before]
    assert [h.score for h in after] == pytest.approx([h.score for h in before], abs=1e-5)


def test_drop_space_and_iterate(filled):
    store, docs, _ = filled
    store.drop_space("b")
    assert store.spaces() == ["a"]
    batches = list(store.iter_documents(batch_size=7))
    assert [len(b) for b in batches] == [7, 7, 6]
    assert sorted(d.id for b in batches for d in b) == sorted(d.id for d in docs)


def test_many_replacements_never_return_stale_vectors(make_store):
    """HNSW cannot remove ids: tombstones and compaction must keep results right."""
    store = make_store()
    store.create_space("a", DIM)
    rng = np.random.default_rng(1)
    current = {}
    for _round in range(6):
        ids = [f"d{i}" for i in range(30)]
        matrix = unit(rng.normal(size=(30, DIM)))
        store.upsert([Document(i, i, {}) for i in ids], {"a": matrix})
        current = dict(zip(ids, matrix))
        store.delete(["d0"])
        current.pop("d0")
    assert len(store) == 29
    for doc_id in ("d3", "d17"):
        assert store.search("a", current[doc_id], k=1)[0].id == doc_id
    assert len(store.search("a", current["d3"], k=100)) == 29


def test_set_vectors_replaces_a_space_without_stale_vectors(filled):
    store, _, vectors = filled
    flipped = -vectors["a"][:5]
    store.set_vectors("a", [f"d{i}" for i in range(5)], flipped)
    store.set_vectors("a", [f"d{i}" for i in range(5)], flipped)
    hits = store.search("a", flipped[2], k=3)
    assert hits[0].id == "d2" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert len(store.search("a", flipped[2], k=100)) == 20  # no duplicates
    np.testing.assert_allclose(store.get_vectors("a", ["d3"])["d3"], flipped[3], atol=1e-6)
    with pytest.raises(KeyError, match="missing"):
        store.set_vectors("a", ["missing"], flipped[:1])


def test_faiss_save_rewrites_only_changed_spaces(tmp_path):
    store = open_store("faiss", tmp_path, {}, create=True)
    store.create_space("a", DIM)
    store.create_space("b", DIM)
    rng = np.random.default_rng(2)
    store.upsert([Document("d0", "t", {})], {s: unit(rng.normal(size=(1, DIM))) for s in ("a", "b")})
    store.save()
    folder = tmp_path / "faiss-store" / "faiss"
    before = {p.name for p in folder.glob("*.faiss")}
    store.set_vectors("b", ["d0"], unit(rng.normal(size=(1, DIM))))
    store.save()
    after = {p.name for p in folder.glob("*.faiss")}
    assert len(before) == len(after) == 2 and len(before & after) == 1  # only b's file is new
    store.close()
    again = open_store("faiss", tmp_path, {})
    np.testing.assert_allclose(again.search("b", again.get_vectors("b", ["d0"])["d0"], 1)[0].score, 1.0, atol=1e-5)
    again.close()


# -- one filter semantics on every backend ----------------------------------------------------
TYPED = {
    "t0": {"flag": True, "n": 1, "s": "1", "tags": ["red", "blue"], "x": 1.0},
    "t1": {"flag": False, "n": 1.0, "s": "a"},
    "t2": {"flag": 1, "n": 2, "s": "b", "tags": ["green"], "obj": {"k": 1}},
    "t3": {"n": "2", "s": "B"},
    "t4": {},
    "t5": {"n": None},
    "t6": {"user": {"country": "FR"}, "n": -3.5},
}
ALL = set(TYPED)
SEMANTICS = [
    ({"flag": True}, {"t0"}),  # booleans equal booleans only
    ({"flag": 1}, {"t2"}),
    ({"flag": False}, {"t1"}),
    ({"n": 1}, {"t0", "t1"}),  # numbers compare as numbers: 1 == 1.0
    ({"n": 1.0}, {"t0", "t1"}),
    ({"n": 2}, {"t2"}),  # never the string "2"
    ({"n": "2"}, {"t3"}),
    ({"s": "1"}, {"t0"}),
    ({"s": "b"}, {"t2"}),  # case-sensitive
    ({"n": {"$ne": 1}}, ALL - {"t0", "t1"}),  # missing and null fields are "not equal"
    ({"n": {"$gt": 0}}, {"t0", "t1", "t2"}),  # numeric fields only
    ({"n": {"$lt": 0}}, {"t6"}),
    ({"n": {"$gte": 1, "$lte": 1}}, {"t0", "t1"}),
    ({"n": {"$gt": -4.0, "$lt": 1}}, {"t6"}),
    ({"tags": "red"}, {"t0"}),  # a list matches when an item does
    ({"tags": {"$in": ["green", "red"]}}, {"t0", "t2"}),
    ({"tags": {"$nin": ["red"]}}, ALL - {"t0"}),
    ({"tags": {"$ne": "red"}}, ALL - {"t0"}),
    ({"obj": 1}, set()),  # an object matches no value
    ({"obj.k": 1}, {"t2"}),
    ({"user.country": "FR"}, {"t6"}),
    ({"n": {"$in": [2, "2"]}}, {"t2", "t3"}),
    ({"s": {"$in": ["a", True]}}, {"t1"}),
    ({"n": {"$nin": [1, 2]}}, {"t3", "t4", "t5", "t6"}),
    ({"$or": [{"flag": True}, {"n": {"$lt": 0}}]}, {"t0", "t6"}),
    ({"$and": [{"n": {"$gte": 1}}, {"s": "1"}]}, {"t0"}),
    ({"flag": True, "n": 1}, {"t0"}),
    ({"$or": [{"x": 1}, {"s": "B"}]}, {"t0", "t3"}),
    ({"$or": [{"$and": [{"n": 1}, {"flag": False}]}, {"tags": "green"}]}, {"t1", "t2"}),
]


#: every field SEMANTICS filters on, with the kind it is indexed as: mixed-type fields
#: ("n" holds strings too, "flag" an integer) must give the same results indexed
FIELDS = {"flag": "bool", "n": "number", "s": "keyword", "tags": "keyword", "obj": "keyword",
          "obj.k": "number", "user.country": "keyword", "x": "number"}
#: when the fields are indexed: never, before the documents are written, or after
INDEXING = ["scan", "indexed-before", "indexed-after"]


@pytest.fixture(params=INDEXING)
def typed(make_store, request):
    store = make_store()
    store.create_space("a", DIM)
    vectors = unit(np.random.default_rng(3).normal(size=(len(TYPED), DIM)))
    index_all = functools.partial(_index_fields, store, FIELDS)
    if request.param == "indexed-before":
        index_all()
    store.upsert([Document(i, i, m) for i, m in TYPED.items()], {"a": vectors})
    if request.param == "indexed-after":
        index_all()
    return store, vectors[0]


def _index_fields(store, fields: dict[str, str]) -> None:
    for field, kind in fields.items():
        store.index_field(field, kind)


@pytest.mark.parametrize(("filter", "expected"), SEMANTICS, ids=[str(f) for f, _ in SEMANTICS])
def test_filter_semantics_are_the_same_on_every_backend(typed, filter, expected):
    store, query = typed
    assert {hit.id for hit in store.search("a", query, 100, filter)} == expected


def _local_payload_indexes(store) -> bool:
    """Whether the store keeps indexed fields (qdrant-client's local modes keep none)."""
    return store.backend == "faiss" or store.engine.local


def test_indexed_fields_follow_upserts_deletes_rollbacks_and_reopening(filled, make_store):
    store, docs, vectors = filled
    store.index_field("colour")
    store.index_field("n", "number")
    one = {s: v[:1] for s, v in vectors.items()}
    store.upsert([Document("d1", "replaced", {"colour": ["green", "red"], "n": 100})], one)
    store.delete(["d3"])
    with pytest.raises(RuntimeError), store.transaction():
        store.index_field("colour", "bool")
        store.index_field("later")
        store.upsert([Document("d5", "rolled back", {"colour": "green"})], one)
        raise RuntimeError("crash")
    query = vectors["a"][0]
    expected = [({"colour": "blue"}, {f"d{i}" for i in range(5, 20, 2)}), ({"colour": "green"}, {"d1"}),
                ({"n": {"$gte": 17}}, {"d17", "d18", "d19", "d1"}), ({"colour": {"$nin": ["blue"]}},
                {f"d{i}" for i in range(0, 20, 2)} | {"d1"})]
    kinds = {"colour": "keyword", "n": "number"}
    for reopen in (False, True):
        if reopen and not make_store.persistent:
            return
        if reopen:
            store.close()
            store = make_store()
        assert store.indexed_fields() == (kinds if _local_payload_indexes(store) else {})
        for filter, ids in expected:
            assert {hit.id for hit in store.search("a", query, 100, filter)} == ids, filter


def _nested(depth: int) -> dict:
    filter: dict = {"n": 1}
    for _ in range(depth):
        filter = {"$and": [filter]}
    return filter


BAD_FILTERS = [
    ({"n": {"$gt": "a"}}, "compares numbers only"),
    ({"n": {"$lte": True}}, "compares numbers only"),
    ({"n": float("nan")}, "finite"),
    ({"n": {"$ne": float("nan")}}, "finite"),
    ({"n": {"$in": [1, float("inf")]}}, "finite"),
    ({"n": None}, "must be str, int, float or bool"),
    ({"n": [1, 2]}, "must be str, int, float or bool"),
    ({"n": {}}, "empty condition"),
    ({"n": {"$in": []}}, "non-empty list"),
    ({"mood\n": "x"}, "Unsupported filter field"),
    ({"a..b": 1}, "Unsupported filter field"),
    ({"$not": {"n": 1}}, "Unsupported filter operator"),
    ({"n": {"$regex": "x"}}, "Unsupported filter operator"),
    ({}, "non-empty mapping"),
    (_nested(MAX_DEPTH + 1), "nested too deeply"),
    (_nested(300), "nested too deeply"),  # not SQLite's parser stack nor a RecursionError
    ({"n": {"$in": list(range(MAX_TERMS + 1))}}, "too large"),
    ({"$or": [{"n": i} for i in range(MAX_TERMS + 1)]}, "too large"),
]


@pytest.mark.parametrize(("filter", "match"), BAD_FILTERS, ids=[m + str(i) for i, (_, m) in enumerate(BAD_FILTERS)])
def test_bad_filters_are_refused_alike(typed, filter, match):
    store, query = typed
    with pytest.raises(FilterError, match=match):
        store.search("a", query, 5, filter)


def test_deepest_allowed_filter_works(typed):
    store, query = typed
    assert {hit.id for hit in store.search("a", query, 10, _nested(MAX_DEPTH))} == {"t0", "t1"}


@pytest.mark.parametrize(("k", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("3", TypeError),
                                          (True, TypeError), (None, TypeError)])
def test_bad_k_is_refused(typed, k, error):
    store, query = typed
    with pytest.raises(error, match="k must be"):
        store.search("a", query, k)


@pytest.mark.parametrize(("field", "kind", "error"), [("a..b", "keyword", FilterError), ("x y", "keyword", FilterError),
                                                    (5, "keyword", FilterError), ("n", "integer", ValueError)])
def test_bad_indexed_fields_are_refused(typed, field, kind, error):
    store, _ = typed
    with pytest.raises(error):
        store.index_field(field, kind)


@pytest.mark.parametrize("ids", ["t0", "ab2", b"t0", [None], ["t0", 1], [b"x"], None, 5])
@pytest.mark.parametrize("method", ["get", "delete", "get_vectors"])
def test_ids_must_be_a_list_of_str(typed, method, ids):
    store, _ = typed
    call = getattr(store, method)
    with pytest.raises(TypeError):
        call("a", ids) if method == "get_vectors" else call(ids)
    assert len(store) == len(TYPED)
