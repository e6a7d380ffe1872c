"""The Qdrant store: nothing unpickled from a folder, damaged shards refused, crashes undone."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from inbedder_retrieval.errors import CorruptIndexError, IndexLockedError, UntrustedIndexError
from inbedder_retrieval.stores import Document, open_store
from inbedder_retrieval.stores.qdrant_store import EDGE_DIR, JOURNAL, STATE

DIM = 8


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype("float32")


class _Planted:
    """Unpickling this creates ``marker``: what a crafted pickle in a shared folder could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def legacy_folder(store_folder: Path, marker: Path) -> Path:
    """A store folder as qdrant-client's local mode wrote it, with one point replaced by a
    crafted pickle."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(store_folder / "qdrant"))
    client.create_collection("inbedder", vectors_config={"a": models.VectorParams(size=4, distance=models.Distance.COSINE)})
    client.upsert("inbedder", [models.PointStruct(id=1, vector={"a": [1.0, 0, 0, 0]},
                                                  payload={"id": "x", "text": "t", "metadata": {}})])
    client.close()
    database = store_folder / "qdrant" / "collection" / "inbedder" / "storage.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("UPDATE points SET point = ?", (pickle.dumps(_Planted(marker)),))
    return database


def test_a_local_mode_folder_is_refused_and_nothing_is_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    database = legacy_folder(tmp_path / "qdrant-store", marker)
    before = database.read_bytes()
    with pytest.raises(UntrustedIndexError, match="pickles.*trust_index=True.*rebuild"):
        open_store("qdrant", tmp_path, {})
    assert not marker.exists() and database.read_bytes() == before
    assert not (tmp_path / "qdrant-store" / EDGE_DIR).exists()  # and no new shard beside it
    # what the default protects from: trusting the folder unpickles the planted object
    with pytest.raises(Exception):  # noqa: B017 - qdrant-client fails on the planted object after loading it
        open_store("qdrant", tmp_path, {}, trust_index=True)
    assert marker.exists()


def test_instruction_index_open_refuses_a_local_mode_folder(tmp_path, tiny_model_dir):
    from inbedder_retrieval import InBedder
    from inbedder_retrieval.index import MANIFEST, InstructionIndex

    model = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")
    InstructionIndex.create(tmp_path / "idx", model).close()  # a FAISS manifest, then made a local-mode one
    manifest = json.loads((tmp_path / "idx" / MANIFEST).read_text())
    (tmp_path / "idx" / MANIFEST).write_text(json.dumps({**manifest, "backend": "qdrant"}))
    shutil.rmtree(tmp_path / "idx" / "faiss-store")
    marker = tmp_path / "code-ran"
    legacy_folder(tmp_path / "idx" / "qdrant-store", marker)
    with pytest.raises(UntrustedIndexError, match="trust_index=True"):
        InstructionIndex.open(tmp_path / "idx", model)
    assert not marker.exists()


def test_qdrant_edge_files_hold_no_pickles(tmp_path):
    store = open_store("qdrant", tmp_path, {}, create=True)
    store.create_space("a", DIM)
    rng = np.random.default_rng(0)
    store.upsert([Document(f"d{i}", f"text {i}", {"n": i, "tags": ["x"]}) for i in range(50)],
                 {"a": unit(rng.normal(size=(50, DIM)))})
    store.close()
    for file in (tmp_path / "qdrant-store").rglob("*"):
        if file.is_file():
            data = file.read_bytes()
            # protocol 2-5 pickles start with PROTO; protocol 0/1 ones end with STOP after a GLOBAL
            assert not any(data.startswith(bytes([0x80, proto])) for proto in range(2, 6)), file
            assert b"c__builtin__" not in data and b"cbuiltins" not in data, file


# -- creating versus opening; damage ---------------------------------------------------------
def _filled(folder: Path) -> dict[str, np.ndarray]:
    store = open_store("qdrant", folder, {}, create=True)
    store.create_space("a", DIM)
    store.create_space("b", DIM)
    rng = np.random.default_rng(1)
    vectors = {s: unit(rng.normal(size=(30, DIM))) for s in ("a", "b")}
    store.upsert([Document(f"d{i}", f"text {i}", {"n": i}) for i in range(30)], vectors)
    store.close()
    return vectors


def test_opening_never_creates_a_store(tmp_path):
    with pytest.raises(CorruptIndexError, match="is missing"):
        open_store("qdrant", tmp_path, {})
    assert not (tmp_path / "qdrant-store").exists()
    _filled(tmp_path)
    with pytest.raises(FileExistsError):
        open_store("qdrant", tmp_path, {}, create=True)


def _segment_file(shard: Path, name: str) -> Path:
    return next(shard.glob(f"segments/*/{name}"))


def _missing(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _garbled(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:64] = bytes(range(200, 256)) + bytes(8)
    path.write_bytes(bytes(data[: max(len(data), 64)]))


# (what, file under qdrant-store/, damage, message): each must end in CorruptIndexError
DAMAGE = [
    ("shard folder", lambda s: s / EDGE_DIR, _missing, "is missing"),
    ("engine config", lambda s: s / EDGE_DIR / "edge_config.json", _missing, "edge_config.json is missing"),
    ("engine config", lambda s: s / EDGE_DIR / "edge_config.json", _empty, "edge_config.json is truncated"),
    ("engine config", lambda s: s / EDGE_DIR / "edge_config.json", _garbled, "edge_config.json is truncated"),
    ("id tracker", lambda s: _segment_file(s / EDGE_DIR, "mutable_id_tracker.mappings"), _missing, "state.json recorded"),
    ("id tracker", lambda s: _segment_file(s / EDGE_DIR, "mutable_id_tracker.mappings"), _empty, "state.json recorded"),
    ("id tracker", lambda s: _segment_file(s / EDGE_DIR, "mutable_id_tracker.versions"), _missing, "state.json recorded"),
    ("payload pages", lambda s: _segment_file(s / EDGE_DIR, "payload_storage/page_0.dat"), _missing, "not a readable"),
    ("payload pages", lambda s: _segment_file(s / EDGE_DIR, "payload_storage/page_0.dat"), _empty, "is damaged"),
    ("payload tracker", lambda s: _segment_file(s / EDGE_DIR, "payload_storage/tracker.dat"), _empty, "not a readable"),
    ("segment config", lambda s: _segment_file(s / EDGE_DIR, "segment.json"), _missing, "not a readable"),
    ("segment config", lambda s: _segment_file(s / EDGE_DIR, "segment.json"), _garbled, "not a readable"),
    ("vector config", lambda s: _segment_file(s / EDGE_DIR, "vector_storage-a/vectors/config.json"), _missing,
     "not a readable"),
    ("stamp", lambda s: s / STATE, _missing, "state.json is missing"),
    ("stamp", lambda s: s / STATE, _garbled, "state.json is truncated"),
]


def _read_everything(folder: Path, vectors: dict[str, np.ndarray]) -> None:
    """Open the store and check every document, vector and search result."""
    store = open_store("qdrant", folder, {})
    try:
        ids = [f"d{i}" for i in range(30)]
        assert len(store) == 30 and store.spaces() == ["a", "b"]
        assert [doc.text for doc in store.get(ids)] == [f"text {i}" for i in range(30)]
        for space, matrix in vectors.items():
            assert [store.search(space, matrix[i], 1)[0].id for i in range(30)] == ids
    finally:
        store.close()


@pytest.mark.parametrize(("what", "locate", "damage", "match"), DAMAGE,
                         ids=[f"{w}-{d.__name__[1:]}" for w, _, d, _ in DAMAGE])
def test_damaged_shard_files_give_a_typed_error_or_the_right_answers(tmp_path, what, locate, damage, match):
    """The engine repairs some damage itself (from its write-ahead log); everything else is
    ``CorruptIndexError``, never a store that opens with documents missing."""
    vectors = _filled(tmp_path)
    damage(locate(tmp_path / "qdrant-store"))
    try:
        _read_everything(tmp_path, vectors)
    except CorruptIndexError as error:
        assert re.search(match, str(error)), error


@pytest.mark.parametrize(("locate", "damage", "match"), [
    (lambda s: s / EDGE_DIR, _missing, "is missing"),
    (lambda s: s / EDGE_DIR / "edge_config.json", _garbled, "edge_config.json is truncated"),
    (lambda s: s / STATE, _missing, "state.json is missing"),
    (lambda s: s / STATE, _garbled, "state.json is truncated"),
    (lambda s: s / EDGE_DIR / "segments", _missing, "segments is missing or empty"),  # not a new empty segment
    (lambda s: _segment_file(s / EDGE_DIR, "version.info"), _missing, "version.info is missing"),
])
def test_files_the_store_reads_first_are_always_checked(tmp_path, locate, damage, match):
    _filled(tmp_path)
    damage(locate(tmp_path / "qdrant-store"))
    with pytest.raises(CorruptIndexError, match=match):
        open_store("qdrant", tmp_path, {})


def test_opening_a_damaged_shard_adds_no_files(tmp_path):
    _filled(tmp_path)
    shutil.rmtree(tmp_path / "qdrant-store" / EDGE_DIR / "segments")
    before = sorted((tmp_path / "qdrant-store").rglob("*"))
    with pytest.raises(CorruptIndexError):
        open_store("qdrant", tmp_path, {})
    assert sorted((tmp_path / "qdrant-store").rglob("*")) == before


def _garbled_at(offset: int):
    def damage(path: Path) -> None:
        with open(path, "r+b") as handle:
            handle.seek(offset)
            handle.write(bytes(range(200, 256)) + bytes(8))
    return damage


@pytest.mark.parametrize("offset", [0, 4 * DIM * 17, 4 * DIM * 29 + 4], ids=["first-vector", "middle", "last-vector"])
def test_garbled_vector_storage_is_detected_on_open(tmp_path, offset):
    """qdrant-edge keeps no checksum of its vectors: the stamp's CRC-32 per vector file does."""
    _filled(tmp_path)
    chunk = _segment_file(tmp_path / "qdrant-store" / EDGE_DIR, "vector_storage-a/vectors/chunk_0.mmap")
    _garbled_at(offset)(chunk)
    with pytest.raises(CorruptIndexError, match=r"vector_storage-a/vectors/chunk_0\.mmap \(vectors of space 'a'\)"):
        open_store("qdrant", tmp_path, {})


