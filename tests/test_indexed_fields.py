"""Indexed metadata fields: the FAISS side table's query plans, stores made before it, and
``InstructionIndex.create(indexed_fields=...)`` / ``index_field`` (the shared store suite
checks that results are the same indexed or not, on every backend)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from inbedder_retrieval.index import InstructionIndex
from inbedder_retrieval.stores import Document, open_store

DIM = 8
DOCS = [Document(f"d{i}", f"text {i}", {"mood": ["sad", "glad"][i % 2], "meta": {"year": 2000 + i}, "tags": ["x"]})
        for i in range(40)]
FILTERS = [
    {"mood": "sad"},
    {"mood": {"$in": ["glad", 1, True]}},
    {"meta.year": {"$gte": 2030}},
    {"meta.year": 2001, "mood": "glad"},
    {"$or": [{"mood": "sad"}, {"meta.year": {"$lt": 2003}}]},
]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype("float32")


@pytest.fixture()
def store(tmp_path):
    created = open_store("faiss", tmp_path, {}, create=True)
    created.create_space("a", DIM)
    created.upsert(DOCS, {"a": unit(np.random.default_rng(0).normal(size=(len(DOCS), DIM)))})
    yield created
    created.close()


def plan(store, filter) -> list[str]:
    sql, params = store.filter_query(filter)
    return [row[3] for row in store._db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


@pytest.mark.parametrize("filter", FILTERS, ids=[str(f) for f in FILTERS])
def test_a_filter_on_indexed_fields_uses_the_index_not_a_scan(store, filter):
    assert any(step.startswith("SCAN d") for step in plan(store, filter))  # today's json_each scan
    store.index_field("mood")
    store.index_field("meta.year", "number")
    steps = plan(store, filter)
    assert not any(step.startswith("SCAN") for step in steps), steps
    assert any("field_values USING PRIMARY KEY (field=? AND type=? AND value" in step for step in steps), steps


def scans(store, filter) -> bool:
    return any(step.startswith("SCAN d") for step in plan(store, filter))


def test_an_indexed_field_narrows_an_and_while_negations_and_or_with_unindexed_fields_scan(store):
    store.index_field("mood")
    assert not scans(store, {"mood": "sad", "tags": "x"})  # the look-up first, json_each on its rows only
    assert scans(store, {"mood": {"$ne": "sad"}})  # a negation matches most rows: it reads them all
    assert scans(store, {"$or": [{"mood": "sad"}, {"tags": "x"}]})


def _files(folder: Path) -> dict[str, str]:
    """Checksums of the store's files (SQLite's empty -wal/-shm files, made by any reader, aside)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_a_store_made_before_indexed_fields_opens_unchanged_and_upgrades_on_index_field(store, tmp_path):
    query = np.ones(DIM, dtype="float32")
    expected = [{h.id for h in store.search("a", query, 100, f)} for f in FILTERS]
    store.close()
    db = sqlite3.connect(tmp_path / "faiss-store" / "store.sqlite")  # as the previous release made it
    db.executescript("DROP TABLE field_values; DROP TABLE indexed_fields;")
    db.close()
    before, generation = _files(tmp_path), json.loads((tmp_path / "faiss-store/faiss/state.json").read_text())["generation"]
    old = open_store("faiss", tmp_path, {})
    assert old.indexed_fields() == {}
    assert [{h.id for h in old.search("a", query, 100, f)} for f in FILTERS] == expected
    assert _files(tmp_path) == before and old._db_generation() == generation  # opening and reading never write
    old.delete(["d0"])  # a write without indexed fields adds no table
    assert "field_values" not in {name for (name,) in old._db.execute("SELECT name FROM sqlite_master")}
    old.index_field("mood")
    old.index_field("meta.year", "number")
    assert old.indexed_fields() == {"meta.year": "number", "mood": "keyword"}
    assert [{h.id for h in old.search("a", query, 100, f)} for f in FILTERS] == [ids - {"d0"} for ids in expected]
    old.close()


def test_side_table_keeps_types_apart(store):
    store.upsert([Document("mixed", "m", {"mood": [1, "1", True, 1.0, None, {"a": 1}, [2]]})],
                 {"a": unit(np.ones((1, DIM)))})
    store.index_field("mood")
    rows = set(store._db.execute("SELECT type, value FROM field_values f JOIN documents d ON d.row = f.row "
                                 "WHERE d.id = 'mixed'"))
    assert rows == {("n", 1), ("s", "1"), ("b", 1)}  # 1 and 1.0 are one number; null, objects, lists: nothing


class VectorOnlyModel:
    """Stands in for an InBedder where no text is embedded (vectors are given)."""

    name, pooling, dim, fingerprint, dtype = "test-vectors", "fst_gen", DIM, "test", "float32"

    class description:  # noqa: N801 - mimics InBedder.description
        layer = -1

    @staticmethod
    def check_instruction(instruction: str) -> str:
        return instruction


@pytest.mark.parametrize("backend", ["faiss", "qdrant"])
def test_index_create_and_index_field_record_the_fields(tmp_path, backend):
    path = tmp_path / "idx"
    with InstructionIndex.create(path, VectorOnlyModel(), backend=backend,
                                 indexed_fields={"mood": "keyword", "meta.year": "number"}) as index:
        assert index.indexed_fields == index.store.indexed_fields() == {"mood": "keyword", "meta.year": "number"}
        index.index_field("tags")
        assert json.loads((path / "index.json").read_text())["indexed_fields"] == {
            "mood": "keyword", "meta.year": "number", "tags": "keyword"}
        assert index.store.indexed_fields() == {"meta.year": "number", "mood": "keyword", "tags": "keyword"}
        assert index.info()["indexed_fields"] == index.indexed_fields


@pytest.mark.parametrize(("fields", "error"), [("mood", TypeError), (["a..b"], ValueError),
                                               ({"mood": "integer"}, ValueError)])
def test_bad_indexed_fields_are_refused_before_anything_is_written(tmp_path, fields, error):
    with pytest.raises(error):
        InstructionIndex.create(tmp_path / "idx", VectorOnlyModel(), indexed_fields=fields)
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("damage", [
    "DELETE FROM field_values WHERE field = 'mood' AND row = (SELECT min(row) FROM field_values WHERE field = 'mood')",
    "INSERT INTO field_values VALUES ('mood', 's', 'furious', 1)",
    "UPDATE field_values SET value = 'furious' WHERE field = 'mood' AND value = 'sad'",
    "UPDATE field_values SET type = 's' WHERE field = 'meta.year'",
], ids=["missing", "stray", "changed", "retyped"])
def test_verify_finds_indexed_values_that_differ_from_the_documents(store, damage):
    """A filter on an indexed field reads only ``field_values``: verify() compares it with
    the metadata, both ways, and names the field."""
    from inbedder_retrieval.errors import CorruptIndexError

    store.index_field("mood")
    store.index_field("meta.year", "number")
    store.upsert(DOCS[:2], {"a": unit(np.random.default_rng(1).normal(size=(2, DIM)))})  # values of later writes too
    assert store.verify()["documents"] == len(DOCS)
    field = "meta.year" if "meta.year" in damage else "mood"
    with store.transaction():
        store._db.execute(damage)
    with pytest.raises(CorruptIndexError, match=rf"field {field!r} \(table field_values\)"):
        store.verify()
