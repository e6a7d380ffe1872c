"""InstructionIndex on a tiny model: features, bad input and reliability."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from inbedder_retrieval import InBedder
from inbedder_retrieval.errors import CorruptIndexError, IncompatibleIndexError, IndexLockedError, UnknownInstructionError
from inbedder_retrieval.index import InstructionIndex
from processes import child as run_child
from processes import wait_for

Q1, Q2, Q3 = "How does the customer feel?", "Which product is discussed?", "What does the customer want?"
TEXTS = [f"message number {i} about item {i % 3} and mood {i % 2}" for i in range(12)]
IDS = [f"doc-{i}" for i in range(12)]


def same_hits(found, expected):
    """Same documents in the same order, scores equal up to float noise (Qdrant renormalises)."""
    return [h.id for h in found] == [h.id for h in expected] and all(
        abs(a.score - b.score) < 1e-5 for a, b in zip(found, expected)
    )


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu")


@pytest.fixture(params=["faiss", "qdrant"])
def backend(request):
    return request.param


@pytest.fixture()
def index(tmp_path, model, backend):
    with InstructionIndex.create(tmp_path / "idx", model, instructions=[Q1, Q2], backend=backend) as created:
        created.add(TEXTS, ids=IDS, metadatas=[{"i": i, "even": i % 2 == 0} for i in range(12)])
        yield created


def test_add_search_get(index, model):
    assert len(index) == 12 and index.instructions == [Q1, Q2]
    hits = index.search(TEXTS[4], Q1, k=3)
    assert hits[0].id == "doc-4" and hits[0].text == TEXTS[4] and hits[0].metadata == {"i": 4, "even": True}
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert index.get(["doc-1", "nope"])[0].text == TEXTS[1] and index.get(["nope"]) == [None]
    filtered = index.search(TEXTS[4], Q2, k=12, filter={"even": False})
    assert len(filtered) == 6 and all(hit.metadata["i"] % 2 for hit in filtered)
    stored = index.store.get_vectors(index._spec(Q2).space, ["doc-5"])["doc-5"]
    np.testing.assert_allclose(stored, model.encode([TEXTS[5]], Q2)[0], atol=1e-6)


def test_upsert_replaces_and_delete_removes(index):
    index.add(["a completely new text"], ids=["doc-3"], metadatas=[{"new": True}])
    assert len(index) == 12
    assert index.get(["doc-3"])[0].metadata == {"new": True}
    assert index.search("a completely new text", Q1, k=1)[0].id == "doc-3"
    assert index.delete(["doc-3", "doc-0", "missing"]) == 2
    assert len(index) == 10
    assert {h.id for h in index.search(TEXTS[0], Q1, k=12)}.isdisjoint({"doc-0", "doc-3"})


def test_add_and_remove_instruction(index, model):
    index.add_instruction(Q3, query_instruction="What is the customer asking for?")
    assert index.instructions == [Q1, Q2, Q3]
    stored = index.store.get_vectors(index._spec(Q3).space, IDS[:3])
    np.testing.assert_allclose(np.stack([stored[i] for i in IDS[:3]]), model.encode(TEXTS[:3], Q3), atol=1e-6)
    query = model.encode(["x y"], "What is the customer asking for?")[0]
    assert same_hits(index.search("x y", Q3, k=2), index.search_by_vector(query, Q3, k=2))
    with pytest.raises(ValueError, match="already an instruction"):
        index.add_instruction(Q3)
    index.remove_instruction(Q2)
    assert index.instructions == [Q1, Q3] and len(index.store.spaces()) == 2
    with pytest.raises(UnknownInstructionError, match="Its instructions:\n  How does the customer feel"):
        index.search("x", Q2)


def test_new_instructions_in_add_and_empty_index(tmp_path, model):
    with InstructionIndex.create(tmp_path / "idx", model) as index:
        with pytest.raises(ValueError, match="no instruction yet"):
            index.add(["text"])
        ids = index.add(["one text", "two text"], instructions=[Q1])
        assert len(ids) == 2 and len(set(ids)) == 2 and index.instructions == [Q1]


def test_unchanged_texts_are_not_embedded_again(index, monkeypatch):
    calls = []
    original = index.model.encode_many
    monkeypatch.setattr(index.model, "encode_many", lambda texts, *a, **k: calls.append(list(texts)) or original(texts, *a, **k))
    index.add(TEXTS, ids=IDS)
    assert calls == []
    index.add([TEXTS[0], "changed"], ids=[IDS[0], IDS[1]])
    assert calls == [["changed"]]  # embedded once, under both instructions


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"texts": ["ok", None]}, TypeError, r"texts\[1\] is NoneType"),
        ({"texts": ["ok", 5]}, TypeError, r"texts\[1\] is int"),
        ({"texts": ["ok", " "]}, ValueError, r"texts\[1\] is empty"),
        ({"texts": ["a", "b"], "ids": ["x", "x"]}, ValueError, r"ids\[1\] = 'x' appears twice"),
        ({"texts": ["a"], "ids": [7]}, TypeError, r"ids\[0\] must be a non-empty str"),
        ({"texts": ["a", "b"], "ids": ["x"]}, ValueError, "got 1 ids for 2 texts"),
        ({"texts": ["a"], "metadatas": [{"when": object()}]}, ValueError, r"metadatas\[0\] is not JSON-serialisable"),
        ({"texts": ["a"], "metadatas": [{"x": float("nan")}]}, ValueError, r"metadatas\[0\] is not JSON"),
        ({"texts": ["a"], "metadatas": ["tag"]}, TypeError, r"metadatas\[0\] must be a mapping"),
    ],
)
def test_bad_documents_write_nothing(index, kwargs, error, match):
    kwargs = dict(kwargs)
    texts = kwargs.pop("texts")
    with pytest.raises(error, match=match):
        index.add(texts, **kwargs)
    assert len(index) == 12 and index.get(["x"]) == [None]


def test_bad_queries(index):
    with pytest.raises(ValueError, match="query must be a non-empty string"):
        index.search("", Q1)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search("x", Q1, k=0)
    with pytest.raises(ValueError, match="vector must be finite"):
        index.search_by_vector(np.zeros(3), Q1)


def test_reopen_with_the_recorded_model(index, tmp_path):
    expected = index.search(TEXTS[2], Q2, k=4)
    index.close()
    with InstructionIndex.open(tmp_path / "idx") as again:  # loads the model named in index.json
        assert len(again) == 12 and again.instructions == [Q1, Q2]
        assert same_hits(again.search(TEXTS[2], Q2, k=4), expected)
        info = again.info()
        assert info["model"]["dim"] == 32 and info["documents"] == 12 and info["format_version"] == 1


def test_other_model_or_dimension_is_refused(index, tmp_path, tiny_model_dir):
    index.close()
    other = InBedder.from_pretrained(tiny_model_dir("gpt2"), device="cpu")
    with pytest.raises(IncompatibleIndexError, match="incompatible vectors"):
        InstructionIndex.open(tmp_path / "idx", other)
    wider = InBedder.from_pretrained(tiny_model_dir("llama"), device="cpu", pooling="reencode")
    with pytest.raises(IncompatibleIndexError, match="gives dimension 384"):
        InstructionIndex.open(tmp_path / "idx", wider)


def test_corrupted_manifest_gives_a_clear_error(index, tmp_path):
    root = tmp_path / "idx"
    index.close()
    manifest = root / "index.json"
    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(CorruptIndexError, match="index.json is truncated or corrupted"):
        InstructionIndex.open(root)
    # damaged FAISS files are rebuilt from the database: tests/test_reliability.py


def test_corrupted_database_gives_clear_error(tmp_path, model):
    with InstructionIndex.create(tmp_path / "idx", model, instructions=[Q1]) as index:
        index.add(["one"])
    database = tmp_path / "idx" / "faiss-store" / "store.sqlite"
    for side in ("-wal", "-shm"):
        (tmp_path / "idx" / "faiss-store" / f"store.sqlite{side}").unlink(missing_ok=True)
    database.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptIndexError, match="store.sqlite"):
        InstructionIndex.open(tmp_path / "idx", model)


@pytest.mark.parametrize("backend", ["faiss"])
def test_stale_faiss_files_are_rebuilt_from_the_database(index, tmp_path):
    expected = index.search(TEXTS[7], Q1, k=5)
    index.close()
    (tmp_path / "idx" / "faiss-store" / "faiss" / "state.json").unlink()  # as after a crash before saving
    with InstructionIndex.open(tmp_path / "idx") as again:
        assert same_hits(again.search(TEXTS[7], Q1, k=5), expected)


def test_killed_writer_leaves_the_index_as_before(index, tmp_path):
    expected = index.search(TEXTS[1], Q1, k=3)
    index.close()
    marker = tmp_path / "marker"
    child = run_child(f"""
        import pathlib, time
        from inbedder_retrieval.index import InstructionIndex
        index = InstructionIndex.open({str(tmp_path / 'idx')!r})
        original, calls = index.model.encode_many, []
        def slow(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:  # two batches written under both instructions, third batch pending
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(600)
            return original(*args, **kwargs)
        index.model.encode_many = slow
        index.add([f"new text {{i}}" for i in range(40)], ids=["doc-0"] + [f"new-{{i}}" for i in range(39)], batch_size=8)
    """, tmp_path)
    wait_for(marker, child)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with InstructionIndex.open(tmp_path / "idx") as again:
        assert len(again) == 12
        assert again.get(["doc-0", "new-1"])[0].text == TEXTS[0] and again.get(["new-1"]) == [None]
        assert same_hits(again.search(TEXTS[1], Q1, k=3), expected)
        again.add(["after the crash"], ids=["new-1"])  # the lock was released by the kernel
        assert len(again) == 13


@pytest.mark.parametrize("backend", ["faiss"])
def test_second_writer_gets_a_clear_error_and_readers_keep_working(index, tmp_path):
    marker = tmp_path / "marker"
    child = run_child(f"""
        import pathlib, time
        from inbedder_retrieval.index import InstructionIndex
        index = InstructionIndex.open({str(tmp_path / 'idx')!r})
        with index._writing():
            pathlib.Path({str(marker)!r}).touch()
            time.sleep(600)
    """, tmp_path)
    try:
        wait_for(marker, child)
        index.lock_timeout = 0.2
        with pytest.raises(IndexLockedError, match="locked by another writer"):
            index.add(["blocked"], ids=["blocked"])
        assert index.search(TEXTS[3], Q1, k=1)[0].id == "doc-3"
        assert len(index) == 12 and index.get(["blocked"]) == [None]
    finally:
        child.kill()
        child.wait()
    index.add(["now it works"], ids=["blocked"])
    assert len(index) == 13


@pytest.mark.parametrize("backend", ["faiss"])
def test_a_second_process_sees_committed_writes(index, tmp_path):
    child = run_child(f"""
        from inbedder_retrieval.index import InstructionIndex
        with InstructionIndex.open({str(tmp_path / 'idx')!r}) as other:
            other.add(["written by another process"], ids=["other"])
            other.add_instruction({Q3!r})
    """, tmp_path)
    assert child.wait(timeout=120) == 0, child.stdout.read().decode()
    assert len(index) == 13 and index.instructions == [Q1, Q2, Q3]
    assert index.search("written by another process", Q3, k=1)[0].id == "other"


@pytest.mark.parametrize("backend", ["qdrant"])
def test_embedded_qdrant_refuses_a_second_process_clearly(index, tmp_path):
    child = run_child(f"""
        from inbedder_retrieval.index import InstructionIndex
        InstructionIndex.open({str(tmp_path / 'idx')!r})
    """, tmp_path)
    child.wait(timeout=120)
    output = child.stdout.read().decode()
    assert child.returncode != 0 and "IndexLockedError" in output and "use a Qdrant server" in output
    assert index.search(TEXTS[3], Q1, k=1)[0].id == "doc-3"


def test_qdrant_api_key_is_not_written(tmp_path, model):
    with InstructionIndex.create(tmp_path / "idx", model, backend="qdrant",
                                 store_options={"location": ":memory:", "api_key": "secret-key"}) as index:
        assert index.info()["store_options"] == {"location": ":memory:"}
    assert "secret-key" not in (tmp_path / "idx" / "index.json").read_text()


def test_an_index_records_its_dtype_and_opens_in_it(tmp_path, tiny_model_dir, model):
    """The dtype is part of the fingerprint: an index made in bfloat16 (say on a GPU) opens
    without a model in bfloat16 on any device, an fp32 model is refused with a hint naming
    both dtypes, and so are fp32 shards; a manifest from before the dtype was recorded opens
    in the device's default dtype."""
    import json

    from inbedder_retrieval.shards import write_embedding_shards

    folder = tiny_model_dir("llama")
    half = InBedder.from_pretrained(folder, device="cpu", dtype="bfloat16")
    with InstructionIndex.create(tmp_path / "bf16", half, instructions=[Q1]) as index:
        index.add(TEXTS[:4], ids=IDS[:4])
    assert json.loads((tmp_path / "bf16" / "index.json").read_text())["model"]["dtype"] == "bfloat16"
    with InstructionIndex.open(tmp_path / "bf16") as index:
        assert index.model.fingerprint == half.fingerprint and index.search(TEXTS[2], Q1, k=1)[0].id == IDS[2]
    with pytest.raises(IncompatibleIndexError, match="made in bfloat16, these in float32: use dtype='bfloat16'"):
        InstructionIndex.open(tmp_path / "bf16", model)
    write_embedding_shards(model, [{"id": "x", "text": TEXTS[5]}], [Q1], tmp_path / "shards")
    with InstructionIndex.open(tmp_path / "bf16") as index, pytest.raises(
            IncompatibleIndexError, match="made in bfloat16, these in float32"):
        index.import_embeddings([tmp_path / "shards"])
    with InstructionIndex.create(tmp_path / "old", model, instructions=[Q1]) as index:
        index.add(TEXTS[:2], ids=IDS[:2])
    manifest = json.loads((tmp_path / "old" / "index.json").read_text())
    del manifest["model"]["dtype"]
    (tmp_path / "old" / "index.json").write_text(json.dumps(manifest))
    with InstructionIndex.open(tmp_path / "old") as index:
        assert index.model.fingerprint == model.fingerprint