def test_verify_rereads_every_vector_file(tmp_path):
    vectors = _filled(tmp_path)
    store = open_store("qdrant", tmp_path, {})
    try:
        assert store.verify() == {"documents": 30, "spaces": {"a": 30, "b": 30}}
        store.upsert([Document("new", "new", {})], {s: v[:1] for s, v in vectors.items()})
        assert store.verify() == {"documents": 31, "spaces": {"a": 31, "b": 31}}
        chunk = _segment_file(tmp_path / "qdrant-store" / EDGE_DIR, "vector_storage-b/vectors/chunk_0.mmap")
        stat = chunk.stat()
        _garbled_at(4 * DIM * 3)(chunk)
        os.utime(chunk, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with its times put back
        with pytest.raises(CorruptIndexError, match="vectors of space 'b'"):
            store.verify()
    finally:
        store.close()


def test_a_stamp_without_checksums_still_opens(tmp_path):
    """Indexes written before the stamp held checksums open as before."""
    vectors = _filled(tmp_path)
    stamp_file = tmp_path / "qdrant-store" / STATE
    stamp = json.loads(stamp_file.read_text())
    del stamp["files"]
    stamp_file.write_text(json.dumps(stamp))
    _read_everything(tmp_path, vectors)
    assert "files" not in json.loads(stamp_file.read_text())  # opening never writes
    store = open_store("qdrant", tmp_path, {})
    store.delete(["d0"])
    store.close()
    assert set(json.loads(stamp_file.read_text())["files"]) == {"a", "b"}


def test_rewritten_vectors_are_checksummed_again_at_commit(tmp_path):
    """Each commit records the files it changed, so honest writes never look like damage."""
    vectors = _filled(tmp_path)
    for round_ in range(3):
        store = open_store("qdrant", tmp_path, {})
        store.set_vectors("a", ["d1", "d2"], vectors["a"][[5, 6]] * (round_ + 2))
        store.upsert([Document(f"r{round_}", "x", {})], {s: v[:1] for s, v in vectors.items()})
        store.close()
    store = open_store("qdrant", tmp_path, {})
    assert store.verify()["spaces"] == {"a": 33, "b": 33}
    store.close()


def test_an_emptied_id_tracker_is_not_an_empty_index(tmp_path):
    """After a flush the engine keeps points only in the segment: losing its id tracker
    opens an empty shard, which the stamp catches."""
    vectors = _filled(tmp_path)
    store = open_store("qdrant", tmp_path, {})
    store.upsert([Document("d0", "text 0", {"n": 0})], {s: v[:1] for s, v in vectors.items()})
    store.delete(["d1"])
    store.close()
    _missing(_segment_file(tmp_path / "qdrant-store" / EDGE_DIR, "mutable_id_tracker.mappings"))
    with pytest.raises(CorruptIndexError, match="state.json recorded"):
        open_store("qdrant", tmp_path, {})


def test_a_journal_left_by_a_dead_writer_is_rolled_back_torn_line_and_all(tmp_path):
    vectors = _filled(tmp_path)
    store = open_store("qdrant", tmp_path, {})
    transaction = store.transaction()
    transaction.__enter__()  # a writer that dies inside its transaction ...
    store.delete(["d3"])
    store.upsert([Document("new", "new", {})], {s: v[:1] for s, v in vectors.items()})
    store._journal._handle.write('{"point": "torn')  # ... while journaling a third change
    store._journal._handle.flush()
    store.engine.close()  # what the kernel does for a killed process: files closed, locks gone
    store._journal._lock.release()
    again = open_store("qdrant", tmp_path, {})
    assert len(again) == 30 and again.get(["d3", "new"]) == [Document("d3", "text 3", {"n": 3}), None]
    assert again.search("a", vectors["a"][3], 1)[0].id == "d3"
    assert not (tmp_path / "qdrant-store" / JOURNAL).exists()
    again.close()
    assert open_store("qdrant", tmp_path, {}).get(["d3"])[0].text == "text 3"  # and the stamp agrees


def test_a_space_half_deleted_by_a_killed_drop_is_made_anew_on_recovery(tmp_path, monkeypatch):
    """qdrant-edge does not delete a vector name atomically: a writer killed inside
    ``drop_space`` can leave a name the shard still lists but refuses writes to ("Not existing
    vector name", seen in the crash trials of ``create_space``; the store then could not be
    opened). Recovery deletes such a space and refills it from the journal."""
    from inbedder_retrieval.stores.qdrant_edge_engine import EdgeEngine

    vectors = _filled(tmp_path)
    store = open_store("qdrant", tmp_path, {})
    transaction = store.transaction()
    transaction.__enter__()  # a writer killed inside drop_space, after journaling it
    monkeypatch.setattr(store, "_delete_vector", lambda space: None)
    store.drop_space("a")
    store.engine.close()
    store._journal._lock.release()
    monkeypatch.undo()
    half = {"a"}  # the name the killed writer left half deleted: listed, but writes to it fail
    upsert, delete_vector = EdgeEngine.upsert, EdgeEngine.delete_vector

    def refusing_upsert(self, points):
        if any(half & set(point.vectors) for point in points):
            raise Exception("Not existing vector name error: a")
        return upsert(self, points)

    def deleting(self, name):
        half.discard(name)
        return delete_vector(self, name)

    monkeypatch.setattr(EdgeEngine, "upsert", refusing_upsert)
    monkeypatch.setattr(EdgeEngine, "delete_vector", deleting)
    again = open_store("qdrant", tmp_path, {})
    ids = [f"d{i}" for i in range(30)]
    restored = again.get_vectors("a", ids)
    np.testing.assert_allclose(np.stack([restored[i] for i in ids]), vectors["a"], atol=1e-6)
    assert again.spaces() == ["a", "b"] and again.search("a", vectors["a"][7], 1)[0].id == "d7"
    assert not (tmp_path / "qdrant-store" / JOURNAL).exists()
    again.close()


def test_a_second_process_gets_index_locked_error(tmp_path):
    _filled(tmp_path)
    store = open_store("qdrant", tmp_path, {})
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from inbedder_retrieval.stores import open_store
        open_store("qdrant", __import__("pathlib").Path({str(tmp_path)!r}), {{}})
    """)], capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.returncode != 0 and "IndexLockedError" in child.stderr and "use a Qdrant server" in child.stderr
    assert IndexLockedError.__name__ in child.stderr and len(store) == 30
    store.close()


# -- crashes ---------------------------------------------------------------------------------
def _load_benchmark():
    """benchmarks/crash_trials.py: the same child, state and check as the 20-trial runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("crash_trials", Path(__file__).parents[1] / "benchmarks" / "crash_trials.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["upsert", "delete", "set_vectors", "create_space"])
def test_a_killed_writer_leaves_one_committed_state(tmp_path, kind):
    trials = _load_benchmark()
    trials.make_folder(tmp_path, "qdrant-edge")
    rng = random.Random(kind)
    for _ in range(2):
        ok, _, found = trials.trial(tmp_path, kind, rng)
        assert ok, found


def test_cluster_and_upload_options_reach_qdrant_client(tmp_path, monkeypatch):
    """``shard_number`` / ``replication_factor`` / ``write_consistency_factor`` go to
    ``create_collection``; writes use ``upload_points`` with the batch size, parallelism and
    retries asked for (a real qdrant-client in ``":memory:"`` mode: no server on this machine)."""
    from qdrant_client import QdrantClient

    calls = {}
    for name in ("create_collection", "upload_points"):
        real = getattr(QdrantClient, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            calls.setdefault(_name, []).append(kwargs)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(QdrantClient, name, spy)
    options = {"location": ":memory:", "shard_number": 3, "replication_factor": 2, "write_consistency_factor": 1,
               "upload_batch_size": 2, "upload_parallel": 1, "upload_retries": 5}
    store = open_store("qdrant", tmp_path, options, create=True)
    store.create_space("q", DIM)
    vectors = unit(np.random.default_rng(0).normal(size=(5, DIM)))
    store.upsert([Document(str(i), f"text {i}", {}) for i in range(5)], {"q": vectors})
    assert calls["create_collection"] == [{"vectors_config": {}, "shard_number": 3, "replication_factor": 2,
                                           "write_consistency_factor": 1}]
    assert calls["upload_points"][-1] == {"wait": True, "batch_size": 2, "parallel": 1, "max_retries": 5}
    assert len(store) == 5 and store.search("q", vectors[3], k=1)[0].id == "3"
    store.close()


@pytest.mark.parametrize(("options", "message"), [
    ({"location": ":memory:", "shard_count": 2}, "Unknown Qdrant store option 'shard_count'"),
    ({"location": ":memory:", "shard_number": 0}, "shard_number must be an integer >= 1, got 0"),
    ({"location": ":memory:", "upload_retries": -1}, "upload_retries must be an integer >= 0, got -1"),
    ({"location": ":memory:", "upload_parallel": "4"}, "upload_parallel must be an integer >= 1, got '4'"),
    ({"shard_number": 2}, "options of a Qdrant server or cluster"),  # the embedded store
])
def test_bad_cluster_options_are_refused_before_anything_is_written(tmp_path, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        open_store("qdrant", tmp_path, options, create=True)
    assert not (tmp_path / "qdrant-store" / EDGE_DIR).exists()
