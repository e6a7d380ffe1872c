"""Reliability of InstructionIndex: kills during every write on both backends, concurrent
writers and readers, damaged files, failed creates (issue 12)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest
from inbedder_retrieval import InBedder
from inbedder_retrieval.errors import CorruptIndexError, IndexLockedError, UnknownInstructionError
from inbedder_retrieval.index import InstructionIndex
from processes import child, wait_for

Q1, Q2, Q3 = "How does the customer feel?", "Which product is discussed?", "What does the customer want?"
TEXTS = [f"message number {i} about item {i % 3} and mood {i % 2}" for i in range(24)]
IDS = [f"doc-{i}" for i in range(24)]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")


def build(root, model, backend="faiss"):
    with InstructionIndex.create(root, model, instructions=[Q1, Q2], backend=backend) as index:
        index.add(TEXTS, ids=IDS, metadatas=[{"i": i} for i in range(24)])


def everyone_finds_itself(index, instruction=Q1):
    return all(index.search(text, instruction, k=1)[0].id == doc_id for doc_id, text in zip(IDS, TEXTS))


# -- a SIGKILL inside every kind of write, on both backends ------------------------------
#: write -> (the store method inside the write's transaction to stop in, the call, valid state after the kill)
WRITES = {
    "add": ("upsert", "index.add(['new one', 'new two', 'doc zero replaced'], ids=['new-1', 'new-2', 'doc-0'])"),
    "delete": ("delete", "index.delete(IDS[:16])"),
    "add_instruction": ("set_vectors", f"index.add_instruction({Q3!r})"),
    "remove_instruction": ("drop_space", f"index.remove_instruction({Q2!r})"),
}


@pytest.mark.parametrize("backend", ["faiss", "qdrant"])
@pytest.mark.parametrize("write", list(WRITES))
def test_a_kill_inside_any_write_leaves_the_index_before_or_after_it(tmp_path, model, backend, write):
    root, marker = tmp_path / "idx", tmp_path / "marker"
    build(root, model, backend)
    method, call = WRITES[write]
    # the store method runs for real, then the process stops inside the open transaction and is killed
    process = child(f"""
        import pathlib, time
        from inbedder_retrieval.index import InstructionIndex
        IDS = {IDS!r}
        index = InstructionIndex.open({str(root)!r})
        real = getattr(index.store, {method!r})
        def stop_after(*args, **kwargs):
            real(*args, **kwargs)
            pathlib.Path({str(marker)!r}).touch()
            time.sleep(600)
        setattr(index.store, {method!r}, stop_after)
        {call}
    """, tmp_path)
    wait_for(marker, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with InstructionIndex.open(root) as index:
        if write == "remove_instruction":  # the manifest no longer names Q2: the write is done
            assert index.instructions == [Q1]
            with pytest.raises(UnknownInstructionError):
                index.search("x", Q2)
            index.add(["after"], ids=["after"])  # the next write drops the orphaned space
            assert len(index.store.spaces()) == 1
        else:  # killed before the commit: exactly as before
            assert len(index) == 24 and index.instructions == [Q1, Q2] and len(index.store.spaces()) == 2
            assert index.get(["doc-0", "new-1"])[0].text == TEXTS[0] and index.get(["new-1"]) == [None]
            assert everyone_finds_itself(index, Q1) and everyone_finds_itself(index, Q2)
            index.add(["after"], ids=["after"])  # the lock died with the process
            assert len(index) == 25


# -- writers and readers at once -----------------------------------------------------------
def test_two_writers_and_a_tight_loop_reader(tmp_path, model):
    """Two processes write (retrying on IndexLockedError) while a third searches without
    pause: no unexpected error anywhere, no write reported failed that was committed, and
    the final state holds every write."""
    root = tmp_path / "idx"
    build(root, model)
    stop = tmp_path / "stop"
    reader = child(f"""
        import pathlib, sys
        from inbedder_retrieval.index import InstructionIndex
        index = InstructionIndex.open({str(root)!r})
        searches = 0
        while not pathlib.Path({str(stop)!r}).exists():
            hits = index.search("message number 3 about item 0 and mood 1", {Q1!r}, k=3)
            assert hits and len(index) >= 24, hits
            searches += 1
        print("searches", searches)
    """, tmp_path, "reader.py")
    writers = [child(f"""
        import time
        from inbedder_retrieval.errors import IndexLockedError
        from inbedder_retrieval.index import InstructionIndex
        index = InstructionIndex.open({str(root)!r}, lock_timeout=0.05)
        done = 0
        while done < 15:
            try:
                index.add([f"writer {w} text {{done}}"], ids=[f"w{w}-{{done}}"])
            except IndexLockedError:
                time.sleep(0.01)
                continue
            assert index.get([f"w{w}-{{done}}"])[0] is not None
            done += 1
        assert index.delete([f"w{w}-0"]) == 1
        print("writer done")
    """, tmp_path, f"writer{w}.py") for w in (1, 2)]
    try:
        for writer in writers:
            assert writer.wait(timeout=300) == 0, writer.stdout.read().decode()
    finally:
        stop.touch()
    assert reader.wait(timeout=60) == 0, reader.stdout.read().decode()
    assert int(reader.stdout.read().decode().split()[-1]) > 0
    with InstructionIndex.open(root) as index:
        assert len(index) == 24 + 2 * 14
        expected = {f"w{w}-{n}" for w in (1, 2) for n in range(1, 15)}
        assert all(doc is not None for doc in index.get(sorted(expected)))
        assert index.get(["w1-0", "w2-0"]) == [None, None]
        assert everyone_finds_itself(index)
        files = list((root / "faiss-store" / "faiss").iterdir())
        assert not [f for f in files if f.name.endswith(".partial")]


def test_a_long_add_locks_out_neither_readers_nor_the_second_writers_error(tmp_path, model):
    """While a writer embeds for a long time: another process opens the index and searches
    without a single error, and a second writer gets IndexLockedError after lock_timeout
    (not SQLite's 60 s busy wait)."""
    root, marker, stop = tmp_path / "idx", tmp_path / "marker", tmp_path / "stop"
    build(root, model)
    writer = child(f"""
        import pathlib, time
        from inbedder_retrieval.index import InstructionIndex
        index = InstructionIndex.open({str(root)!r})
        real, calls = index.model.encode_many, []
        def slow(*args, **kwargs):  # a slow model: each batch takes a second
            calls.append(1)
            pathlib.Path({str(marker)!r}).touch()
            time.sleep(1.0)
            return real(*args, **kwargs)
        index.model.encode_many = slow
        index.add([f"long add {{i}}" for i in range(40)], ids=[f"long-{{i}}" for i in range(40)], batch_size=4)
        print("added", len(calls))
    """, tmp_path, "writer.py")
    wait_for(marker, writer)
    started = time.time()
    with InstructionIndex.open(root, lock_timeout=0.5) as other:
        assert time.time() - started < 10
        with pytest.raises(IndexLockedError, match="locked by another writer"):
            other.add(["blocked"], ids=["blocked"])
        assert time.time() - started < 10
        searches, sizes = 0, set()
        while writer.poll() is None:
            assert other.search(TEXTS[5], Q1, k=1)[0].id == "doc-5"
            sizes.add(len(other))
            searches += 1
        assert writer.returncode == 0, writer.stdout.read().decode()
        assert searches > 10 and sizes <= {24, 64}
        assert len(other) == 64 and other.search("long add 7", Q2, k=1)[0].id == "long-7"


def test_opening_for_reading_needs_no_write_lock(tmp_path, model):
    root = tmp_path / "idx"
    build(root, model)
    blocker = sqlite3.connect(root / "faiss-store" / "store.sqlite", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's write lock
    try:
        started = time.time()
        with InstructionIndex.open(root) as index:
            assert everyone_finds_itself(index)
        assert time.time() - started < 5
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_an_error_after_the_commit_is_not_reported_as_a_failed_write(tmp_path, model, monkeypatch, caplog):
    root = tmp_path / "idx"
    build(root, model)
    with InstructionIndex.open(root) as index:
        def broken_save():
            raise OSError("disk full")
        monkeypatch.setattr(index.store, "save", broken_save)
        assert index.add(["committed"], ids=["committed"]) == ["committed"]
        assert "saving the FAISS files" in caplog.text and "disk full" in caplog.text
    with InstructionIndex.open(root) as again:  # stale files are rebuilt from the database
        assert again.get(["committed"])[0].text == "committed" and len(again) == 25
        assert again.search("committed", Q1, k=1)[0].id == "committed"


def test_partial_files_of_a_killed_save_are_cleaned_by_the_next_write(tmp_path, model):
    root = tmp_path / "idx"
    build(root, model)
    leftovers = [root / "faiss-store" / "faiss" / ".i0.faiss.abc123.partial", root / ".index.json.xyz.partial"]
    for file in leftovers:
        file.write_bytes(b"half a file")
    with InstructionIndex.open(root) as index:
        assert all(file.exists() for file in leftovers)  # opening writes nothing
        index.add(["x"], ids=["x"])
    assert not any(file.exists() for file in leftovers)


# -- damaged files ----------------------------------------------------------------------------
def _faiss_file(root):
    state = json.loads((root / "faiss-store" / "faiss" / "state.json").read_text())
    return root / "faiss-store" / "faiss" / sorted(state["spaces"].values(), key=lambda e: e["file"])[0]["file"]


def _garble(file, count=64):
    data = bytearray(file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes((b + 97) % 256 for b in data[middle : middle + count])
    file.write_bytes(bytes(data))


DERIVED_DAMAGE = {
    "faiss file garbled": lambda root: _garble(_faiss_file(root)),
    "faiss file truncated": lambda root: _faiss_file(root).write_bytes(_faiss_file(root).read_bytes()[:100]),
    "faiss file empty": lambda root: _faiss_file(root).write_bytes(b""),
    "faiss file missing": lambda root: _faiss_file(root).unlink(),
    "state.json garbled": lambda root: _garble(root / "faiss-store" / "faiss" / "state.json", 8),
    "state.json missing": lambda root: (root / "faiss-store" / "faiss" / "state.json").unlink(),
}


@pytest.mark.parametrize("damage", list(DERIVED_DAMAGE))
def test_a_damaged_derived_file_is_rebuilt_from_the_database(tmp_path, model, damage, caplog):
    root = tmp_path / "idx"
    build(root, model)
    DERIVED_DAMAGE[damage](root)
    before = {p.name: p.read_bytes() for p in (root / "faiss-store" / "faiss").iterdir()}
    with InstructionIndex.open(root) as index:
        assert everyone_finds_itself(index, Q1) and everyone_finds_itself(index, Q2)
        assert {p.name: p.read_bytes() for p in (root / "faiss-store" / "faiss").iterdir()} == before  # open writes nothing
        index.add(["repair"], ids=["repair"])  # the next write saves intact files
    with InstructionIndex.open(root) as index:
        assert everyone_finds_itself(index)
    assert "rebuilding" in caplog.text or damage == "state.json missing"


PRIMARY_DAMAGE = {
    "store.sqlite missing": ("faiss-store/store.sqlite", lambda f: f.unlink(), "is missing"),
    "store.sqlite empty": ("faiss-store/store.sqlite", lambda f: f.write_bytes(b""), "is empty"),
    "store.sqlite not a database": ("faiss-store/store.sqlite", lambda f: f.write_bytes(b"junk" * 1000), "not a readable"),
    "index.json missing": ("index.json", lambda f: f.unlink(), "index.json is missing"),
    "index.json empty": ("index.json", lambda f: f.write_bytes(b""), "index.json is truncated"),
}


@pytest.mark.parametrize("damage", list(PRIMARY_DAMAGE))
def test_a_missing_or_empty_primary_file_is_a_typed_error_and_nothing_is_rewritten(tmp_path, model, damage):
    root = tmp_path / "idx"
    build(root, model)
    for side in ("-wal", "-shm"):
        (root / "faiss-store" / f"store.sqlite{side}").unlink(missing_ok=True)
    name, hurt, message = PRIMARY_DAMAGE[damage]
    hurt(root / name)
    before = sorted((p.relative_to(root), p.stat().st_size) for p in root.rglob("*") if p.is_file())
    with pytest.raises(CorruptIndexError, match=message):
        InstructionIndex.open(root, model)
    assert sorted((p.relative_to(root), p.stat().st_size) for p in root.rglob("*") if p.is_file()) == before


# -- failed creates -------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    ({"backend": "bogus"}, ValueError, "Unknown backend 'bogus'"),
    ({"store_options": {"factory": "Bogus"}}, ValueError, "FAISS cannot build index factory 'Bogus'"),
    ({"instructions": [Q1, ""]}, ValueError, "instruction is empty"),
])
def test_a_failed_create_leaves_nothing_behind(tmp_path, model, kwargs, error, match):
    with pytest.raises(error, match=match):
        InstructionIndex.create(tmp_path / "new", model, **kwargs)
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's file")
    with pytest.raises(error, match=match):
        InstructionIndex.create(tmp_path / "mine", model, **kwargs)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_saving_and_cleaning_happen_under_the_write_lock(tmp_path, model, monkeypatch):
    root = tmp_path / "idx"
    build(root, model)
    with InstructionIndex.open(root) as index:
        held = []
        real = index.store.save
        monkeypatch.setattr(index.store, "save", lambda: held.append(index._lock.is_locked) or real())
        index.add(["x"], ids=["x"])
        index.delete(["x"])
        index.add_instruction(Q3)
        index.remove_instruction(Q3)
        assert held and all(held)


def test_a_reader_whose_files_vanish_under_it_rebuilds_instead_of_failing(tmp_path, model, monkeypatch):
    """A writer saves twice between the reader's read of state.json and of the files it names."""
    from inbedder_retrieval.stores.faiss_store import FaissStore

    root = tmp_path / "idx"
    build(root, model)
    with InstructionIndex.open(root) as reader, InstructionIndex.open(root) as writer:
        real = FaissStore._read_state

        def state_then_two_writes(store):
            state = real(store)
            if store is reader.store:
                monkeypatch.setattr(FaissStore, "_read_state", real)
                writer.add(["first"], ids=["first"])
                writer.add(["second"], ids=["second"])
            return state

        monkeypatch.setattr(FaissStore, "_read_state", state_then_two_writes)
        reader.store._generation = reader.store._data_version = -1  # as if another process committed
        assert reader.search(TEXTS[3], Q1, k=1)[0].id == "doc-3"
        assert everyone_finds_itself(reader) and reader.get(["second"])[0].text == "second"


def test_every_garbled_spot_of_the_database_is_reported_or_harmless(tmp_path, model):
    """SQLite keeps no page checksums: 64 garbled bytes anywhere in store.sqlite end in a
    CorruptIndexError (at open, in use, or from verify()) or change nothing readable."""
    root = tmp_path / "idx"
    build(root, model)
    database = root / "faiss-store" / "store.sqlite"
    pristine = database.read_bytes()

    def contents():
        db = sqlite3.connect(database)
        try:
            return db.execute("SELECT * FROM documents").fetchall(), db.execute("SELECT * FROM vectors").fetchall()
        finally:
            db.close()

    reference, outcomes = contents(), set()
    for offset in range(0, len(pristine), 2048):
        data = bytearray(pristine)
        data[offset : offset + 64] = bytes((b + 97) % 256 for b in data[offset : offset + 64])
        database.write_bytes(bytes(data))
        try:
            with InstructionIndex.open(root, model) as index:
                index.verify()
                everyone_finds_itself(index)
            assert contents() == reference, f"garbled at {offset}: verify() passed but the contents changed"
            outcomes.add("harmless")
        except CorruptIndexError as error:
            assert "store.sqlite" in str(error)
            outcomes.add("reported")
    assert outcomes == {"harmless", "reported"}


def test_verify_finds_a_vector_that_differs_from_its_faiss_copy(tmp_path, model, capsys):
    from inbedder_retrieval.cli import main

    root = tmp_path / "idx"
    build(root, model)
    assert main(["index", "verify", str(root)]) == 0 and '"ok": true' in capsys.readouterr().out
    db = sqlite3.connect(root / "faiss-store" / "store.sqlite")
    db.execute("UPDATE vectors SET vector = ? WHERE row = (SELECT row FROM documents WHERE id = 'doc-7')",
               (bytes(4 * model.dim),))
    db.commit()
    db.close()
    with InstructionIndex.open(root) as index, pytest.raises(CorruptIndexError, match=r"\['doc-7'\] differ"):
        index.verify()
    assert main(["index", "verify", str(root)]) == 2
    assert "doc-7" in capsys.readouterr().err


def test_every_file_of_an_index_follows_the_umask(tmp_path, model):
    previous = os.umask(0o027)
    try:
        build(tmp_path / "idx", model)
    finally:
        os.umask(previous)
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777
             for p in (tmp_path / "idx").rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o640}, modes
